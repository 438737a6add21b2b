//! The grpc plugin (blackbox_exporter's grpc prober) on h2c and on TLS
//! against a local gRPC health server: SERVING, NOT_SERVING, an unknown
//! service (gRPC status 5 in a trailers-only answer), TLS facts.

use std::time::Duration;

use crate::grpc_server;
use crate::harness::{Engine, Scrape, promtool_check};
use crate::targets;

const WAIT: Duration = Duration::from_secs(60);

fn probe(name: &str, target: &str, scheme: &str, extra: &str, config: &str) -> String {
    format!(
        "[probes.{name}]\nplugin = \"grpc\"\nschedule = \"* * * * * *\"\ntarget = \"{target}\"\nallow = [\"{scheme}://{target}\"]\n{extra}\n[probes.{name}.config]\npreferred_ip_protocol = \"ip4\"\n{config}\n"
    )
}

#[test]
fn health_checks_over_h2c_and_tls_report_as_blackbox_does() {
    let pki = targets::pki();
    let plain = grpc_server::start(None);
    let secure = grpc_server::start(Some(&pki));
    let e = Engine::new();
    let ca = e.file("ca.pem", &pki.ca_pem);
    let p = plain.addr.to_string();
    let t = secure.addr.to_string();
    let e = e
        .raw(&probe("serving", &p, "http", "", "service = \"api\""))
        .raw(&probe("down", &p, "http", "", "service = \"down\""))
        .raw(&probe("unknown", &p, "http", "", "service = \"nope\""))
        .raw(&probe(
            "secure",
            &t,
            "https",
            &format!("tls = {{ ca_file = {ca:?} }}"),
            "tls = true",
        ))
        .start();
    let probes = ["serving", "down", "unknown", "secure"];
    let s = e.wait_for("a run of each", WAIT, |s| {
        probes
            .iter()
            .all(|p| s.get("probe_success", &[("probe", p)]).is_some())
    });
    let v = |name: &str, labels: &[(&str, &str)]| s.value(name, labels);
    assert_eq!(
        v("probe_success", &[("probe", "serving")]),
        1.0,
        "{}",
        s.text
    );
    assert_eq!(
        v(
            "probe_grpc_healthcheck_response",
            &[("probe", "serving"), ("serving_status", "SERVING")]
        ),
        1.0
    );
    assert_eq!(v("probe_grpc_status_code", &[("probe", "serving")]), 0.0);
    assert_eq!(v("probe_grpc_ssl", &[("probe", "serving")]), 0.0);
    assert_eq!(v("probe_success", &[("probe", "down")]), 0.0);
    assert_eq!(
        v(
            "probe_grpc_healthcheck_response",
            &[("probe", "down"), ("serving_status", "NOT_SERVING")]
        ),
        1.0
    );
    assert_eq!(v("probe_success", &[("probe", "unknown")]), 0.0);
    assert_eq!(v("probe_grpc_status_code", &[("probe", "unknown")]), 5.0);
    assert_eq!(
        v("probe_success", &[("probe", "secure")]),
        1.0,
        "{}",
        s.text
    );
    assert_eq!(v("probe_grpc_ssl", &[("probe", "secure")]), 1.0);
    assert_eq!(
        v("probe_ssl_earliest_cert_expiry", &[("probe", "secure")]),
        pki.leaf_not_after as f64
    );
    assert!(plain.calls() >= 3 && secure.calls() >= 1);
    promtool_check(&s.text);
    let _ = Scrape::parse(&s.text);
}
