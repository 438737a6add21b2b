//! The server's endpoints: `/probe`, `/metrics` negotiation, health,
//! readiness and the status page.

use std::time::Duration;

use crate::harness::{Engine, Scrape, get, promtool_check};
use crate::targets;

#[test]
fn probe_endpoint_runs_a_module_once() {
    let t = targets::http();
    let forbidden = targets::counting();
    let e = Engine::new()
        .probe(
            "http_2xx",
            &format!(
                "plugin = \"http-health\"\nallow = [\"{}\"]",
                t.origin("http")
            ),
        )
        .start();

    let ok = get(
        &e.url(&format!("/probe?module=http_2xx&target={}", t.url("/ok"))),
        None,
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.content_type.starts_with("text/plain; version=0.0.4"));
    let s = Scrape::parse(&ok.body);
    assert_eq!(s.value("probe_success", &[("probe", "http_2xx")]), 1.0);
    assert_eq!(
        s.value("probe_http_status_code", &[("probe", "http_2xx")]),
        200.0
    );
    assert!(
        s.families.keys().all(|f| !f.starts_with("wasmprobe_")),
        "only the run's own metrics:\n{}",
        s.text
    );
    promtool_check(&ok.body);

    let failing = get(
        &e.url(&format!(
            "/probe?module=http_2xx&target={}",
            t.url("/status/500")
        )),
        None,
    );
    assert_eq!(
        failing.status, 200,
        "a failed probe is still a successful scrape"
    );
    let s = Scrape::parse(&failing.body);
    assert_eq!(s.value("probe_success", &[("probe", "http_2xx")]), 0.0);

    let unknown = get(
        &e.url(&format!("/probe?module=nope&target={}", t.url("/ok"))),
        None,
    );
    assert_eq!(unknown.status, 400);
    assert!(
        unknown.body.contains("unknown module \"nope\""),
        "{}",
        unknown.body
    );

    let denied = get(
        &e.url(&format!(
            "/probe?module=http_2xx&target={}",
            forbidden.url("/ok")
        )),
        None,
    );
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(denied.body.contains("is not allowed"), "{}", denied.body);
    assert_eq!(forbidden.accepted(), 0);

    let missing = get(&e.url("/probe?module=http_2xx"), None);
    assert_eq!(missing.status, 400);

    // On-demand runs are counted, not mixed into the module's own series.
    let s = e.scrape();
    assert_eq!(
        s.value("wasmprobe_ondemand_runs_total", &[("result", "success")]),
        1.0
    );
    assert_eq!(
        s.value("wasmprobe_ondemand_runs_total", &[("result", "failure")]),
        1.0
    );
    assert!(
        s.get("probe_success", &[("probe", "http_2xx")]).is_none(),
        "{}",
        s.text
    );
}

#[test]
fn metrics_speaks_openmetrics_and_classic_text() {
    let t = targets::http();
    let e = Engine::new()
        .probe(
            "api",
            &format!(
                "plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"",
                t.url("/ok")
            ),
        )
        .probe(
            "counts",
            "plugin = \"misbehave\"\nschedule = \"* * * * * *\"\ntarget = \"http://127.0.0.1:9/\"",
        )
        .start();
    e.wait_for("runs", Duration::from_secs(60), |s| {
        s.get("misbehave_runs_total", &[("probe", "counts")])
            .is_some()
            && s.get("probe_success", &[("probe", "api")]).is_some()
    });
    let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let om = get(&e.url("/metrics"), Some(prom));
    assert_eq!(om.status, 200);
    assert_eq!(
        om.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.body.ends_with("# EOF\n"));
    let parsed = Scrape::parse_openmetrics(&om.body);
    for family in [
        "probe_success",
        "misbehave_runs",
        "misbehave_observed_seconds",
        "wasmprobe_probe_runs",
    ] {
        assert!(
            parsed.families.contains_key(family),
            "{family} missing:\n{}",
            om.body
        );
    }
    assert_eq!(
        parsed.families.get("misbehave_runs").map(|f| f.0.as_str()),
        Some("counter")
    );
    for header in [
        "# TYPE probe_success gauge\n",
        "# TYPE misbehave_runs counter\n",
        "# TYPE misbehave_observed_seconds histogram\n# UNIT misbehave_observed_seconds seconds\n",
    ] {
        assert!(om.body.contains(header), "{header:?} missing:\n{}", om.body);
    }
    assert!(
        om.body
            .contains("\nmisbehave_runs_total{probe=\"counts\"} "),
        "{}",
        om.body
    );

    let classic = get(&e.url("/metrics"), None);
    assert_eq!(
        classic.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(!classic.body.contains("# EOF"));
    let s = Scrape::parse(&classic.body);
    assert_eq!(
        s.families.get("misbehave_runs_total").map(|f| f.0.as_str()),
        Some("counter")
    );
    assert_eq!(
        s.families
            .get("misbehave_observed_seconds")
            .map(|f| f.0.as_str()),
        Some("histogram")
    );
    promtool_check(&classic.body);
}

#[test]
fn health_readiness_and_status_page() {
    let e = Engine::new()
        .probe(
            "broken",
            "plugin = \"misbehave\"\nschedule = \"* * * * * *\"\ntarget = \"http://127.0.0.1:9/\"\n[probes.broken.config]\nbehaviour = \"panic\"",
        )
        .start();
    e.wait_for("a trap", Duration::from_secs(60), |s| {
        s.get(
            "wasmprobe_probe_traps_total",
            &[("probe", "broken"), ("reason", "unreachable")],
        )
        .is_some()
    });
    // A failing probe never makes the exporter unhealthy.
    assert_eq!(get(&e.url("/healthz"), None).status, 200);
    assert_eq!(get(&e.url("/readyz"), None).status, 200);
    let page = get(&e.url("/"), None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("broken"), "{}", page.body);
    assert!(page.body.contains("trap (unreachable)"), "{}", page.body);
}

/// Prometheus sends its scrape timeout; a run against a target that never
/// answers ends within it (less half a second), so the answer is
/// `probe_success 0` with the run's own duration, not a failed scrape.
#[test]
fn probe_honours_prometheus_scrape_timeout() {
    let hanging = crate::targets::hanging();
    let e = crate::harness::Engine::new()
        .probe(
            "slow",
            &format!(
                "plugin = \"http-health\"\ntimeout = \"30s\"\nallow = [\"{}\"]",
                hanging.origin("http")
            ),
        )
        .start();
    let reply = crate::harness::get_with(
        &e.url(&format!("/probe?module=slow&target={}", hanging.url("/"))),
        &[("X-Prometheus-Scrape-Timeout-Seconds", "2")],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let s = crate::harness::Scrape::parse(&reply.body);
    assert_eq!(s.value("probe_success", &[("probe", "slow")]), 0.0);
    let took = s.value("probe_duration_seconds", &[("probe", "slow")]);
    println!("a hung target under a 2 s scrape timeout: the run took {took:.3} s");
    // Far below the probe's own 30 s: the scrape timeout governed.
    assert!(took < 10.0, "the run outlived the scrape timeout: {took} s");
    assert!(hanging.accepted() >= 1);
}

/// `/probe` without `module` runs `[server] default_module`, as
/// blackbox_exporter falls back to `http_2xx`; without one it names what
/// is missing. A default that names no probe is refused at load.
#[test]
fn probe_without_a_module_runs_the_default_module() {
    let target = crate::targets::counting();
    let probe = format!(
        "plugin = \"http-health\"\nallow = [\"{}\"]",
        target.origin("http")
    );
    let e = crate::harness::Engine::new()
        .raw("[server]\ndefault_module = \"http_2xx\"\n")
        .probe("http_2xx", &probe)
        .start();
    let reply = crate::harness::get(
        &e.url(&format!("/probe?target={}", target.url("/ok"))),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let s = crate::harness::Scrape::parse(&reply.body);
    assert_eq!(s.value("probe_success", &[("probe", "http_2xx")]), 1.0);

    let plain = crate::harness::Engine::new()
        .probe("http_2xx", &probe)
        .start();
    let reply = crate::harness::get(
        &plain.url(&format!("/probe?target={}", target.url("/ok"))),
        None,
    );
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("default_module"), "{}", reply.body);

    let wrong = crate::harness::Engine::new()
        .raw("[server]\ndefault_module = \"http_3xx\"\n")
        .probe("http_2xx", &probe);
    let config = wrong.config_path();
    std::fs::write(&config, wrong.text()).unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("server.default_module") && stderr.contains("known: http_2xx"),
        "{stderr}"
    );
}

/// `/probe?hostname=NAME`, as blackbox_exporter has it: the run's
/// requests to the target's address present NAME as `Host` and as the TLS
/// server name, so a virtual host behind an address can be checked (and
/// its certificate verified against NAME).
#[test]
fn probe_hostname_names_the_virtual_host_behind_the_target() {
    let plain = crate::targets::http();
    let pki = crate::targets::pki();
    let tls = crate::targets::https(&pki);
    let e = crate::harness::Engine::new();
    let ca = e.file("ca.pem", &pki.ca_pem);
    let e = e
        .probe(
            "vhost",
            &format!(
                "plugin = \"http-health\"\nallow = [\"{}\", \"{}\"]\n[probes.vhost.tls]\nca_file = {:?}\n[probes.vhost.config]\nfail_if_body_not_matches_regexp = [\"^localhost(:[0-9]+)?$\"]",
                plain.origin("http"),
                tls.origin("https"),
                ca
            ),
        )
        .start();
    let success = |target: &str, hostname: Option<&str>| {
        let mut url = format!("/probe?module=vhost&target={target}");
        if let Some(h) = hostname {
            url.push_str(&format!("&hostname={h}"));
        }
        let reply = crate::harness::get(&e.url(&url), None);
        assert_eq!(reply.status, 200, "{}", reply.body);
        crate::harness::Scrape::parse(&reply.body).value("probe_success", &[("probe", "vhost")])
    };
    // Plain HTTP: the Host header is the name (with the target's port).
    assert_eq!(success(&plain.url("/host"), Some("localhost")), 1.0);
    assert_eq!(
        success(&plain.url("/host"), None),
        0.0,
        "Host is 127.0.0.1:PORT"
    );
    // HTTPS to an address: the certificate is verified against the name.
    assert_eq!(success(&tls.https_url("/host"), Some("localhost")), 1.0);
    assert_eq!(
        success(&tls.https_url("/host"), Some("portal.example")),
        0.0,
        "the certificate does not name portal.example"
    );
    let bad = crate::harness::get(
        &e.url(&format!(
            "/probe?module=vhost&target={}&hostname=a%20b",
            plain.url("/host")
        )),
        None,
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("hostname"), "{}", bad.body);
}
