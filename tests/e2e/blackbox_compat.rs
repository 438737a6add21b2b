//! Every metric Debian's prometheus-blackbox-exporter emits for a probe of
//! a local target is emitted by the matching plugin with the same type and
//! label names, and both agree on `probe_success`: http-health for HTTP and
//! HTTPS, tcp for a plain connect and TLS, dns for a UDP and a TCP query,
//! grpc for a health check over h2c and over TLS.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Engine, Peer, Scrape, free_port, get};
use crate::targets;

pub(crate) fn start_blackbox(config: &std::path::Path, port: u16) -> Peer {
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

        covers(&target, &theirs, &ours);
    }
}

/// Families blackbox_exporter emits that the plugins leave out on
/// purpose, by module, with why.
const LEFT_OUT: &[(&str, &str, &str)] = &[(
    "grpc_plain",
    "probe_ssl_earliest_cert_expiry",
    "blackbox's grpc prober reports 0 without TLS, which fires every certificate-expiry alert",
)];

/// Asserts every family of `theirs` is in `ours` with its type and labels.
fn covers(target: &str, theirs: &Scrape, ours: &Scrape) {
    let ours_shape = shape(ours);
    let mut missing = Vec::new();
    for (name, kind, labels) in shape(theirs) {
        if let Some((_, _, why)) = LEFT_OUT.iter().find(|(m, f, _)| *m == target && *f == name) {
            println!("{target}: {name} left out: {why}");
            continue;
        }
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
        "{target}: all {} blackbox_exporter families matched ({} emitted by ours)",
        theirs.families.len(),
        ours.families.len()
    );
}

/// One module probed by both exporters; returns (theirs, ours).
pub(crate) fn both(
    bb_port: u16,
    e: &crate::harness::Running,
    module: &str,
    target: &str,
) -> (Scrape, Scrape) {
    let theirs = get(
        &format!("http://127.0.0.1:{bb_port}/probe?module={module}&target={target}"),
        None,
    );
    assert_eq!(theirs.status, 200, "{}", theirs.body);
    let ours = get(
        &e.url(&format!("/probe?module={module}&target={target}")),
        None,
    );
    assert_eq!(ours.status, 200, "{}", ours.body);
    (Scrape::parse(&theirs.body), Scrape::parse(&ours.body))
}

#[test]
fn tcp_dns_and_grpc_cover_blackbox_exporters_probers() {
    let pki = targets::pki();
    let plain = targets::http();
    let tls = targets::https(&pki);
    let dns = crate::dns_server::start();
    let grpc = crate::grpc_server::start(None);
    let grpcs = crate::grpc_server::start(Some(&pki));
    let engine = Engine::new();
    let ca = engine.file("ca.pem", &pki.ca_pem);
    let bb_config = engine.file(
        "blackbox.yml",
        &format!(
            "modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 5s\n    tcp:\n      preferred_ip_protocol: ip4\n  tcp_tls:\n    prober: tcp\n    timeout: 5s\n    tcp:\n      preferred_ip_protocol: ip4\n      tls: true\n      tls_config:\n        ca_file: {ca}\n  dns_udp:\n    prober: dns\n    timeout: 5s\n    dns:\n      preferred_ip_protocol: ip4\n      query_name: ok.example\n      query_type: A\n  dns_tcp:\n    prober: dns\n    timeout: 5s\n    dns:\n      preferred_ip_protocol: ip4\n      transport_protocol: tcp\n      query_name: ok.example\n      query_type: A\n  grpc_plain:\n    prober: grpc\n    timeout: 5s\n    grpc:\n      preferred_ip_protocol: ip4\n      service: api\n  grpc_tls:\n    prober: grpc\n    timeout: 5s\n    grpc:\n      preferred_ip_protocol: ip4\n      tls: true\n      tls_config:\n        ca_file: {ca}\n",
            ca = ca.display()
        ),
    );
    let allow = format!(
        "allow = [\"tcp://{}\", \"tcp://{}\", \"dns://{}\", \"http://{}\", \"https://{}\"]",
        plain.addr, tls.addr, dns.addr, grpc.addr, grpcs.addr
    );
    let e = engine
        .probe(
            "tcp_connect",
            &format!("plugin = \"tcp\"\n{allow}\n[probes.tcp_connect.config]\npreferred_ip_protocol = \"ip4\""),
        )
        .probe(
            "tcp_tls",
            &format!("plugin = \"tcp\"\n{allow}\ntls = {{ ca_file = {ca:?} }}\n[probes.tcp_tls.config]\npreferred_ip_protocol = \"ip4\"\ntls = true"),
        )
        .probe(
            "dns_udp",
            &format!("plugin = \"dns\"\n{allow}\n[probes.dns_udp.config]\npreferred_ip_protocol = \"ip4\"\nquery_name = \"ok.example\"\nquery_type = \"A\""),
        )
        .probe(
            "dns_tcp",
            &format!("plugin = \"dns\"\n{allow}\n[probes.dns_tcp.config]\npreferred_ip_protocol = \"ip4\"\ntransport_protocol = \"tcp\"\nquery_name = \"ok.example\"\nquery_type = \"A\""),
        )
        .probe(
            "grpc_plain",
            &format!("plugin = \"grpc\"\n{allow}\n[probes.grpc_plain.config]\npreferred_ip_protocol = \"ip4\"\nservice = \"api\""),
        )
        .probe(
            "grpc_tls",
            &format!("plugin = \"grpc\"\n{allow}\ntls = {{ ca_file = {ca:?} }}\n[probes.grpc_tls.config]\npreferred_ip_protocol = \"ip4\"\ntls = true"),
        )
        .start();
    let port = free_port();
    let _bb = start_blackbox(&bb_config, port);
    for (module, target) in [
        ("grpc_plain", grpc.addr.to_string()),
        ("grpc_tls", grpcs.addr.to_string()),
        ("tcp_connect", plain.addr.to_string()),
        ("tcp_tls", tls.addr.to_string()),
        ("dns_udp", dns.addr.to_string()),
        ("dns_tcp", dns.addr.to_string()),
    ] {
        let (theirs, ours) = both(port, &e, module, &target);
        assert_eq!(
            theirs.value("probe_success", &[]),
            1.0,
            "{module}: {}",
            theirs.text
        );
        assert_eq!(
            ours.value("probe_success", &[("probe", module)]),
            1.0,
            "{module}: {}",
            ours.text
        );
        covers(module, &theirs, &ours);
        println!(
            "{module}: probe_duration_seconds blackbox_exporter {:.2} ms, wasmprobe {:.2} ms",
            theirs.value("probe_duration_seconds", &[]) * 1000.0,
            ours.value("probe_duration_seconds", &[("probe", module)]) * 1000.0
        );
        if module.starts_with("dns") {
            for rrs in [
                "probe_dns_answer_rrs",
                "probe_dns_authority_rrs",
                "probe_dns_additional_rrs",
            ] {
                assert_eq!(
                    theirs.value(rrs, &[]),
                    ours.value(rrs, &[("probe", module)]),
                    "{module} {rrs}"
                );
            }
        }
        if module.starts_with("grpc") {
            assert_eq!(
                theirs.value("probe_grpc_status_code", &[]),
                ours.value("probe_grpc_status_code", &[("probe", module)]),
                "{module}"
            );
        }
        if module == "tcp_tls" || module == "grpc_tls" {
            assert_eq!(
                theirs.value("probe_ssl_earliest_cert_expiry", &[]),
                ours.value("probe_ssl_earliest_cert_expiry", &[("probe", module)])
            );
        }
    }
}
