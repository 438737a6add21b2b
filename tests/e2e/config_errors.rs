//! `wasmprobe check` on each `tests/config-errors/<case>.toml` prints
//! exactly `<case>.stderr` and exits 2. Run with `UPDATE_SNAPSHOTS=1` to
//! rewrite the expected files after an intended change.

use std::process::Command;

use crate::harness::{root, wasm};

#[test]
fn every_case_prints_its_exact_message() {
    wasm("plugins", "http-health");
    wasm("plugins", "icmp");
    let dir = root().join("tests").join("config-errors");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "expected the config error cases in {}",
        dir.display()
    );
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let file = case
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default()
            .to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
            .args(["check", "--config", &file])
            .current_dir(&dir)
            .env_remove("WASMPROBE_LOG")
            .output()
            .unwrap_or_else(|e| panic!("run wasmprobe: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let expected_path = case.with_extension("stderr");
        if update {
            std::fs::write(&expected_path, &stderr).unwrap_or_else(|e| panic!("write: {e}"));
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (create it with UPDATE_SNAPSHOTS=1)",
                expected_path.display()
            )
        });
        if out.status.code() != Some(2) || stderr != expected {
            failures.push(format!(
                "{file}: exit {:?}\n--- expected ---\n{expected}--- got ---\n{stderr}",
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_valid_config_checks_clean() {
    wasm("plugins", "http-health");
    let out = Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(["check", "--config", "probes.toml"])
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("run wasmprobe: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("probes.toml: ok ("));
}
