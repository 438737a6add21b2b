//! Text encodings: OpenMetrics 1.0 and the classic Prometheus format 0.0.4.
//!
//! Sample lines are the same in both, so a probe's counter and histogram
//! lines are rendered once when a run commits (its gauges and host lines
//! are written by each scrape from numbers); only family headers and the
//! trailing `# EOF` differ between the formats. All escaping of label
//! values and HELP text is done here, by the host, whatever the plugin
//! sent.

use std::fmt::Write;

use super::family::{FamilyDef, Kind};

/// The exposition format a scrape asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    OpenMetrics,
    #[default]
    Classic,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// Picks a format from an `Accept` header by q-value; classic text when
    /// nothing we speak is asked for (what Prometheus and curl get alike).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Classic;
        };
        let mut best = (Format::Classic, -1.0f32);
        for item in accept.split(',') {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut version = None;
            for p in parts {
                if let Some((k, v)) = p.split_once('=') {
                    match k.trim().to_ascii_lowercase().as_str() {
                        "q" => q = v.trim().parse().unwrap_or(0.0),
                        "version" => version = Some(v.trim().to_string()),
                        _ => {}
                    }
                }
            }
            let format = match media.as_str() {
                "application/openmetrics-text"
                    if version
                        .as_deref()
                        .is_none_or(|v| v == "1.0.0" || v == "0.0.1") =>
                {
                    Format::OpenMetrics
                }
                "text/plain" | "*/*" | "text/*" => Format::Classic,
                _ => continue,
            };
            if q > best.1 {
                best = (format, q);
            }
        }
        best.0
    }
}

/// Writes `s` as a label value between quotes would need it: `\`, `"` and
/// newline escaped; other control characters, which some parsers refuse,
/// replaced by U+FFFD.
pub fn push_label_value(out: &mut String, s: &str) {
    push_escaped(out, s, true);
}

/// Writes HELP text: `\` and newline escaped in both formats, `"` also in
/// OpenMetrics; other control characters replaced.
fn push_help(out: &mut String, s: &str, format: Format) {
    push_escaped(out, s, format == Format::OpenMetrics);
}

/// The one escaping rule of label values and HELP text (`quote`: whether
/// `"` is escaped too). A scrape writes millions of label values and every
/// `/probe` answer a HELP line per family, and nearly none needs anything:
/// those are copied whole after one pass over the bytes, the rest in runs
/// between the characters that need it.
fn push_escaped(out: &mut String, s: &str, quote: bool) {
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'\\' && b != b'"')
    {
        out.push_str(s);
        return;
    }
    let mut plain = 0;
    for (at, c) in s.char_indices() {
        let replacement = match c {
            '\\' => "\\\\",
            '"' if quote => "\\\"",
            '\n' => "\\n",
            '\t' => continue,
            c if c.is_control() => "\u{FFFD}",
            _ => continue,
        };
        out.push_str(s.get(plain..at).unwrap_or_default());
        out.push_str(replacement);
        plain = at + c.len_utf8();
    }
    out.push_str(s.get(plain..).unwrap_or_default());
}

/// A float as both formats spell it, as Rust's `{}` writes it: the
/// shortest text that reads back to the same value, never an exponent (a
/// value exactly between two shortest texts may end in either). Most
/// values a scrape writes are whole numbers (counts, codes, booleans) or
/// plain decimals, which `itoa` and `ryu` print several times faster than
/// `fmt`; the rest, and `-0`, go through `fmt`.
pub fn push_value(out: &mut String, v: f64) {
    /// Below this, every whole `f64` is exact as an `i64`.
    const WHOLE: f64 = 1e15;
    /// `ryu` writes no exponent from 1e-5 up to 1e16; inside that, with a
    /// margin, its text is `fmt`'s.
    const PLAIN: std::ops::Range<f64> = 1e-4..WHOLE;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v.fract() == 0.0 && v.abs() < WHOLE && !(v == 0.0 && v.is_sign_negative()) {
        // Exact: whole and within ±1e15.
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else if PLAIN.contains(&v.abs()) {
        out.push_str(ryu::Buffer::new().format_finite(v));
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Writes a `# TYPE name kind` or `# UNIT name unit` line.
fn push_meta(out: &mut String, keyword: &str, name: &str, value: &str) {
    out.push_str(keyword);
    out.push_str(name);
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Writes the HELP/TYPE (and UNIT) lines of a family.
pub fn push_header(out: &mut String, def: &FamilyDef, format: Format) {
    let name = match format {
        Format::OpenMetrics => def.base_name(),
        Format::Classic => &def.name,
    };
    let kind = def.kind.as_str();
    match format {
        Format::OpenMetrics => {
            push_meta(out, "# TYPE ", name, kind);
            if let Some(unit) = &def.unit {
                push_meta(out, "# UNIT ", name, unit);
            }
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            push_help(out, &def.help, format);
            out.push('\n');
        }
        Format::Classic => {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            push_help(out, &def.help, format);
            out.push('\n');
            push_meta(out, "# TYPE ", name, kind);
        }
    }
}

/// The end of an OpenMetrics exposition.
pub fn push_trailer(out: &mut String, format: Format) {
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
}

/// Writes a `{a="1",b="2"}` label block (nothing when empty). `extra` comes
/// last, for histogram `le`.
pub fn push_labels<'a>(
    out: &mut String,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    extra: Option<(&'a str, &'a str)>,
) {
    let mut first = true;
    for (name, value) in labels.into_iter().chain(extra) {
        if value.is_empty() {
            // An empty value is the same as no label; leaving it out keeps
            // series identical to what Prometheus stores.
            continue;
        }
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        push_label_value(out, value);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
}

/// Writes one sample line.
pub fn push_sample<'a>(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    extra: Option<(&'a str, &'a str)>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    push_labels(out, labels, extra);
    out.push(' ');
    push_value(out, value);
    out.push('\n');
}

/// A histogram's cumulative state for one series.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramState {
    /// Per-bucket counts (not cumulative), one per declared bound, then +Inf.
    pub counts: Vec<u64>,
    pub sum: f64,
}

impl HistogramState {
    pub fn new(bounds: usize) -> Self {
        HistogramState {
            counts: vec![0; bounds + 1],
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, bounds: &[f64], v: f64) {
        let i = bounds.partition_point(|b| *b < v);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum += v;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Writes a histogram's `_bucket`, `_count` and `_sum` lines.
pub fn push_histogram<'a>(
    out: &mut String,
    def: &FamilyDef,
    labels: &[(&'a str, &'a str)],
    state: &HistogramState,
) {
    debug_assert_eq!(def.kind, Kind::Histogram);
    let mut cumulative = 0u64;
    let mut le = String::new();
    for (i, count) in state.counts.iter().enumerate() {
        cumulative += count;
        le.clear();
        match def.buckets.get(i) {
            Some(b) => push_value(&mut le, *b),
            None => le.push_str("+Inf"),
        }
        push_sample(
            out,
            &def.name,
            "_bucket",
            labels.iter().copied(),
            Some(("le", &le)),
            cumulative as f64,
        );
    }
    push_sample(
        out,
        &def.name,
        "_count",
        labels.iter().copied(),
        None,
        cumulative as f64,
    );
    push_sample(
        out,
        &def.name,
        "_sum",
        labels.iter().copied(),
        None,
        state.sum,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        push_labels(&mut s, [("a", "x\"y\\z\nw\0\r# EOF")], None);
        assert_eq!(s, "{a=\"x\\\"y\\\\z\\nw\u{FFFD}\u{FFFD}# EOF\"}");
    }

    #[test]
    fn help_escaping_differs_by_format() {
        let def = FamilyDef {
            name: "x_total".into(),
            help: "say \"hi\"\\\n".into(),
            kind: Kind::Counter,
            unit: None,
            labels: vec![],
            buckets: vec![],
        };
        let mut om = String::new();
        push_header(&mut om, &def, Format::OpenMetrics);
        assert_eq!(om, "# TYPE x counter\n# HELP x say \\\"hi\\\"\\\\\\n\n");
        let mut classic = String::new();
        push_header(&mut classic, &def, Format::Classic);
        assert_eq!(
            classic,
            "# HELP x_total say \"hi\"\\\\\\n\n# TYPE x_total counter\n"
        );
    }

    /// Whatever mix of plain, escaped and replaced characters a label value
    /// or HELP text has, each character comes out as the one-at-a-time rule
    /// says (`"` escaped in label values and OpenMetrics HELP only).
    #[test]
    fn escaping_follows_the_rule_for_each_character_in_any_mix() {
        let one_at_a_time = |s: &str, quote: bool| {
            let mut out = String::new();
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' if quote => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push('\t'),
                    c if c.is_control() => out.push('\u{FFFD}'),
                    c => out.push(c),
                }
            }
            out
        };
        let parts = [
            "a",
            "Plain help.",
            "\\",
            "\"",
            "\n",
            "\t",
            "\r",
            "\u{1b}",
            "\u{85}",
            "é",
            "∑",
            "\u{7f}",
            "~ ",
            "",
        ];
        for a in parts {
            for b in parts {
                for c in parts {
                    let s = format!("{a}{b}x{c}");
                    let mut label = String::new();
                    push_label_value(&mut label, &s);
                    assert_eq!(label, one_at_a_time(&s, true), "label value {s:?}");
                    for format in [Format::Classic, Format::OpenMetrics] {
                        let mut help = String::new();
                        push_help(&mut help, &s, format);
                        let quote = format == Format::OpenMetrics;
                        assert_eq!(help, one_at_a_time(&s, quote), "HELP {s:?} {format:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn values() {
        let mut s = String::new();
        for v in [1.0, 0.25, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -3.5] {
            push_value(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "1 0.25 NaN +Inf -Inf -3.5 ");
    }

    /// The fast paths print what `fmt` prints (but for how a tie rounds), for whole numbers, plain
    /// decimals, both edges of each path and 200,000 arbitrary bit
    /// patterns (a fixed xorshift sequence, so a failure repeats).
    #[test]
    fn values_print_as_fmt_prints_them() {
        let mut cases = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1 + 0.2,
            1e-4,
            9.99e-5,
            1e-5,
            1e15,
            1e15 - 1.0,
            -(1e15 - 0.5),
            999_999_999_999_999.9,
            1e16,
            1e21,
            5e-324,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            0.5,
            1.5,
            2.5,
            123_456.789,
            0.000_123_456_789,
            4_503_599_627_370_497.0,
        ];
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        for i in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push(match i % 4 {
                // Any bits: mostly huge or tiny magnitudes.
                0 => f64::from_bits(x),
                // Whole numbers of every size a count or a timestamp has.
                1 => (x >> (x % 64)) as f64,
                // Durations, ratios, sizes: a few digits at any scale.
                2 => (x % 1_000_000) as f64 / 10f64.powi((x >> 32) as i32 % 12),
                _ => -((x % 100_000) as f64) * 1e-3,
            });
        }
        for v in cases {
            if !v.is_finite() {
                continue;
            }
            let mut s = String::new();
            push_value(&mut s, v);
            let fmt = format!("{v}");
            // Where the value lies exactly between two shortest texts
            // (233115890514796.125: ...12 or ...13), `ryu` and `fmt` may
            // round the tie differently; both read back to the same value.
            let same = s == fmt
                || (s.len() == fmt.len() && s.parse::<f64>().map(f64::to_bits) == Ok(v.to_bits()));
            assert!(same, "{s} for {fmt} (bits {:#x})", v.to_bits());
        }
    }

    #[test]
    fn negotiation_follows_q_values() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Classic);
        assert_eq!(Format::negotiate(None), Format::Classic);
        assert_eq!(
            Format::negotiate(Some("text/plain;q=1,application/openmetrics-text;q=0.5")),
            Format::Classic
        );
        assert_eq!(Format::negotiate(Some("application/json")), Format::Classic);
    }

    #[test]
    fn histogram_lines_are_cumulative() {
        let def = FamilyDef {
            name: "rtt_seconds".into(),
            help: "h".into(),
            kind: Kind::Histogram,
            unit: None,
            labels: vec![],
            buckets: vec![0.125, 1.0],
        };
        let mut h = HistogramState::new(2);
        for v in [0.0625, 0.125, 0.5, 3.0] {
            h.observe(&def.buckets, v);
        }
        let mut s = String::new();
        push_histogram(&mut s, &def, &[("probe", "p")], &h);
        assert_eq!(
            s,
            "rtt_seconds_bucket{probe=\"p\",le=\"0.125\"} 2\nrtt_seconds_bucket{probe=\"p\",le=\"1\"} 3\nrtt_seconds_bucket{probe=\"p\",le=\"+Inf\"} 4\nrtt_seconds_count{probe=\"p\"} 4\nrtt_seconds_sum{probe=\"p\"} 3.6875\n"
        );
    }
}
