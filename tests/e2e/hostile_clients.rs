//! Hostile clients of the endpoint: a flood of `/probe` requests against
//! slow targets, SSRF spellings through `/probe`, and slowloris and slow
//! readers on `/metrics`. The engine bounds each and `/metrics` stays
//! prompt for everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{Engine, get};
use crate::targets;

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p) as usize]
}

#[test]
fn a_thousand_concurrent_probe_requests_are_bounded_and_refused_fast() {
    let slow = targets::hanging();
    let forbidden = targets::counting();
    let e = Engine::new()
        .raw("[server]\nprobe_concurrency = 16\n")
        .probe(
            "http_2xx",
            &format!(
                "plugin = \"http-health\"\ntimeout = \"3s\"\nallow = [\"{}\"]",
                slow.origin("http")
            ),
        )
        .start();
    let url = e.url(&format!("/probe?module=http_2xx&target={}", slow.url("/")));
    let started = Instant::now();
    let clients: Vec<_> = (0..1000)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                let r = get(&url, None);
                (r.status, t.elapsed().as_secs_f64() * 1000.0)
            })
        })
        .collect();
    // /metrics while the flood is on.
    std::thread::sleep(Duration::from_millis(300));
    let (p50, worst) = e.scrape_latency(10);
    let results: Vec<(u16, f64)> = clients
        .into_iter()
        .map(|h| h.join().unwrap_or((0, 0.0)))
        .collect();
    let total = started.elapsed().as_secs_f64();
    let ok: Vec<f64> = results.iter().filter(|r| r.0 == 200).map(|r| r.1).collect();
    let mut busy: Vec<f64> = results.iter().filter(|r| r.0 == 503).map(|r| r.1).collect();
    let other: Vec<u16> = results
        .iter()
        .map(|r| r.0)
        .filter(|s| *s != 200 && *s != 503)
        .collect();
    println!(
        "1000 concurrent /probe: {} ran (200), {} refused (503) in p50 {:.1} ms / p99 {:.1} ms, {} other; all done in {total:.1} s; /metrics p50 {p50:.1} ms, worst {worst:.1} ms during the flood",
        ok.len(),
        busy.len(),
        percentile(&mut busy, 0.5),
        percentile(&mut busy, 0.99),
        other.len()
    );
    assert!(other.is_empty(), "{other:?}");
    assert!(busy.len() >= 900, "only {} refused", busy.len());
    assert!(ok.len() >= 16);
    // The slow target saw at most the concurrency bound at once.
    assert!(slow.accepted() <= ok.len());
    let s = e.scrape();
    assert!(s.value("wasmprobe_ondemand_rejected_total", &[]) >= 900.0);

    // SSRF through /probe: other spellings of a forbidden listener.
    let b = forbidden.addr.port();
    for t in [
        format!("http://127.0.0.1:{b}/"),
        format!("http://0x7f000001:{b}/"),
        format!("http://[::ffff:127.0.0.1]:{b}/"),
        format!("http://{}@127.0.0.1:{b}/", slow.addr),
    ] {
        let target: String = t
            .bytes()
            .map(|c| match c {
                b'@' => "%40".to_string(),
                b'[' => "%5B".to_string(),
                b']' => "%5D".to_string(),
                b':' => "%3A".to_string(),
                b'/' => "%2F".to_string(),
                c => (c as char).to_string(),
            })
            .collect();
        let r = get(
            &e.url(&format!("/probe?module=http_2xx&target={target}")),
            None,
        );
        assert!(
            r.status == 403 || r.status == 400,
            "{t}: {} {}",
            r.status,
            r.body
        );
    }
    assert_eq!(forbidden.accepted(), 0);
}

#[test]
fn slowloris_and_slow_readers_do_not_hold_metrics() {
    let e = Engine::new()
        .probe(
            "tick",
            "plugin = \"misbehave\"\nschedule = \"* * * * * *\"\n[probes.tick.config]\nbehaviour = \"many_series\"\ncount = 500",
        )
        // 8,000 series more: the exposition is over 256 KiB, so a reader
        // that never reads holds a streamed scrape, not a finished text.
        .probe(
            "wide",
            "plugin = \"misbehave\"\nschedule = \"* * * * * *\"\n[probes.wide.config]\nbehaviour = \"many_series\"\ncount = 8000\n[probes.wide.limits]\nmax_series = 8000",
        )
        .start();
    e.wait_for("a first run", Duration::from_secs(60), |s| {
        s.get("probe_success", &[("probe", "tick")]).is_some()
            && s.all("misbehave_value").len() > 8000
    });
    let addr = e.addr;
    // 200 clients sending their headers a byte at a time, never finishing.
    let mut lorises: Vec<TcpStream> = (0..200)
        .filter_map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").ok()?;
            Some(s)
        })
        .collect();
    // 50 clients that ask for /metrics and never read the answer.
    let readers: Vec<TcpStream> = (0..50)
        .filter_map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .ok()?;
            Some(s)
        })
        .collect();
    let (p50, worst) = e.scrape_latency(20);
    println!("200 slowloris + 50 slow readers open: /metrics p50 {p50:.1} ms, worst {worst:.1} ms");
    // Keep trickling; the header-read timeout (10 s) closes them anyway.
    let started = Instant::now();
    let mut closed = 0;
    while started.elapsed() < Duration::from_secs(20) && closed < lorises.len() {
        closed = 0;
        for s in &mut lorises {
            let _ = s.set_read_timeout(Some(Duration::from_millis(1)));
            let mut b = [0u8; 512];
            let gone = match s.read(&mut b) {
                Ok(0) => true,
                Ok(_) => true,
                Err(e) => {
                    e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut
                }
            };
            if gone || s.write_all(b"X").is_err() {
                closed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "slowloris connections closed by the server: {closed}/200 after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(closed, lorises.len(), "slowloris connections left open");
    let _ = e.scrape_latency(5);
    drop(readers);
    assert_eq!(get(&e.url("/healthz"), None).status, 200);
}
