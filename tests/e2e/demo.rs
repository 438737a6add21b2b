//! The README's run command: the default probes.toml with `--demo` shows
//! the bundled plugins producing metrics on one `/metrics`, and
//! scrape-compare catching the demo replica that drifts.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{Peer, Scrape, get, root, wasm};

#[test]
fn the_default_config_with_demo_shows_the_bundled_plugins() {
    for p in [
        "http-health",
        "icmp",
        "treaty-kpis",
        "anchor-job",
        "scrape-compare",
    ] {
        wasm("plugins", p);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args([
            "run",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "probes.toml",
        ])
        .current_dir(root())
        .env("ANCHOR_LEDGER_TOKEN", "demo-ledger-token")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start: {e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let _guard = Peer(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(" listening ")
                && let Some(a) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                && let Ok(a) = a.parse::<SocketAddr>()
            {
                let _ = tx.send(a);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("did not start (are 127.0.0.1:9471 to :9475 free?)"));
    let deadline = Instant::now() + Duration::from_secs(90);
    let wanted = [
        ("http-health", "probe_http_status_code"),
        ("icmp", "probe_icmp_duration_seconds"),
        ("treaty-kpis", "treaty_fill_rate"),
        ("anchor-job (mock)", "anchor_attempts_total"),
        ("scrape-compare", "scrape_compare_ratio"),
    ];
    loop {
        let s = Scrape::parse(&get(&format!("http://{addr}/metrics"), None).body);
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|(_, m)| s.all(m).is_empty())
            .map(|(p, _)| *p)
            .collect();
        let ledger_ok = s.get("anchor_configured", &[("probe", "anchor-ledger")]) == Some(1.0);
        if missing.is_empty() && ledger_ok {
            assert_eq!(
                s.value(
                    "probe_success",
                    &[("probe", "treaty-partner"), ("partner", "demo")]
                ),
                1.0
            );
            assert_eq!(
                s.value(
                    "treaty_fill_rate",
                    &[("probe", "treaty-partner"), ("partner", "demo")]
                ),
                0.95
            );
            drift_caught(&s);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still missing {missing:?} (ledger configured: {ledger_ok}):\n{}",
            s.text
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The demo's field replicas against the simulator's truth: 0.021, 0.022
/// and 0.301 (`demo::field::REPLICAS`).
fn drift_caught(s: &Scrape) {
    let probe = ("probe", "field-drift");
    let series = ("series", "prediction_error");
    let c = ("endpoint", "http://127.0.0.1:9475/metrics");
    assert_eq!(s.value("probe_success", &[probe]), 0.0, "{}", s.text);
    assert_eq!(
        s.value(
            "scrape_compare_condition_failed",
            &[probe, series, ("reason", "drift")]
        ),
        1.0
    );
    let ratio = s.value("scrape_compare_ratio", &[probe, series]);
    let spread = s.value("scrape_compare_spread", &[probe, series]);
    let deviation = s.value("scrape_compare_deviation", &[probe, series, c]);
    println!(
        "demo drift: ratio {ratio} (truth 0.301/0.021 = {}), spread {spread} (truth 0.28), deviation of c {deviation} (truth 0.279)",
        0.301 / 0.021
    );
    assert!((ratio - 0.301 / 0.021).abs() < 1e-9);
    assert!((spread - 0.28).abs() < 1e-9);
    assert!((deviation - 0.279).abs() < 1e-9);
    assert_eq!(s.value("scrape_compare_outlier", &[probe, series, c]), 1.0);
    for quiet in ["density", "updated"] {
        for reason in ["drift", "stale", "absent"] {
            assert_ne!(
                s.get(
                    "scrape_compare_condition_failed",
                    &[probe, ("series", quiet), ("reason", reason)]
                ),
                Some(1.0),
                "{quiet} {reason}"
            );
        }
    }
}
