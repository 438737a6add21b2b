//! Exposition validation and escaping: any family declaration is either
//! refused or valid, and any label value, once escaped, stays on one line
//! inside its quotes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmprobe::exposition::encode::push_label_value;
use wasmprobe::exposition::family::{FamilyDef, Kind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\u{1}');
    let name = parts.next().unwrap_or_default().to_string();
    let labels: Vec<String> = parts.next().unwrap_or_default().split(',').map(str::to_string).collect();
    let value = parts.next().unwrap_or_default();
    let kind = match name.len() % 3 {
        0 => Kind::Gauge,
        1 => Kind::Counter,
        _ => Kind::Histogram,
    };
    let def = FamilyDef {
        name: name.clone(),
        help: value.to_string(),
        kind,
        unit: None,
        labels,
        buckets: vec![0.1, 1.0],
    };
    if let Ok(def) = def.validate_plugin_family() {
        assert!(
            def.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        );
        assert!(!def.labels.iter().any(|l| l == "probe" || l == "le"));
    }
    let mut out = String::new();
    push_label_value(&mut out, value);
    assert!(!out.contains('\n'), "{out:?}");
    // Every quote inside is escaped.
    let mut escaped = false;
    for c in out.chars() {
        if c == '"' {
            assert!(escaped, "{out:?}");
        }
        escaped = c == '\\' && !escaped;
    }
});
