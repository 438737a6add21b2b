//! `proxy_url` through a real HTTP proxy (Debian's `tinyproxy`): plain
//! HTTP goes to the proxy in absolute form and reaches the target with
//! the proxy's `Via`; HTTPS goes through a CONNECT tunnel and the target's
//! certificate is verified end to end. (A target the allow-list refuses
//! never reaching the proxy is a unit test of the http capability.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;

use crate::harness::{Engine, Peer, free_port};
use crate::targets;

const WAIT: Duration = Duration::from_secs(60);
const VIA_NAME: &str = "wasmprobe-test-proxy";

/// A tinyproxy on 127.0.0.1 that admits loopback clients and tunnels
/// to `connect_port` only; its log lines collected as they come.
struct Proxy {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    _peer: Peer,
}

impl Proxy {
    fn start(connect_port: u16) -> Proxy {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let conf = dir.path().join("tinyproxy.conf");
        // As root, tinyproxy drops to User/Group; as anyone else they
        // are ignored.
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\nConnectPort {connect_port}\nViaProxyName \"{VIA_NAME}\"\nLogLevel Connect\nMaxClients 16\nUser nobody\nGroup nogroup\n"
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("tinyproxy runs (scripts/test installs it): {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        let peer = Peer(child);
        // Up when it accepts a connection.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "tinyproxy did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Proxy {
            port,
            log,
            _dir: dir,
            _peer: peer,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }
}

fn ran(s: &crate::harness::Scrape, probe: &str) -> bool {
    s.all("probe_success")
        .iter()
        .any(|x| x.labels.get("probe").is_some_and(|p| p == probe))
}

#[test]
fn plain_and_tls_targets_are_probed_through_a_real_proxy() {
    // The plain target answers with the `Via` its request came with.
    let plain = targets::serve(Router::new().route(
        "/via",
        get(|headers: HeaderMap| async move {
            let via = headers
                .get("via")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_string();
            format!("via: {via}\n")
        }),
    ));
    let pki = targets::pki();
    let tls = targets::https(&pki);
    let proxy = Proxy::start(tls.addr.port());

    let engine = Engine::new();
    let ca = engine.file("ca.pem", &pki.ca_pem);
    let e = engine
        .probe(
            "plain",
            &format!(
                "plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\nproxy_url = \"{}\"\nallow = [\"{}\", \"{}\"]\n[probes.plain.config]\nfail_if_body_not_matches_regexp = [\"via: .*{VIA_NAME}\"]",
                plain.url("/via"),
                proxy.url(),
                plain.origin("http"),
                proxy.url(),
            ),
        )
        .probe(
            "tunnelled",
            &format!(
                "plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\nproxy_url = \"{}\"\nallow = [\"{}\", \"{}\"]\ntls = {{ ca_file = {ca:?} }}\n[probes.tunnelled.config]\nfail_if_not_ssl = true",
                tls.https_url("/ok"),
                proxy.url(),
                tls.origin("https"),
                proxy.url(),
            ),
        )
        .start();
    let s = e.wait_for("a run of each probe", WAIT, |s| {
        ran(s, "plain") && ran(s, "tunnelled")
    });
    let context = format!(
        "{}\n--- engine ---\n{}\n--- tinyproxy ---\n{}",
        s.text,
        e.log(),
        proxy.log()
    );
    assert_eq!(
        s.value("probe_success", &[("probe", "plain")]),
        1.0,
        "{context}"
    );
    assert_eq!(
        s.value("probe_success", &[("probe", "tunnelled")]),
        1.0,
        "{context}"
    );
    assert_eq!(
        s.value("probe_http_ssl", &[("probe", "tunnelled")]),
        1.0,
        "{context}"
    );
    assert_eq!(
        s.value("probe_tls_certificate_verified", &[("probe", "tunnelled")]),
        1.0,
        "{context}"
    );
    let log = proxy.log();
    assert!(
        log.contains(&format!("GET {} HTTP/1.1", plain.url("/via"))),
        "{context}"
    );
    assert!(
        log.contains(&format!("CONNECT 127.0.0.1:{} HTTP/1.1", tls.addr.port())),
        "{context}"
    );
}
