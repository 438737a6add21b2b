//! Every metric Debian's prometheus-blackbox-exporter emits for an HTTP
//! and an HTTPS probe of a local target is emitted by http-health with the
//! same type and label names.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Engine, Peer, Scrape, free_port, get};
use crate::targets;

fn start_blackbox(config: &std::path::Path, port: u16) -> Peer {
    let child = Command::new("prometheus-blackbox-exporter")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("prometheus-blackbox-exporter is missing ({e}): install Debian's package (scripts/test does)")
        });
    let bb = Peer(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "blackbox_exporter did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    bb
}

/// name → (type, label names without `probe`).
fn shape(s: &Scrape) -> Vec<(String, String, BTreeSet<String>)> {
    s.families
        .iter()
        .map(|(name, (kind, labels))| {
            let labels = labels.iter().filter(|l| *l != "probe").cloned().collect();
            (name.clone(), kind.clone(), labels)
        })
        .collect()
}

#[test]
fn http_health_covers_blackbox_exporters_http_prober() {
    let pki = targets::pki();
    let http = targets::http();
    let https = targets::https(&pki);
    let engine = Engine::new();
    let ca = engine.file("ca.pem", &pki.ca_pem);
    let bb_config = engine.file(
        "blackbox.yml",
        &format!(
            "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n      tls_config:\n        ca_file: {}\n",
            ca.display()
        ),
    );
    let e = engine
        .probe(
            "http_2xx",
            &format!(
                "plugin = \"http-health\"\nallow = [\"{}\", \"{}\"]\ntls = {{ ca_file = {ca:?} }}\n[probes.http_2xx.config]\npreferred_ip_protocol = \"ip4\"",
                http.origin("http"),
                https.origin("https")
            ),
        )
        .start();
    let port = free_port();
    let _bb = start_blackbox(&bb_config, port);

    for target in [http.url("/ok"), https.https_url("/ok")] {
        let theirs = get(
            &format!("http://127.0.0.1:{port}/probe?module=http_2xx&target={target}"),
            None,
        );
        assert_eq!(theirs.status, 200, "{}", theirs.body);
        let theirs = Scrape::parse(&theirs.body);
        assert_eq!(
            theirs.value("probe_success", &[]),
            1.0,
            "blackbox failed:\n{}",
            theirs.text
        );
        let ours = get(
            &e.url(&format!("/probe?module=http_2xx&target={target}")),
            None,
        );
        let ours = Scrape::parse(&ours.body);
        assert_eq!(
            ours.value("probe_success", &[("probe", "http_2xx")]),
            1.0,
            "{}",
            ours.text
        );

        let ours_shape = shape(&ours);
        let mut missing = Vec::new();
        for (name, kind, labels) in shape(&theirs) {
            match ours_shape.iter().find(|(n, _, _)| *n == name) {
                None => missing.push(format!("{name} ({kind}) is not emitted")),
                Some((_, k, l)) if *k != kind || *l != labels => {
                    missing.push(format!("{name}: theirs {kind} {labels:?}, ours {k} {l:?}"))
                }
                Some(_) => {}
            }
        }
        assert!(
            missing.is_empty(),
            "{target}:\n{}\n--- blackbox ---\n{}\n--- ours ---\n{}",
            missing.join("\n"),
            theirs.text,
            ours.text
        );
        println!(
            "{target}: all {} blackbox_exporter families matched ({} emitted by http-health)",
            theirs.families.len(),
            ours.families.len()
        );
    }
}
