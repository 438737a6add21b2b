//! Memory the run history costs: N targets' histories filled to the
//! default `[history]` sizes (20 runs, 5 failures with evidence of one HTTP
//! call and a log line each), measured as the growth of the process's
//! resident memory while they are held. Prints, asserts nothing.
//!
//!   cargo bench --bench history_memory [-- N...]   (default: 1000 100000)

use std::time::{Duration, SystemTime};

use wasmprobe::history::{History, HistoryLimits, HistoryTotals};
use wasmprobe::runtime::record::{LogLine, RunRecord, RunResult};

/// Resident memory of this process, in bytes (`VmRSS`).
fn rss() -> isize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<isize>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// The evidence of a failed http-health run as the recorder keeps it: the
/// request, and a 503 answer with a KiB of body.
fn evidence() -> serde_json::Value {
    serde_json::json!({
        "call": "http-send",
        "request": {
            "method": "GET", "url": "http://10.0.0.1:8080/health",
            "headers": [["User-Agent", "wasmprobe"], ["Authorization", "[redacted]"]],
            "body": null, "timeout_ms": null, "follow_redirects": true,
            "max_redirects": 10, "max_body_bytes": null, "preferred_ip_protocol": "Ip6",
            "ip_protocol_fallback": true, "enable_http2": true,
            "http2_prior_knowledge": false, "decompress": false
        },
        "result": {"Ok": {
            "status": 503, "version": "Http11",
            "headers": [["content-type", "text/plain"], ["content-length", "1024"]],
            "body": {"utf8": "x".repeat(1024)},
            "trailers": [], "body_truncated": false, "content_length": 1024,
            "wire_body_length": 1024, "redirects": 0,
            "final_url": "http://10.0.0.1:8080/health", "remote_addr": "10.0.0.1:8080",
            "ip_protocol": "Ip4",
            "timings": {"resolve": 0.0, "connect": 0.0002, "tls": 0.0, "processing": 0.0004, "transfer": 0.00001},
            "tls": null
        }}
    })
}

fn record(success: bool, at: SystemTime, calls: &[serde_json::Value]) -> RunRecord {
    RunRecord {
        result: if success {
            RunResult::Success
        } else {
            RunResult::Failure
        },
        trap: None,
        success,
        duration: Duration::from_millis(7),
        finished_at: at,
        message: (!success).then(|| "invalid HTTP response status code 503".to_string()),
        samples: Vec::new(),
        usage: Default::default(),
        logs: if success {
            Vec::new()
        } else {
            vec![LogLine {
                level: "info",
                message: "GET http://10.0.0.1:8080/health: 503".into(),
            }]
        },
        calls: if success { Vec::new() } else { calls.to_vec() },
        optimized: true,
    }
}

/// Bytes held by `n` histories after `runs` runs each, `failing` of them
/// failed (the last ones), under `limits`.
fn measure(n: usize, limits: HistoryLimits, runs: usize, failing: usize) -> (isize, u64) {
    let calls = vec![evidence()];
    let totals = HistoryTotals::default();
    let before = rss();
    let mut all: Vec<History> = Vec::with_capacity(n);
    let t0 = SystemTime::now();
    for _ in 0..n {
        let mut h = History::default();
        for r in 0..runs {
            let ok = r < runs - failing;
            h.push(
                &record(ok, t0 + Duration::from_secs(60 * r as u64), &calls),
                limits,
                &totals,
            );
        }
        all.push(h);
    }
    let held = rss() - before;
    let evidence = totals
        .evidence_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    drop(all);
    (held, evidence)
}

fn mib(b: isize) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// The cases measured for each size: what, limits, runs, failed runs.
fn cases() -> [(&'static str, HistoryLimits, usize, usize); 3] {
    let default = HistoryLimits::default();
    [
        ("all up (20 runs kept)", default, 20, 0),
        (
            "failing (20 runs, 5 failures with evidence)",
            default,
            20,
            20,
        ),
        (
            "failing, runs only ([history] failures = 0)",
            HistoryLimits {
                failures: 0,
                ..default
            },
            20,
            20,
        ),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `one N CASE`: one measurement, in a fresh process (resident memory
    // freed by a case before would hide the next one's growth).
    if args.first().map(String::as_str) == Some("one") {
        let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
        let i: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(0);
        let (what, limits, runs, failing) = cases()[i.min(2)];
        let (held, evidence) = measure(n, limits, runs, failing);
        println!(
            "  {n:>7} targets, {what:<46} {:>8.1} MiB  ({:>6.0} B per target; wasmprobe_history_evidence_bytes {:.1} MiB)",
            mib(held),
            held as f64 / n as f64,
            evidence as f64 / (1 << 20) as f64
        );
        return;
    }
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![1000, 100_000];
    }
    let d = HistoryLimits::default();
    println!(
        "history memory: [history] runs = {}, failures = {}, evidence_bytes = {}, total_evidence_bytes = {} (growth of resident memory while held)",
        d.runs, d.failures, d.evidence_bytes, d.total_evidence_bytes
    );
    let me = std::env::current_exe().unwrap_or_default();
    for n in sizes {
        for i in 0..cases().len() {
            match std::process::Command::new(&me)
                .args(["one", &n.to_string(), &i.to_string()])
                .status()
            {
                Ok(s) if s.success() => {}
                other => println!("  {n} targets, case {i}: {other:?}"),
            }
        }
    }
}
