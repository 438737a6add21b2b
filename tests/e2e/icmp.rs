//! The icmp plugin through the host's ICMP capability: loopback, hosts in
//! network namespaces the tests create, 50 concurrent targets, and the
//! unprivileged datagram and no-permission paths.
//!
//! Needs root for namespaces; without it each test prints why it skips.
//! Namespaces use 198.18.TAG.0/24 with a tag per test (1-9).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Engine, Scrape, wasm};
use crate::netns::{Netns, skip};

const WAIT: Duration = Duration::from_secs(90);

fn icmp_probe(name: &str, target: &str, schedule: &str, config: &str) -> String {
    format!(
        "[probes.{name}]\nplugin = \"icmp\"\nschedule = \"{schedule}\"\ntarget = \"{target}\"\ntimeout = \"3s\"\n[probes.{name}.config]\n{config}\n"
    )
}

fn get(s: &Scrape, name: &str, probe: &str) -> Option<f64> {
    s.get(name, &[("probe", probe)])
}

#[test]
fn pings_loopback_over_ipv4_and_ipv6() {
    if skip("pings_loopback_over_ipv4_and_ipv6") {
        return;
    }
    let e = Engine::new()
        .raw(&icmp_probe(
            "v4",
            "127.0.0.1",
            "* * * * * *",
            "count = 4\ninterval_ms = 20",
        ))
        .raw(&icmp_probe(
            "v6",
            "::1",
            "* * * * * *",
            "count = 4\ninterval_ms = 20",
        ))
        .start();
    let s = e.wait_for("both pings", WAIT, |s| {
        ["v4", "v6"]
            .iter()
            .all(|p| get(s, "probe_success", p).is_some())
    });
    for (p, proto) in [("v4", 4.0), ("v6", 6.0)] {
        assert_eq!(get(&s, "probe_success", p), Some(1.0), "{}", s.text);
        assert_eq!(get(&s, "probe_icmp_packet_loss_ratio", p), Some(0.0));
        assert_eq!(get(&s, "probe_ip_protocol", p), Some(proto));
        assert_eq!(
            get(&s, "probe_icmp_packets_received_total", p),
            get(&s, "probe_icmp_packets_sent_total", p)
        );
        assert_eq!(get(&s, "probe_icmp_rtt_seconds_count", p), Some(4.0));
        assert!(get(&s, "probe_icmp_rtt_avg_seconds", p).is_some_and(|r| r > 0.0 && r < 1.0));
        assert_eq!(
            get(&s, "probe_icmp_reply_hop_limit", p),
            Some(64.0),
            "{}",
            s.text
        );
    }
    // Root gets a working socket; the mode it got is reported.
    for family in ["ipv4", "ipv6"] {
        let modes: Vec<&str> = ["datagram", "raw", "unavailable"]
            .into_iter()
            .filter(|m| {
                s.get(
                    "wasmprobe_icmp_socket_mode",
                    &[("family", family), ("mode", m)],
                ) == Some(1.0)
            })
            .collect();
        assert_eq!(modes.len(), 1, "{}", s.text);
        assert_ne!(modes[0], "unavailable");
    }
    let rtt = get(&s, "probe_icmp_rtt_avg_seconds", "v4").unwrap_or_default();
    println!("loopback RTT (engine, average of 4): {:.1} us", rtt * 1e6);
}

#[test]
fn an_unreachable_node_shows_total_loss_and_others_go_on() {
    if skip("an_unreachable_node_shows_total_loss_and_others_go_on") {
        return;
    }
    let ns = Netns::new(1, true);
    let node = ns.addr(2);
    let e = Engine::new()
        .raw(&icmp_probe(
            "node",
            &node,
            "* * * * * *",
            "count = 3\ninterval_ms = 50\ntimeout_ms = 500\npreferred_ip_protocol = \"ip4\"",
        ))
        .raw(&icmp_probe(
            "loopback",
            "127.0.0.1",
            "* * * * * *",
            "count = 1",
        ))
        .start();
    let s = e.wait_for("the node answering", WAIT, |s| {
        get(s, "probe_success", "node") == Some(1.0)
    });
    assert_eq!(
        get(&s, "probe_icmp_packet_loss_ratio", "node"),
        Some(0.0),
        "{}",
        s.text
    );

    ns.link_down();
    let before = get(&s, "wasmprobe_probe_runs_total", "loopback").unwrap_or(0.0);
    let s = e.wait_for("total loss", WAIT, |s| {
        get(s, "probe_icmp_packet_loss_ratio", "node") == Some(1.0)
    });
    assert_eq!(get(&s, "probe_success", "node"), Some(0.0));
    assert!(
        get(&s, "probe_icmp_rtt_avg_seconds", "node").is_none(),
        "no RTT without replies"
    );
    let d = get(&s, "probe_duration_seconds", "node").unwrap_or(f64::MAX);
    assert!(d < 3.0, "the run ended within its timeout: {d}");
    println!("100% loss run took {d:.3}s (3 packets, 500 ms each, timeout 3s)");
    // The other probe keeps running and succeeding meanwhile.
    let s = e.wait_for("loopback to keep going", WAIT, |s| {
        s.get(
            "wasmprobe_probe_runs_total",
            &[("probe", "loopback"), ("result", "success")],
        )
        .is_some_and(|v| v > before + 2.0)
    });
    assert_eq!(get(&s, "probe_success", "loopback"), Some(1.0));
}

#[test]
fn fifty_concurrent_pings_are_each_attributed() {
    if skip("fifty_concurrent_pings_are_each_attributed") {
        return;
    }
    let ns = Netns::new(2, true);
    // Even hosts answer, odd hosts do not exist.
    for host in (4..=52).step_by(2) {
        ns.add_addr(host);
    }
    let mut engine = Engine::new().engine_key("max_concurrent_runs = 64");
    for host in 3..=52u8 {
        engine = engine.raw(&icmp_probe(
            &format!("h{host}"),
            &ns.addr(host),
            "*/2 * * * * *",
            "count = 3\ninterval_ms = 20\ntimeout_ms = 400\npreferred_ip_protocol = \"ip4\"",
        ));
    }
    let e = engine.start();
    let s = e.wait_for("a run of all fifty", WAIT, |s| {
        (3..=52).all(|h| get(s, "probe_success", &format!("h{h}")).is_some())
    });
    let mut wrong = Vec::new();
    for host in 3..=52u8 {
        let p = format!("h{host}");
        let expect = if host % 2 == 0 { 1.0 } else { 0.0 };
        let success = get(&s, "probe_success", &p);
        let sent = get(&s, "probe_icmp_packets_sent_total", &p);
        let received = get(&s, "probe_icmp_packets_received_total", &p);
        let ok = success == Some(expect)
            && if expect == 1.0 {
                received == sent
            } else {
                received == Some(0.0)
            };
        if !ok {
            wrong.push(format!(
                "{p}: success {success:?}, sent {sent:?}, received {received:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), s.text);
}

/// Makes a directory an unprivileged user can read.
fn readable_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod: {e}"));
    dir
}

/// `wasmprobe ARGS` as user nobody inside `ns`.
fn as_nobody(ns: &Netns, args: &[&str]) -> std::process::Output {
    let mut full = vec![
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        env!("CARGO_BIN_EXE_wasmprobe"),
    ];
    full.extend_from_slice(args);
    ns.try_exec(&full)
}

fn ping_config(dir: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("probes.toml");
    std::fs::write(
        &config,
        format!(
            "[engine]\ncache = false\n[plugins.icmp]\npath = {:?}\n{}",
            wasm("plugins", "icmp"),
            icmp_probe(
                "lo",
                "127.0.0.1",
                "* * * * * *",
                "count = 2\ninterval_ms = 20\npreferred_ip_protocol = \"ip4\""
            )
        ),
    )
    .unwrap_or_else(|e| panic!("write: {e}"));
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("chmod: {e}"));
    config
}

#[test]
fn unprivileged_processes_get_datagram_sockets_or_unavailable() {
    if skip("unprivileged_processes_get_datagram_sockets_or_unavailable") {
        return;
    }
    let dir = readable_dir();
    let config = ping_config(dir.path());
    let config = config.to_str().unwrap_or_default();

    // ping_group_range covers every group: an unprivileged process gets the
    // datagram mode and pings.
    let open = Netns::new(3, false);
    open.exec(&["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"]);
    let out = as_nobody(
        &open,
        &[
            "probe", "--config", config, "--probe", "lo", "--log", "info",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("ipv4=\"datagram\""), "{stderr}");
    let s = Scrape::parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(get(&s, "probe_success", "lo"), Some(1.0), "{}", s.text);
    assert_eq!(
        get(&s, "probe_icmp_packets_received_total", "lo"),
        Some(2.0)
    );

    // Neither permission: the call answers `unavailable`, the probe fails
    // with that reason.
    let closed = Netns::new(4, false);
    let out = as_nobody(
        &closed,
        &[
            "probe", "--config", config, "--probe", "lo", "--log", "info",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ipv4=\"unavailable\""), "{stderr}");
    assert!(
        stderr.contains("Unavailable: no ICMP socket for IPv4"),
        "{stderr}"
    );
}

#[test]
fn without_icmp_permission_the_engine_stays_healthy() {
    if skip("without_icmp_permission_the_engine_stays_healthy") {
        return;
    }
    let dir = readable_dir();
    let config = ping_config(dir.path());
    let ns = Netns::new(5, false);
    let port = 19_000 + (std::process::id() % 1000) as u16;
    let mut engine = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .arg(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start: {e}"));
    let _guard = crate::harness::Peer(engine_take(&mut engine));

    // Ask it from inside the namespace, with the engine's own http-health
    // plugin: /healthz answers 200 and /metrics says why ICMP is off.
    let check = dir.path().join("check.toml");
    std::fs::write(
        &check,
        format!(
            "[engine]\ncache = false\n[plugins.http-health]\npath = {:?}\n\
             [probes.healthz]\nplugin = \"http-health\"\ntarget = \"http://127.0.0.1:{port}/healthz\"\n\
             [probes.metrics]\nplugin = \"http-health\"\ntarget = \"http://127.0.0.1:{port}/metrics\"\n\
             [probes.metrics.config]\nfail_if_body_not_matches_regexp = [\
             'wasmprobe_icmp_socket_mode\\{{family=\"ipv4\",mode=\"unavailable\"\\}} 1', \
             'probe_success\\{{probe=\"lo\"\\}} 0', \
             'wasmprobe_probe_runs_total\\{{probe=\"lo\",result=\"failure\"\\}} [1-9]']\n",
            wasm("plugins", "http-health")
        ),
    )
    .unwrap_or_else(|e| panic!("write: {e}"));
    std::fs::set_permissions(&check, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("chmod: {e}"));
    let check = check.to_str().unwrap_or_default();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let health = as_nobody(&ns, &["probe", "--config", check, "--probe", "healthz"]);
        let metrics = as_nobody(&ns, &["probe", "--config", check, "--probe", "metrics"]);
        if health.status.success() && metrics.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "healthz: {}\nmetrics: {}",
            String::from_utf8_lossy(&health.stderr),
            String::from_utf8_lossy(&metrics.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn engine_take(child: &mut std::process::Child) -> std::process::Child {
    std::mem::replace(
        child,
        Command::new("true")
            .spawn()
            .unwrap_or_else(|e| panic!("true: {e}")),
    )
}
