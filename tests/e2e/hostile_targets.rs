//! Hostile destinations: every spelling that tries to slip past the
//! allow-list, redirects to forbidden hosts, and targets that hang in the
//! TLS handshake, trickle one byte a second or answer with a gzip bomb.
//! Zero connections reach a forbidden listener; each run ends on time.

use std::time::Duration;

use crate::harness::{Engine, Scrape, promtool_check};
use crate::targets;

const WAIT: Duration = Duration::from_secs(120);

fn status_of(s: &Scrape, probe: &str) -> Option<(String, f64)> {
    s.all("misbehave_http_status")
        .into_iter()
        .find(|x| x.labels.get("probe").map(String::as_str) == Some(probe))
        .map(|x| (x.labels.get("error").cloned().unwrap_or_default(), x.value))
}

#[test]
fn no_spelling_of_a_forbidden_host_gets_through() {
    let allowed = targets::http();
    let forbidden = targets::counting();
    let (a, b) = (allowed.addr.port(), forbidden.addr.port());
    let zoo = [
        ("userinfo", format!("http://127.0.0.1:{a}@127.0.0.1:{b}/ok")),
        ("userinfo-name", format!("http://allowed@127.0.0.1:{b}/ok")),
        ("trailing-dot", format!("http://127.0.0.1.:{b}/ok")),
        ("upper-case", format!("HTTP://127.0.0.1:{b}/ok")),
        ("ipv4-mapped", format!("http://[::ffff:127.0.0.1]:{b}/ok")),
        ("decimal", format!("http://2130706433:{b}/ok")),
        ("octal", format!("http://0177.0.0.1:{b}/ok")),
        ("hex", format!("http://0x7f000001:{b}/ok")),
        ("short", format!("http://127.1:{b}/ok")),
        ("zone-id", format!("http://[::1%25lo]:{b}/ok")),
        ("name", format!("http://localhost:{b}/ok")),
        ("port", format!("http://127.0.0.1:{b}/ok")),
        ("other-scheme", format!("ftp://127.0.0.1:{a}/ok")),
        ("tls-scheme", format!("https://127.0.0.1:{a}/ok")),
        (
            "redirect",
            format!("http://127.0.0.1:{a}/redirect-to?url=http://127.0.0.1:{b}/ok"),
        ),
        (
            "redirect-mapped",
            format!("http://127.0.0.1:{a}/redirect-to?url=http://[::ffff:7f00:1]:{b}/ok"),
        ),
    ];
    let mut e = Engine::new();
    for (name, url) in &zoo {
        e = e.raw(&format!(
            "[probes.{name}]\nplugin = \"misbehave\"\nschedule = \"* * * * * *\"\nallow = [\"http://127.0.0.1:{a}\"]\n[probes.{name}.config]\nbehaviour = \"http\"\nurl = {url:?}\n"
        ));
    }
    let e = e.start();
    let s = e.wait_for("a run of every bypass attempt", WAIT, |s| {
        zoo.iter().all(|(n, _)| status_of(s, n).is_some())
    });
    for (name, url) in &zoo {
        let (error, status) = status_of(&s, name).unwrap_or_default();
        println!("{name:16} {url:70} -> {error}");
        assert!(
            matches!(error.as_str(), "denied" | "invalid_request"),
            "{name} ({url}) was not refused: error {error:?} status {status}"
        );
    }
    assert_eq!(
        forbidden.accepted(),
        0,
        "a bypass reached the forbidden listener"
    );
    promtool_check(&s.text);
}

fn http_health(name: &str, target: &str, extra: &str, config: &str) -> String {
    format!(
        "[probes.{name}]\nplugin = \"http-health\"\nschedule = \"*/3 * * * * *\"\ntarget = {target:?}\ntimeout = \"2s\"\n{extra}\n[probes.{name}.config]\n{config}\n"
    )
}

#[test]
fn hanging_trickling_and_bombing_targets_end_their_runs_on_time() {
    let hang = targets::hanging();
    let trickle = targets::trickle();
    let bomb = targets::gzip_bomb();
    let e = Engine::new()
        .raw(&http_health("tls-hang", &hang.https_url("/"), "", ""))
        .raw(&http_health("trickle", &trickle.url("/"), "", ""))
        .raw(&http_health(
            "bomb",
            &bomb.url("/"),
            "[probes.bomb.limits]\nmax_body = \"1MiB\"",
            "compression = \"gzip\"",
        ))
        .start();
    let rss = e.rss_kib();
    let s = e.wait_for("two runs of each", WAIT, |s| {
        ["tls-hang", "trickle", "bomb"].iter().all(|p| {
            s.all("wasmprobe_probe_runs_total")
                .iter()
                .filter(|x| x.labels.get("probe").map(String::as_str) == Some(*p))
                .map(|x| x.value)
                .sum::<f64>()
                >= 2.0
        })
    });
    let (p50, worst) = e.scrape_latency(20);
    for p in ["tls-hang", "trickle", "bomb"] {
        let took = s.value("probe_duration_seconds", &[("probe", p)]);
        println!(
            "{p}: run ended after {took:.3} s (timeout 2 s), probe_success {}",
            s.value("probe_success", &[("probe", p)])
        );
        assert_eq!(s.value("probe_success", &[("probe", p)]), 0.0, "{p}");
    }
    let grown = (e.rss_kib() as i64 - rss as i64) / 1024;
    println!(
        "/metrics p50 {p50:.1} ms, worst {worst:.1} ms; RSS {grown:+} MiB after the gzip bomb (256 MiB decoded)"
    );
    assert!(grown < 128, "RSS grew {grown} MiB");
    promtool_check(&s.text);
}

/// A name whose address flips between an allowed and a forbidden one
/// every few milliseconds (a rebinding DNS, here `/etc/hosts` in the
/// engine's own mount namespace). The engine resolves once, checks those
/// addresses and connects only to them: the forbidden listener never sees
/// a connection, whatever the timing.
#[test]
fn a_name_that_rebinds_never_reaches_the_forbidden_address() {
    if crate::netns::skip("a_name_that_rebinds_never_reaches_the_forbidden_address") {
        return;
    }
    // The same port on two loopback addresses: one allowed, one not.
    let allowed = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = allowed.local_addr().map(|a| a.port()).unwrap_or_default();
    let forbidden = match std::net::TcpListener::bind(("127.0.0.2", port)) {
        Ok(l) => l,
        Err(e) => {
            println!("SKIPPED: cannot bind 127.0.0.2:{port}: {e}");
            return;
        }
    };
    let allowed_hits = count_and_answer(allowed);
    let forbidden_hits = count_and_answer(forbidden);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let hosts = dir.path().join("hosts");
    let good = "127.0.0.1 localhost\n127.0.0.1 rebind.test\n";
    let evil = "127.0.0.1 localhost\n127.0.0.2 rebind.test\n";
    std::fs::write(&hosts, good).unwrap_or_else(|e| panic!("{e}"));
    let script = format!("mount --bind {} /etc/hosts && exec \"$@\"", hosts.display());
    let e = Engine::new()
        .wrap(&["unshare", "--mount", "--propagation", "private", "sh", "-c", &script, "sh"])
        .raw(&format!(
            "[probes.rebind]\nplugin = \"misbehave\"\nschedule = \"* * * * * *\"\nallow = [\"http://rebind.test:{port}\", \"http://127.0.0.1/32:{port}\"]\n[probes.rebind.config]\nbehaviour = \"http\"\nurl = \"http://rebind.test:{port}/\"\n"
        ))
        .start();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        let hosts = hosts.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = if n.is_multiple_of(2) { evil } else { good };
                // In place: the bind mount holds this inode.
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&hosts)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
                n += 1;
                std::thread::sleep(Duration::from_millis(3));
            }
            n
        })
    };
    let s = e.wait_for("runs that reached the allowed address", WAIT, |s| {
        s.get(
            "wasmprobe_probe_runs_total",
            &[("probe", "rebind"), ("result", "success")],
        )
        .unwrap_or(0.0)
            >= 3.0
            && s.get(
                "wasmprobe_probe_runs_total",
                &[("probe", "rebind"), ("result", "failure")],
            )
            .unwrap_or(0.0)
                >= 1.0
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flips = flipper.join().unwrap_or(0);
    let a = allowed_hits.load(std::sync::atomic::Ordering::SeqCst);
    let f = forbidden_hits.load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "rebinding name, {flips} flips: {a} connections to the allowed address, {f} to the forbidden one; runs {} ok / {} refused",
        s.value(
            "wasmprobe_probe_runs_total",
            &[("probe", "rebind"), ("result", "success")]
        ),
        s.value(
            "wasmprobe_probe_runs_total",
            &[("probe", "rebind"), ("result", "failure")]
        ),
    );
    assert_eq!(f, 0, "a connection reached the forbidden address");
    assert!(a >= 3);
}

/// Accepts on `l`, counts, answers 200 and closes.
fn count_and_answer(l: std::net::TcpListener) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 2048];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let _ = std::io::Write::write_all(
                &mut s,
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
            );
        }
    });
    hits
}
