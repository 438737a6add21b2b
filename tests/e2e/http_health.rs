//! The http-health plugin against real local HTTP and HTTPS targets.

use std::time::Duration;

use crate::harness::{Engine, promtool_check};
use crate::targets;

const WAIT: Duration = Duration::from_secs(60);

fn ran(s: &crate::harness::Scrape, probe: &str) -> bool {
    s.all("probe_success")
        .iter()
        .any(|x| x.labels.get("probe").is_some_and(|p| p == probe))
}

#[test]
fn a_healthy_target_succeeds_with_blackbox_metrics() {
    let t = targets::http();
    let e = Engine::new()
        .probe(
            "api",
            &format!("plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\nlabels = {{ env = \"dev\" }}", t.url("/ok")),
        )
        .start();
    let s = e.wait_for("a run of api", WAIT, |s| ran(s, "api"));
    let l = [("probe", "api"), ("env", "dev")];
    assert_eq!(s.value("probe_success", &l), 1.0, "{}", s.text);
    assert_eq!(s.value("probe_http_status_code", &l), 200.0);
    assert_eq!(s.value("probe_http_version", &l), 1.1);
    assert_eq!(s.value("probe_http_ssl", &l), 0.0);
    assert_eq!(s.value("probe_ip_protocol", &l), 4.0);
    assert_eq!(s.value("probe_http_content_length", &l), 3.0);
    for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
        let v = s.value(
            "probe_http_duration_seconds",
            &[("probe", "api"), ("env", "dev"), ("phase", phase)],
        );
        assert!(v >= 0.0);
    }
    assert!(s.value("probe_duration_seconds", &l) > 0.0);
    assert_eq!(
        s.families.get("probe_success").map(|f| f.0.as_str()),
        Some("gauge")
    );
    promtool_check(&s.text);
}

#[test]
fn https_with_a_generated_ca_reports_tls_facts() {
    let pki = targets::pki();
    let t = targets::https(&pki);
    let engine = Engine::new();
    let ca = engine.file("ca.pem", &pki.ca_pem);
    let e = engine
        .probe(
            "trusted",
            &format!(
                "plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\ntls = {{ ca_file = {ca:?} }}\n[probes.trusted.config]\nfail_if_not_ssl = true",
                t.https_url("/ok")
            ),
        )
        .probe(
            "untrusted",
            &format!("plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"", t.https_url("/ok")),
        )
        .start();
    let s = e.wait_for("runs of both probes", WAIT, |s| {
        ran(s, "trusted") && ran(s, "untrusted")
    });
    let trusted = [("probe", "trusted")];
    assert_eq!(
        s.value("probe_success", &trusted),
        1.0,
        "{}\n{}",
        s.text,
        e.log()
    );
    assert_eq!(s.value("probe_http_ssl", &trusted), 1.0);
    assert_eq!(s.value("probe_tls_certificate_verified", &trusted), 1.0);
    assert_eq!(
        s.value("probe_ssl_earliest_cert_expiry", &trusted),
        pki.leaf_not_after as f64
    );
    assert_eq!(
        s.value(
            "probe_tls_version_info",
            &[("probe", "trusted"), ("version", "TLS 1.3")]
        ),
        1.0
    );
    let chain = s.all("probe_ssl_last_chain_info");
    assert!(
        chain.iter().any(|c| c
            .labels
            .get("subject")
            .is_some_and(|v| v.contains("localhost"))
            && c.labels
                .get("subjectalternative")
                .is_some_and(|v| v.contains("127.0.0.1"))),
        "{}",
        s.text
    );
    assert!(
        s.value(
            "probe_http_duration_seconds",
            &[("probe", "trusted"), ("phase", "tls")]
        ) > 0.0
    );

    // The chain does not verify against the web roots, but its facts are
    // still reported.
    let untrusted = [("probe", "untrusted")];
    assert_eq!(s.value("probe_success", &untrusted), 0.0);
    assert_eq!(s.value("probe_http_status_code", &untrusted), 0.0);
    assert_eq!(s.value("probe_tls_certificate_verified", &untrusted), 0.0);
    assert_eq!(
        s.value("probe_ssl_earliest_cert_expiry", &untrusted),
        pki.leaf_not_after as f64
    );
}

#[test]
fn a_client_certificate_opens_a_target_that_demands_one() {
    let pki = targets::pki();
    let t = targets::https_mtls(&pki);
    let engine = Engine::new();
    let ca = engine.file("ca.pem", &pki.ca_pem);
    let cert = engine.file("client.pem", &pki.client_pem);
    let key = engine.file("client.key", &pki.client_key_pem);
    let probe = |name: &str, tls: &str| {
        format!(
            "[probes.{name}]\nplugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\ntls = {{ ca_file = {ca:?}{tls} }}\n",
            t.https_url("/ok")
        )
    };
    let e = engine
        .raw(&probe(
            "with-cert",
            &format!(", cert_file = {cert:?}, key_file = {key:?}"),
        ))
        .raw(&probe("without", ""))
        .start();
    let s = e.wait_for("runs of both probes", WAIT, |s| {
        ran(s, "with-cert") && ran(s, "without")
    });
    let with = [("probe", "with-cert")];
    assert_eq!(
        s.value("probe_success", &with),
        1.0,
        "{}\n{}",
        s.text,
        e.log()
    );
    assert_eq!(s.value("probe_http_status_code", &with), 200.0);
    let without = [("probe", "without")];
    assert_eq!(s.value("probe_success", &without), 0.0, "{}", s.text);
    assert_eq!(s.value("probe_http_status_code", &without), 0.0);
    // The server's own certificate verified in both cases: only the
    // client's side differs.
    assert_eq!(s.value("probe_tls_certificate_verified", &without), 1.0);
    // And the run says why, from the alert the server sent.
    let log = e.log();
    assert!(
        log.lines().any(|l| l.contains("probe=without")
            && l.contains("Tls")
            && l.contains("CertificateRequired")),
        "{log}"
    );
}

#[test]
fn http2_is_negotiated_by_alpn_and_checked_against_valid_versions() {
    let pki = targets::pki();
    let t = targets::https_h2(&pki);
    let engine = Engine::new();
    let ca = engine.file("ca.pem", &pki.ca_pem);
    let probe = |name: &str, config: &str| {
        format!(
            "[probes.{name}]\nplugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\ntls = {{ ca_file = {ca:?} }}\n[probes.{name}.config]\n{config}\n",
            t.https_url("/ok")
        )
    };
    let e = engine
        .raw(&probe("h2", "valid_http_versions = [\"HTTP/2.0\"]"))
        .raw(&probe(
            "h1-only",
            "enable_http2 = false\nvalid_http_versions = [\"HTTP/2.0\"]",
        ))
        .start();
    let s = e.wait_for("runs of both probes", WAIT, |s| {
        ran(s, "h2") && ran(s, "h1-only")
    });
    let h2 = [("probe", "h2")];
    assert_eq!(
        s.value("probe_success", &h2),
        1.0,
        "{}\n{}",
        s.text,
        e.log()
    );
    assert_eq!(s.value("probe_http_version", &h2), 2.0);
    assert_eq!(s.value("probe_http_status_code", &h2), 200.0);
    // Without HTTP/2 offered the same server answers HTTP/1.1, which the
    // probe's valid versions refuse.
    let h1 = [("probe", "h1-only")];
    assert_eq!(s.value("probe_http_version", &h1), 1.1, "{}", s.text);
    assert_eq!(s.value("probe_http_status_code", &h1), 200.0);
    assert_eq!(s.value("probe_success", &h1), 0.0);
    println!(
        "ALPN h2: probe_http_version {}; HTTP/2 not offered: {}",
        s.value("probe_http_version", &h2),
        s.value("probe_http_version", &h1)
    );
}

#[test]
fn wrong_status_and_regexes_fail_the_probe() {
    let t = targets::http();
    let probe = |name: &str, path: &str, config: &str| {
        format!(
            "[probes.{name}]\nplugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\n[probes.{name}.config]\n{config}\n",
            t.url(path)
        )
    };
    let e = Engine::new()
        .raw(&probe("down", "/status/503", ""))
        .raw(&probe("down-expected", "/status/503", "valid_status_codes = [503]"))
        .raw(&probe("body-ok", "/json", "fail_if_body_not_matches_regexp = ['\"status\":\\s*\"ok\"']"))
        .raw(&probe("body-bad", "/json", "fail_if_body_matches_regexp = ['\"status\"']"))
        .raw(&probe(
            "header-bad",
            "/json",
            "fail_if_header_matches = [{ header = \"X-Cache\", regexp = \"HIT\" }]",
        ))
        .raw(&probe(
            "header-ok",
            "/json",
            "fail_if_header_not_matches = [{ header = \"content-type\", regexp = \"^application/json\" }]",
        ))
        .start();
    let names = [
        "down",
        "down-expected",
        "body-ok",
        "body-bad",
        "header-bad",
        "header-ok",
    ];
    let s = e.wait_for("a run of every probe", WAIT, |s| {
        names.iter().all(|n| ran(s, n))
    });
    let success = |n: &str| s.value("probe_success", &[("probe", n)]);
    let regex = |n: &str| s.value("probe_failed_due_to_regex", &[("probe", n)]);
    assert_eq!(success("down"), 0.0, "{}", s.text);
    assert_eq!(
        s.value("probe_http_status_code", &[("probe", "down")]),
        503.0
    );
    assert_eq!(success("down-expected"), 1.0);
    assert_eq!((success("body-ok"), regex("body-ok")), (1.0, 0.0));
    assert_eq!((success("body-bad"), regex("body-bad")), (0.0, 1.0));
    assert_eq!((success("header-bad"), regex("header-bad")), (0.0, 1.0));
    assert_eq!((success("header-ok"), regex("header-ok")), (1.0, 0.0));
}

#[test]
fn redirects_are_followed_up_to_the_limit() {
    let t = targets::http();
    let probe = |name: &str, config: &str| {
        format!(
            "[probes.{name}]\nplugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\n[probes.{name}.config]\n{config}\n",
            t.url("/redirect/5")
        )
    };
    let e = Engine::new()
        .raw(&probe("follow", ""))
        .raw(&probe("limited", "max_redirects = 2"))
        .raw(&probe("stay", "follow_redirects = false"))
        .start();
    let s = e.wait_for("runs", WAIT, |s| {
        ["follow", "limited", "stay"].iter().all(|n| ran(s, n))
    });
    assert_eq!(
        s.value("probe_success", &[("probe", "follow")]),
        1.0,
        "{}",
        s.text
    );
    assert_eq!(s.value("probe_http_redirects", &[("probe", "follow")]), 5.0);
    assert_eq!(s.value("probe_success", &[("probe", "limited")]), 0.0);
    assert_eq!(
        s.value("probe_http_redirects", &[("probe", "limited")]),
        2.0
    );
    assert_eq!(s.value("probe_success", &[("probe", "stay")]), 0.0);
    assert_eq!(
        s.value("probe_http_status_code", &[("probe", "stay")]),
        302.0
    );
}

#[test]
fn a_target_that_never_answers_ends_at_the_deadline() {
    let t = targets::hanging();
    let other = targets::http();
    let e = Engine::new()
        .probe(
            "hang",
            &format!(
                "plugin = \"http-health\"\nschedule = \"*/2 * * * * *\"\ntimeout = \"1s\"\ntarget = \"{}\"",
                t.url("/")
            ),
        )
        .probe(
            "other",
            &format!("plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"", other.url("/ok")),
        )
        .start();
    let s = e.wait_for("two finished runs of hang", WAIT, |s| {
        s.get(
            "wasmprobe_probe_runs_total",
            &[("probe", "hang"), ("result", "failure")],
        )
        .is_some_and(|v| v >= 2.0)
    });
    assert!(t.accepted() >= 2, "the target saw the connections");
    assert_eq!(s.value("probe_success", &[("probe", "hang")]), 0.0);
    assert_eq!(s.value("probe_http_status_code", &[("probe", "hang")]), 0.0);
    let d = s.value("probe_duration_seconds", &[("probe", "hang")]);
    println!("hanging target: run ended after {d:.3}s with timeout 1s");
    assert!(d < 3.0, "the 1s deadline held loosely at least: {d}");
    assert_eq!(s.value("probe_success", &[("probe", "other")]), 1.0);
}

#[test]
fn denied_hosts_never_see_a_connection() {
    let allowed = targets::http();
    let forbidden = targets::counting();
    let e = Engine::new()
        // The plugin asks for a URL outside its allow-list.
        .probe(
            "direct",
            &format!(
                "plugin = \"misbehave\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\n[probes.direct.config]\nbehaviour = \"http\"\nurl = \"{}\"",
                allowed.url("/ok"),
                forbidden.url("/ok")
            ),
        )
        // An allowed target redirects to a forbidden one.
        .probe(
            "redirected",
            &format!(
                "plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"",
                allowed.url(&format!("/redirect-to?url={}", forbidden.url("/ok")))
            ),
        )
        .start();
    let s = e.wait_for("runs", WAIT, |s| {
        ["direct", "redirected"].iter().all(|n| {
            s.get(
                "wasmprobe_probe_runs_total",
                &[("probe", n), ("result", "failure")],
            )
            .is_some_and(|v| v >= 2.0)
        })
    });
    assert_eq!(
        s.value(
            "misbehave_http_status",
            &[("probe", "direct"), ("error", "denied")]
        ),
        0.0,
        "{}",
        s.text
    );
    assert_eq!(s.value("probe_success", &[("probe", "redirected")]), 0.0);
    assert_eq!(
        s.value("probe_http_redirects", &[("probe", "redirected")]),
        1.0
    );
    assert!(e.log().contains("is not allowed"), "{}", e.log());
    assert_eq!(
        forbidden.accepted(),
        0,
        "the forbidden listener saw a connection"
    );
}

#[test]
fn gzip_bodies_are_decoded_and_measured() {
    let t = targets::http();
    let e = Engine::new()
        .probe(
            "gz",
            &format!(
                "plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\n[probes.gz.config]\ncompression = \"gzip\"",
                t.url("/gzip")
            ),
        )
        .start();
    let s = e.wait_for("a run", WAIT, |s| ran(s, "gz"));
    let l = [("probe", "gz")];
    assert_eq!(s.value("probe_success", &l), 1.0, "{}", s.text);
    assert_eq!(s.value("probe_http_uncompressed_body_length", &l), 6000.0);
    assert!(s.value("probe_http_content_length", &l) < 6000.0);
}

/// Credentials come from secrets only and reach the target as the
/// configured scheme: HTTP basic auth with a CEL check of the JSON body,
/// and an OAuth2 client-credentials token fetched once and reused across
/// runs. A probe whose secret is missing sends nothing.
#[test]
fn credentials_from_secrets_and_cel_checks_reach_a_real_server() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};

    let tokens = Arc::new(AtomicUsize::new(0));
    let api_calls = Arc::new(AtomicUsize::new(0));
    let auth = |h: &HeaderMap| {
        h.get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let router = axum::Router::new()
        .route(
            "/basic",
            get(move |h: HeaderMap| async move {
                // probe:s3cret
                if auth(&h) == "Basic cHJvYmU6czNjcmV0" {
                    (
                        StatusCode::OK,
                        r#"{"status":"up","count":3,"checks":[{"ok":true}]}"#,
                    )
                } else {
                    (StatusCode::UNAUTHORIZED, "{}")
                }
            }),
        )
        .route("/html", get(|| async { "<html></html>" }))
        .route("/token", {
            let tokens = tokens.clone();
            post(move |h: HeaderMap, body: String| {
                let tokens = tokens.clone();
                async move {
                    tokens.fetch_add(1, Ordering::SeqCst);
                    // wasmprobe:cs3cret
                    if auth(&h) == "Basic d2FzbXByb2JlOmNzM2NyZXQ="
                        && body.contains("grant_type=client_credentials")
                    {
                        (
                            StatusCode::OK,
                            r#"{"access_token":"at-1","token_type":"bearer","expires_in":3600}"#,
                        )
                    } else {
                        (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#)
                    }
                }
            })
        })
        .route("/api", {
            let api_calls = api_calls.clone();
            get(move |h: HeaderMap| {
                let api_calls = api_calls.clone();
                async move {
                    api_calls.fetch_add(1, Ordering::SeqCst);
                    if auth(&h) == "Bearer at-1" {
                        StatusCode::OK
                    } else {
                        StatusCode::UNAUTHORIZED
                    }
                }
            })
        });
    let t = targets::serve(router);
    let engine = Engine::new();
    let pw = engine.file("pw", "s3cret\n");
    let cs = engine.file("cs", "cs3cret\n");
    let missing = engine.config_path().with_file_name("no-such-secret");
    let e = engine
        .probe(
            "basic",
            &format!(
                "plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\nsecrets = {{ pw = {{ file = {pw:?} }} }}\n[probes.basic.config]\nbasic_auth = {{ username = \"probe\", password_secret = \"pw\" }}\nfail_if_body_json_not_matches_cel = 'body.status == \"up\" && body.checks.all(c, c.ok) && body.count > 2.0'",
                t.url("/basic")
            ),
        )
        .probe(
            "html",
            &format!(
                "plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\n[probes.html.config]\nfail_if_body_json_matches_cel = 'body.status == \"down\"'",
                t.url("/html")
            ),
        )
        .probe(
            "nosecret",
            &format!(
                "plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\nsecrets = {{ pw = {{ file = {missing:?} }} }}\n[probes.nosecret.config]\nbasic_auth = {{ username = \"probe\", password_secret = \"pw\" }}",
                t.url("/basic")
            ),
        )
        .probe(
            "oauth",
            &format!(
                "plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\nsecrets = {{ cs = {{ file = {cs:?} }} }}\n[probes.oauth.config]\noauth2 = {{ client_id = \"wasmprobe\", client_secret_secret = \"cs\", token_url = \"{}\", scopes = [\"health:read\"] }}",
                t.url("/api"),
                t.url("/token")
            ),
        )
        .start();
    let s = e.wait_for("three runs of oauth", WAIT, |s| {
        s.get(
            "wasmprobe_probe_runs_total",
            &[("probe", "oauth"), ("result", "success")],
        )
        .is_some_and(|n| n >= 3.0)
            && ["basic", "html", "nosecret"].iter().all(|p| ran(s, p))
    });
    let of = |probe: &str, name: &str| s.get(name, &[("probe", probe)]);
    assert_eq!(of("basic", "probe_success"), Some(1.0), "{}", s.text);
    assert_eq!(of("basic", "probe_failed_due_to_cel"), Some(0.0));
    assert_eq!(of("html", "probe_success"), Some(0.0));
    assert_eq!(of("html", "probe_http_status_code"), Some(200.0));
    assert_eq!(of("html", "probe_failed_due_to_cel"), Some(1.0));
    assert_eq!(of("nosecret", "probe_success"), Some(0.0));
    assert_eq!(of("nosecret", "probe_http_status_code"), Some(0.0));
    assert_eq!(of("oauth", "probe_success"), Some(1.0));
    let (fetched, calls) = (
        tokens.load(Ordering::SeqCst),
        api_calls.load(Ordering::SeqCst),
    );
    println!("oauth2: {fetched} token request(s) for {calls} authorised runs");
    assert_eq!(fetched, 1, "the token is kept between runs");
    assert!(calls >= 3);
    // No credential reaches the log.
    let log = e.log();
    for secret in ["s3cret", "cs3cret", "at-1", "cHJvYmU6czNjcmV0"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}
