//! A real Prometheus server (Debian's `prometheus`) scrapes the engine,
//! negotiating OpenMetrics, and stores what the probes report: the
//! exposition is read by the parser operators actually run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Engine, Peer, free_port, get};

fn query(port: u16, q: &str) -> serde_json::Value {
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/query?query={}",
        url_escape(q)
    );
    let r = get(&url, None);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{url}: {e}: {}", r.body))
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The values of an instant-vector query, by the given label.
fn values(port: u16, q: &str, label: &str) -> Vec<(String, f64)> {
    let v = query(port, q);
    v["data"]["result"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let l = r["metric"][label].as_str().unwrap_or_default().to_string();
                    let x = r["value"][1]
                        .as_str()
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(f64::NAN);
                    (l, x)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn prometheus_scrapes_openmetrics_and_stores_every_probe() {
    let e = Engine::new()
        .probe(
            "inject",
            "plugin = \"misbehave\"\nschedule = \"* * * * * *\"\ntarget = \"http://127.0.0.1:9/\"\n[probes.inject.config]\nbehaviour = \"inject\"",
        )
        .probe(
            "acc",
            "plugin = \"misbehave\"\nschedule = \"* * * * * *\"\ntarget = \"http://127.0.0.1:9/\"",
        )
        .start();
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("tempdir: {err}"));
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: wasmprobe\n    static_configs:\n      - targets: [\"{}\"]\n",
            e.addr
        ),
    )
    .unwrap_or_else(|err| panic!("write: {err}"));
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("prometheus is missing ({err}): install Debian's `prometheus` package (scripts/test does)"));
    let _prom = Peer(child);

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && values(port, "up{job=\"wasmprobe\"}", "job") == vec![("wasmprobe".to_string(), 1.0)]
            && values(port, "probe_success", "probe").len() == 2
            && !values(port, "misbehave_observed_seconds_bucket", "le").is_empty();
        if up {
            break;
        }
        if Instant::now() > deadline {
            let targets = get(&format!("http://127.0.0.1:{port}/api/v1/targets"), None).body;
            panic!(
                "prometheus did not store the probes\n--- targets ---\n{targets}\n--- engine log ---\n{}",
                e.log()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let targets = get(&format!("http://127.0.0.1:{port}/api/v1/targets"), None).body;
    assert!(targets.contains("\"lastError\":\"\""), "{targets}");
    assert!(values(port, "{__name__=\"injected_series\"}", "job").is_empty());
    let injected = values(port, "misbehave_value{probe=\"inject\"}", "v");
    assert!(
        injected
            .iter()
            .any(|(v, _)| v == "x\"} 1\ninjected_series 666\n# EOF\n"),
        "{injected:?}"
    );
    let units = query(port, "misbehave_observed_seconds_count");
    assert_eq!(units["status"], "success");
}
