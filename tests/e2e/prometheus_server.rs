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

/// A Prometheus server scraping the engine at `addr` every second as job
/// `wasmprobe`: its port, the process and the folder it stores in.
fn prometheus_scraping(addr: std::net::SocketAddr) -> (u16, Peer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("tempdir: {err}"));
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: wasmprobe\n    static_configs:\n      - targets: [\"{addr}\"]\n"
        ),
    )
    .unwrap_or_else(|err| panic!("write: {err}"));
    let (port, prom) = prometheus(&config, dir.path());
    (port, prom, dir)
}

/// A Prometheus server with `config`, storing under `dir`: its port, and
/// the process (stopped on drop).
fn prometheus(config: &std::path::Path, dir: &std::path::Path) -> (u16, Peer) {
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("prometheus is missing ({err}): install Debian's `prometheus` package (scripts/test does)"));
    (port, Peer(child))
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
    let (port, _prom, _dir) = prometheus_scraping(e.addr);

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

/// The scrape config prometheus-operator generates from
/// deploy/kubernetes/probe.yaml (static targets relabelled into
/// `__param_target` and `instance`, the prober's address, `module`, a
/// scrape timeout), run by a real Prometheus against the engine: every
/// target is `up 1`, and `probe_success` says which answered. The hung
/// target ends within the scrape timeout as `probe_success 0`.
#[test]
fn a_prometheus_operator_probe_scrapes_through_probe() {
    let target = crate::targets::counting();
    let hanging = crate::targets::hanging();
    let e = Engine::new()
        .probe(
            "http_2xx",
            &format!(
                "plugin = \"http-health\"\ntimeout = \"30s\"\nallow = [\"{}\", \"{}\"]\n[probes.http_2xx.config]\nvalid_status_codes = [200]",
                target.origin("http"),
                hanging.origin("http")
            ),
        )
        .start();
    let good = target.url("/ok");
    let bad = target.url("/status/503");
    let hung = hanging.url("/");
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("tempdir: {err}"));
    let config = dir.path().join("prometheus.yml");
    // As the operator writes it for the Probe (job name, params, relabelling).
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 3s\n\
             scrape_configs:\n\
             - job_name: probe/monitoring/web-endpoints\n\
             \x20 honor_timestamps: true\n\
             \x20 scrape_interval: 3s\n\
             \x20 scrape_timeout: 2s\n\
             \x20 metrics_path: /probe\n\
             \x20 scheme: http\n\
             \x20 params:\n\
             \x20   module: [http_2xx]\n\
             \x20 static_configs:\n\
             \x20 - targets: [\"{good}\", \"{bad}\", \"{hung}\"]\n\
             \x20   labels:\n\
             \x20     team: web\n\
             \x20     namespace: monitoring\n\
             \x20 relabel_configs:\n\
             \x20 - source_labels: [job]\n\
             \x20   target_label: __tmp_prometheus_job_name\n\
             \x20 - target_label: job\n\
             \x20   replacement: web-endpoints\n\
             \x20 - source_labels: [__address__]\n\
             \x20   target_label: __param_target\n\
             \x20 - source_labels: [__param_target]\n\
             \x20   target_label: instance\n\
             \x20 - target_label: __address__\n\
             \x20   replacement: {}\n",
            e.addr
        ),
    )
    .unwrap_or_else(|err| panic!("write: {err}"));
    let (port, _prom) = prometheus(&config, dir.path());

    let deadline = Instant::now() + Duration::from_secs(90);
    let (up, success) = loop {
        let ready = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        let up = if ready {
            values(port, "up{job=\"web-endpoints\"}", "instance")
        } else {
            Vec::new()
        };
        let success = if ready {
            values(port, "probe_success{job=\"web-endpoints\"}", "instance")
        } else {
            Vec::new()
        };
        if up.len() == 3 && success.len() == 3 {
            break (up, success);
        }
        if Instant::now() > deadline {
            let targets = get(&format!("http://127.0.0.1:{port}/api/v1/targets"), None).body;
            panic!(
                "prometheus did not scrape the three targets\n--- targets ---\n{targets}\n--- engine log ---\n{}",
                e.log()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    println!("Probe through /probe: up {up:?}\nprobe_success {success:?}");
    assert!(up.iter().all(|(_, v)| *v == 1.0), "{up:?}");
    let of = |instance: &str| {
        success
            .iter()
            .find(|(i, _)| i == instance)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no probe_success for {instance}: {success:?}"))
    };
    assert_eq!(of(&good), 1.0);
    assert_eq!(of(&bad), 0.0);
    assert_eq!(of(&hung), 0.0);
    // The static labels reach the series, as the operator's do.
    let teams = values(
        port,
        "probe_success{job=\"web-endpoints\",team=\"web\"}",
        "team",
    );
    assert_eq!(teams.len(), 3, "{teams:?}");
}

/// `GET /metrics` with `Accept-Encoding: gzip`, read off the socket: the
/// response's headers (lower-cased names) and its body, de-chunked.
fn raw_gzip_scrape(addr: std::net::SocketAddr) -> (Vec<(String, String)>, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
    s.write_all(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    )
    .unwrap_or_else(|e| panic!("write: {e}"));
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("read: {e}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers"));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if !chunked {
        return (headers, rest.to_vec());
    }
    let mut body = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("a chunk without its size line"));
        let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16)
            .unwrap_or_else(|e| panic!("chunk size: {e}"));
        rest = &rest[eol + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    (headers, body)
}

/// An exposition larger than one piece of text (256 KiB) is written and
/// sent piece by piece: chunked, with no length, gzip-compressed as a
/// stream when asked; the text is whole, and a real Prometheus stores
/// every series of it.
#[test]
fn a_large_exposition_is_streamed_and_stored_whole() {
    let wide = |name: &str| {
        format!(
            "plugin = \"misbehave\"\nschedule = \"* * * * * *\"\n[probes.{name}.config]\nbehaviour = \"many_series\"\ncount = 4000\n[probes.{name}.limits]\nmax_series = 4000"
        )
    };
    let e = Engine::new()
        .probe("wide-a", &wide("wide-a"))
        .probe("wide-b", &wide("wide-b"))
        .start();
    let s = e.wait_for("8,000 series", Duration::from_secs(90), |s| {
        s.all("misbehave_value").len() == 8000
    });
    assert!(s.text.len() > 256 << 10, "{} bytes", s.text.len());

    let (headers, body) = raw_gzip_scrape(e.addr);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("content-encoding"), Some("gzip"), "{headers:?}");
    assert_eq!(header("transfer-encoding"), Some("chunked"), "{headers:?}");
    assert_eq!(header("content-length"), None, "{headers:?}");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text)
        .unwrap_or_else(|err| panic!("the streamed gzip body does not decode: {err}"));
    let parsed = crate::harness::Scrape::parse(&text);
    for probe in ["wide-a", "wide-b"] {
        let values: std::collections::BTreeSet<&str> = parsed
            .all("misbehave_value")
            .iter()
            .filter(|x| x.labels.get("probe").map(String::as_str) == Some(probe))
            .filter_map(|x| x.labels.get("v").map(String::as_str))
            .collect();
        assert_eq!(values.len(), 4000, "{probe}");
    }
    crate::harness::promtool_check(&text);

    let (port, _prom, _dir) = prometheus_scraping(e.addr);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let stored = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && values(port, "up{job=\"wasmprobe\"}", "job") == vec![("wasmprobe".to_string(), 1.0)]
            && values(port, "count by (probe) (misbehave_value)", "probe")
                == vec![
                    ("wide-a".to_string(), 4000.0),
                    ("wide-b".to_string(), 4000.0),
                ];
        if stored {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not store the 8,000 series\n{}",
            get(&format!("http://127.0.0.1:{port}/api/v1/targets"), None).body
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
