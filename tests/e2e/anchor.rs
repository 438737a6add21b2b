//! anchor-job: mock receipts with injected failures, an HTTP ledger (the
//! demo simulator) with credentials from a file or the environment, and
//! graceful degradation when they are missing. A credential never shows in
//! `/metrics`, the log or `wasmprobe probe` output.

use std::process::Command;
use std::time::Duration;

use crate::harness::{Engine, get, said};
use crate::targets;

const WAIT: Duration = Duration::from_secs(90);
const TOKEN: &str = "t0k3n-for-the-e2e-ledger";

/// An anchor-job probe; `keys` are more keys of its table (`allow`,
/// `secrets`), without them it may reach nothing.
fn anchor_probe(name: &str, schedule: &str, keys: &str, config: &str) -> String {
    let allow = if keys.contains("allow") {
        ""
    } else {
        "allow = []"
    };
    format!(
        "[probes.{name}]\nplugin = \"anchor-job\"\nschedule = \"{schedule}\"\n{allow}\n{keys}\n[probes.{name}.config]\n{config}\n"
    )
}

fn count(s: &crate::harness::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.get(name, labels).unwrap_or(0.0)
}

#[test]
fn mock_ledger_anchors_and_injected_failures_are_counted() {
    let e = Engine::new()
        .raw(&anchor_probe(
            "mock",
            "* * * * * *",
            "",
            "batch_size = 100\nmock_fail_every = 2",
        ))
        .start();
    let s = e.wait_for("a success and a failure", WAIT, |s| {
        count(s, "anchor_success_total", &[("probe", "mock")]) >= 1.0
            && count(
                s,
                "anchor_failures_total",
                &[("probe", "mock"), ("reason", "ledger_unavailable")],
            ) >= 1.0
    });
    assert_eq!(s.value("anchor_configured", &[("probe", "mock")]), 1.0);
    assert_eq!(s.value("anchor_batch_size", &[("probe", "mock")]), 100.0);
    let attempts = s.value("anchor_attempts_total", &[("probe", "mock")]);
    let failures: f64 = s.all("anchor_failures_total").iter().map(|x| x.value).sum();
    assert_eq!(
        attempts,
        s.value("anchor_success_total", &[("probe", "mock")]) + failures
    );
    assert!(
        s.value(
            "anchor_last_success_timestamp_seconds",
            &[("probe", "mock")]
        ) > 1.7e9
    );
    assert_eq!(
        s.value("anchor_duration_seconds_count", &[("probe", "mock")]),
        attempts
    );
    assert_eq!(get(&e.url("/healthz"), None).status, 200);
}

#[test]
fn missing_credentials_degrade_instead_of_failing_the_exporter() {
    let ledger = targets::ledger(TOKEN, 0.0);
    let e = Engine::new()
        .raw(&anchor_probe(
            "no-token",
            "* * * * * *",
            "secrets = { ledger_token = { env = \"WASMPROBE_E2E_SURELY_UNSET\" } }",
            &format!(
                "ledger = \"http\"\nledger_url = \"{}\"",
                ledger.url("/anchor")
            ),
        ))
        .raw(&anchor_probe(
            "no-ledger",
            "* * * * * *",
            "",
            "ledger = \"http\"",
        ))
        .start();
    let s = e.wait_for("both reported", WAIT, |s| {
        ["no-token", "no-ledger"]
            .iter()
            .all(|p| s.get("anchor_configured", &[("probe", p)]).is_some())
    });
    for p in ["no-token", "no-ledger"] {
        assert_eq!(s.value("anchor_configured", &[("probe", p)]), 0.0);
        assert_eq!(s.value("probe_success", &[("probe", p)]), 0.0);
        assert!(s.get("anchor_attempts_total", &[("probe", p)]).is_none());
    }
    assert_eq!(ledger.accepted(), 0, "no attempt without a credential");
    assert_eq!(get(&e.url("/healthz"), None).status, 200);
    assert_eq!(get(&e.url("/readyz"), None).status, 200);
    let page = get(&e.url("/"), None).body;
    assert!(
        page.contains("secrets.ledger_token"),
        "the reason is shown: {page}"
    );
}

#[test]
fn http_ledger_with_credentials_from_file_and_environment() {
    let ledger = targets::ledger(TOKEN, 0.0);
    let engine = Engine::new();
    let token_file = engine.file("ledger-token", &format!("{TOKEN}\n"));
    let allow = format!("allow = [\"{}\"]", ledger.origin("http"));
    let ledger_config = format!(
        "ledger = \"http\"\nledger_url = \"{}\"\nbatch_url = \"{}\"",
        ledger.url("/anchor"),
        ledger.url("/batch?size=50")
    );
    let e = engine
        .env("WASMPROBE_E2E_LEDGER_TOKEN", TOKEN)
        .raw(&anchor_probe(
            "by-file",
            "* * * * * *",
            &format!("{allow}\nsecrets = {{ ledger_token = {{ file = {token_file:?} }} }}"),
            &ledger_config,
        ))
        .raw(&anchor_probe(
            "by-env",
            "* * * * * *",
            &format!(
                "{allow}\nsecrets = {{ ledger_token = {{ env = \"WASMPROBE_E2E_LEDGER_TOKEN\" }} }}"
            ),
            &ledger_config,
        ))
        .raw(&anchor_probe(
            "wrong",
            "* * * * * *",
            &format!(
                "{allow}\nsecrets = {{ ledger_token = {{ env = \"WASMPROBE_E2E_WRONG_TOKEN\" }} }}"
            ),
            &ledger_config,
        ))
        .env("WASMPROBE_E2E_WRONG_TOKEN", "not-the-right-token")
        .start();
    let s = e.wait_for("anchored twice each, and refused", WAIT, |s| {
        ["by-file", "by-env"]
            .iter()
            .all(|p| count(s, "anchor_success_total", &[("probe", p)]) >= 2.0)
            && count(
                s,
                "anchor_failures_total",
                &[("probe", "wrong"), ("reason", "unauthorized")],
            ) >= 1.0
    });
    assert_eq!(s.value("anchor_batch_size", &[("probe", "by-file")]), 50.0);
    assert_eq!(s.value("anchor_configured", &[("probe", "wrong")]), 1.0);
    assert!(!s.text.contains(TOKEN) && !s.text.contains("not-the-right-token"));
    let log = e.log();
    assert!(
        !log.contains(TOKEN) && !log.contains("not-the-right-token"),
        "{log}"
    );
    assert!(log.contains("unauthorized"), "{log}");
}

#[test]
fn a_plugin_cannot_leak_a_secret_it_read() {
    let engine = Engine::new();
    let token_file = engine.file("token", TOKEN);
    let probe = format!(
        "[probes.leaky]\nplugin = \"misbehave\"\nschedule = \"* * * * * *\"\ntarget = \"http://127.0.0.1:9/\"\n\
         secrets = {{ token = {{ file = {token_file:?} }} }}\n[probes.leaky.config]\nbehaviour = \"leak_secret\"\n"
    );
    let engine = engine.raw(&probe);
    let config = engine.config_path();
    let e = engine.start();
    let s = e.wait_for("a run", WAIT, |s| {
        s.get("probe_success", &[("probe", "leaky")]).is_some()
    });
    assert!(!s.text.contains(TOKEN), "{}", s.text);
    assert_eq!(
        s.value(
            "misbehave_value",
            &[("probe", "leaky"), ("v", "token=[redacted]")]
        ),
        1.0
    );
    let log = e.log();
    assert!(!log.contains(TOKEN), "{log}");
    assert!(log.contains("the token is [redacted]"), "{log}");
    let page = get(&e.url("/"), None).body;
    assert!(
        !page.contains(TOKEN) && page.contains("leaking [redacted]"),
        "{page}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(["probe", "--probe", "leaky", "--log", "debug", "--config"])
        .arg(&config)
        .output()
        .unwrap_or_else(|err| panic!("wasmprobe probe: {err}"));
    let all = said(&out);
    assert!(!all.contains(TOKEN), "{all}");
    assert!(all.contains("[redacted]"), "{all}");
}
