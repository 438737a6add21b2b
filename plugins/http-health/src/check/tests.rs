use super::*;
use wasmprobe_sdk::http::{Certificate, ErrorKind, PhaseTimings};

fn timings() -> PhaseTimings {
    PhaseTimings {
        resolve: 0.001,
        connect: 0.002,
        tls: 0.0,
        processing: 0.003,
        transfer: 0.004,
    }
}

fn response(status: u16, body: &str, headers: &[(&str, &str)]) -> Response {
    Response {
        status,
        version: HttpVersion::Http11,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
        body_truncated: false,
        content_length: Some(body.len() as u64),
        wire_body_length: body.len() as u64,
        trailers: Vec::new(),
        redirects: 0,
        final_url: "http://127.0.0.1:8080/health".into(),
        remote_addr: "127.0.0.1:8080".into(),
        ip_protocol: IpProtocol::Ip4,
        timings: timings(),
        tls: None,
    }
}

fn check(config: Config) -> Check {
    Check::new(config).unwrap_or_else(|e| unreachable!("{e}"))
}

fn value(r: &Report, name: &str) -> Option<f64> {
    r.samples.iter().find(|s| s.name == name).map(|s| s.value)
}

#[test]
fn default_accepts_2xx_and_reports_blackbox_metrics() {
    let r = check(Config::default()).evaluate(Ok(response(204, "", &[])));
    assert!(r.success, "{:?}", r.message);
    assert_eq!(value(&r, "probe_http_status_code"), Some(204.0));
    assert_eq!(value(&r, "probe_http_version"), Some(1.1));
    assert_eq!(value(&r, "probe_ip_protocol"), Some(4.0));
    assert_eq!(value(&r, "probe_dns_lookup_time_seconds"), Some(0.001));
    assert_eq!(value(&r, "probe_failed_due_to_regex"), Some(0.0));
    let phases = r
        .samples
        .iter()
        .filter(|s| s.name == "probe_http_duration_seconds")
        .count();
    assert_eq!(phases, 5);
}

#[test]
fn wrong_status_fails() {
    let r = check(Config::default()).evaluate(Ok(response(503, "", &[])));
    assert!(!r.success);
    assert_eq!(
        r.message.as_deref(),
        Some("invalid HTTP response status code 503")
    );
    let c = Config {
        valid_status_codes: vec![503],
        ..Config::default()
    };
    assert!(check(c).evaluate(Ok(response(503, "", &[]))).success);
}

#[test]
fn body_regexes() {
    let c = Config {
        fail_if_body_not_matches_regexp: vec!["\"status\":\\s*\"ok\"".into()],
        fail_if_body_matches_regexp: vec!["maintenance".into()],
        ..Config::default()
    };
    let c = check(c);
    assert!(
        c.evaluate(Ok(response(200, "{\"status\": \"ok\"}", &[])))
            .success
    );
    let r = c.evaluate(Ok(response(200, "{\"status\": \"down\"}", &[])));
    assert!(!r.success);
    assert_eq!(value(&r, "probe_failed_due_to_regex"), Some(1.0));
    let r = c.evaluate(Ok(response(200, "{\"status\": \"ok\"} maintenance", &[])));
    assert!(!r.success);
}

#[test]
fn header_regexes() {
    let c = Config {
        fail_if_header_matches: vec![config::HeaderMatch {
            header: "X-Cache".into(),
            regexp: "MISS".into(),
            allow_missing: false,
        }],
        fail_if_header_not_matches: vec![config::HeaderMatch {
            header: "content-type".into(),
            regexp: "^application/json".into(),
            allow_missing: false,
        }],
        ..Config::default()
    };
    let c = check(c);
    assert!(
        c.evaluate(Ok(response(
            200,
            "",
            &[("Content-Type", "application/json")]
        )))
        .success
    );
    assert!(
        !c.evaluate(Ok(response(200, "", &[("Content-Type", "text/html")])))
            .success
    );
    assert!(
        !c.evaluate(Ok(response(200, "", &[]))).success,
        "missing header fails"
    );
    assert!(
        !c.evaluate(Ok(response(
            200,
            "",
            &[("Content-Type", "application/json"), ("x-cache", "MISS")]
        )))
        .success
    );
}

#[test]
fn ssl_rules() {
    let c = check(Config {
        fail_if_not_ssl: true,
        ..Config::default()
    });
    let r = c.evaluate(Ok(response(200, "", &[])));
    assert!(!r.success);
    assert_eq!(value(&r, "probe_http_ssl"), Some(0.0));
}

#[test]
fn failures_still_report_what_is_known() {
    let err = HttpError {
        kind: ErrorKind::Tls,
        message: "invalid peer certificate: UnknownIssuer".into(),
        timings: timings(),
        remote_addr: Some("127.0.0.1:8443".into()),
        ip_protocol: Some(IpProtocol::Ip4),
        tls: Some(TlsInfo {
            version: String::new(),
            cipher: String::new(),
            chain: vec![Certificate {
                subject: "CN=localhost".into(),
                issuer: "CN=test ca".into(),
                subject_alt_names: vec!["localhost".into(), "127.0.0.1".into()],
                not_after: 1_900_000_000,
                fingerprint_sha256: "ab".into(),
            }],
            verified: false,
            verify_error: Some("UnknownIssuer".into()),
        }),
        redirects: 0,
    };
    let r = check(Config::default()).evaluate(Err(err));
    assert!(!r.success);
    assert_eq!(value(&r, "probe_http_status_code"), Some(0.0));
    assert_eq!(
        value(&r, "probe_ssl_earliest_cert_expiry"),
        Some(1_900_000_000.0)
    );
    assert_eq!(value(&r, "probe_tls_certificate_verified"), Some(0.0));
    assert!(r.message.is_some_and(|m| m.contains("UnknownIssuer")));
}

#[test]
fn body_size_limit() {
    let c = check(Config {
        body_size_limit: Some(3),
        ..Config::default()
    });
    assert!(c.evaluate(Ok(response(200, "abc", &[]))).success);
    assert!(!c.evaluate(Ok(response(200, "abcd", &[]))).success);
    assert_eq!(c.request("http://x/", None).max_body_bytes, Some(4));
}

#[test]
fn bad_config_is_refused() {
    let e = Check::new(Config {
        fail_if_body_matches_regexp: vec!["(".into()],
        ..Config::default()
    });
    assert!(
        e.is_err_and(|e| e.starts_with("fail_if_body_matches_regexp: invalid regular expression"))
    );
    let e = Check::new(Config {
        valid_http_versions: vec!["HTTP/3".into()],
        ..Config::default()
    });
    assert!(e.is_err());
}

#[test]
fn every_sample_is_declared() {
    let declared: Vec<String> = families().into_iter().map(|f| f.name).collect();
    let c = check(Config {
        fail_if_body_json_matches_cel: Some("false".into()),
        ..Config::default()
    });
    let mut r = c.evaluate(Ok(response(
        200,
        "",
        &[("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")],
    )));
    assert_eq!(
        value(&r, "probe_http_last_modified_timestamp_seconds"),
        Some(784111777.0)
    );
    r.samples.retain(|s| !declared.contains(&s.name));
    assert!(r.samples.is_empty(), "{:?}", r.samples);
}

fn cel(matches: Option<&str>, not_matches: Option<&str>) -> Check {
    check(Config {
        fail_if_body_json_matches_cel: matches.map(String::from),
        fail_if_body_json_not_matches_cel: not_matches.map(String::from),
        ..Config::default()
    })
}

#[test]
fn cel_on_the_json_body() {
    let c = cel(
        Some("body.status == 'maintenance'"),
        Some("body.checks.all(c, c.ok) && body.count == 3 && body.count > 2.5"),
    );
    let ok = r#"{"status": "up", "count": 3, "checks": [{"ok": true}, {"ok": true}]}"#;
    let r = c.evaluate(Ok(response(200, ok, &[])));
    assert!(r.success, "{:?}", r.message);
    assert_eq!(value(&r, "probe_failed_due_to_cel"), Some(0.0));
    assert_eq!(value(&r, "probe_failed_due_to_regex"), Some(0.0));

    let down = r#"{"status": "up", "count": 3, "checks": [{"ok": true}, {"ok": false}]}"#;
    let r = c.evaluate(Ok(response(200, down, &[])));
    assert!(!r.success);
    assert_eq!(value(&r, "probe_failed_due_to_cel"), Some(1.0));
    assert_eq!(
        r.message.as_deref(),
        Some(
            "body did not match CEL expression \"body.checks.all(c, c.ok) && body.count == 3 && body.count > 2.5\""
        )
    );

    let maintenance = r#"{"status": "maintenance", "count": 3, "checks": []}"#;
    let r = c.evaluate(Ok(response(200, maintenance, &[])));
    assert!(!r.success);
    assert_eq!(
        r.message.as_deref(),
        Some("body matched CEL expression \"body.status == 'maintenance'\"")
    );
}

#[test]
fn json_numbers_are_doubles_as_in_blackbox() {
    let c = cel(
        None,
        Some("type(body.n) == double && body.n == 2 && body.f == 1.5"),
    );
    assert!(
        c.evaluate(Ok(response(200, r#"{"n": 2, "f": 1.5}"#, &[])))
            .success
    );
}

#[test]
fn cel_matches_uses_re2_syntax() {
    let c = cel(
        None,
        Some(r"body.version.matches('^v1\\.[0-9]+$') && matches(body.region, 'eu-')"),
    );
    let r = c.evaluate(Ok(response(
        200,
        r#"{"version": "v1.12", "region": "eu-west"}"#,
        &[],
    )));
    assert!(r.success, "{:?}", r.message);
    assert!(
        !c.evaluate(Ok(response(
            200,
            r#"{"version": "v2.0", "region": "eu-west"}"#,
            &[]
        )))
        .success
    );
    let bad = cel(None, Some("body.v.matches('(')"));
    let r = bad.evaluate(Ok(response(200, r#"{"v": "x"}"#, &[])));
    assert!(!r.success);
    assert_eq!(value(&r, "probe_failed_due_to_cel"), Some(1.0));
}

#[test]
fn cel_failures_that_are_not_a_match() {
    let c = cel(None, Some("body.status == 'up'"));
    let r = c.evaluate(Ok(response(200, "<html>up</html>", &[])));
    assert!(!r.success);
    assert_eq!(value(&r, "probe_failed_due_to_cel"), Some(1.0));
    assert!(
        r.message
            .as_deref()
            .is_some_and(|m| m.starts_with("body is not JSON: ")),
        "{:?}",
        r.message
    );

    let r = c.evaluate(Ok(response(200, r#"{"other": 1}"#, &[])));
    assert!(!r.success);
    assert_eq!(value(&r, "probe_failed_due_to_cel"), Some(1.0));
    assert!(
        r.message
            .as_deref()
            .is_some_and(|m| m.starts_with("CEL expression \"body.status == 'up'\" failed: ")),
        "{:?}",
        r.message
    );

    let r = cel(Some("body.status"), None).evaluate(Ok(response(200, r#"{"status": "up"}"#, &[])));
    assert!(!r.success);
    assert_eq!(
        r.message.as_deref(),
        Some("CEL expression \"body.status\" gives a string, not a bool")
    );
    assert_eq!(value(&r, "probe_failed_due_to_cel"), Some(1.0));
}

#[test]
fn cel_runs_only_on_an_accepted_status_and_reports_only_when_configured() {
    let c = cel(None, Some("body.status == 'up'"));
    let r = c.evaluate(Ok(response(503, "not json", &[])));
    assert!(!r.success);
    assert_eq!(
        r.message.as_deref(),
        Some("invalid HTTP response status code 503")
    );
    assert_eq!(value(&r, "probe_failed_due_to_cel"), Some(0.0));
    let r = c.not_sent("no".into());
    assert_eq!(value(&r, "probe_failed_due_to_cel"), Some(0.0));

    let r = check(Config::default()).evaluate(Ok(response(200, "", &[])));
    assert_eq!(value(&r, "probe_failed_due_to_cel"), None);
}

#[test]
fn an_invalid_cel_expression_is_an_invalid_config() {
    let e = Check::new(Config {
        fail_if_body_json_not_matches_cel: Some("body.status ==".into()),
        ..Config::default()
    })
    .unwrap_err();
    assert!(
        e.starts_with(
            "fail_if_body_json_not_matches_cel: invalid CEL expression \"body.status ==\": 1:"
        ),
        "{e}"
    );
}

#[test]
fn the_authorization_header_comes_last_and_once() {
    let c = check(Config {
        headers: [("X-Probe".to_string(), "1".to_string())].into(),
        ..Config::default()
    });
    let req = c.request("http://127.0.0.1:8080/", Some("Bearer t"));
    assert_eq!(
        req.headers,
        vec![
            ("X-Probe".to_string(), "1".to_string()),
            ("Authorization".to_string(), "Bearer t".to_string())
        ]
    );
}

#[test]
fn a_request_not_sent_reports_zeroes_all_declared() {
    let declared: Vec<String> = families().into_iter().map(|f| f.name).collect();
    let r = cel(Some("false"), None).not_sent("oauth2: token endpoint answered 500".into());
    assert!(!r.success);
    assert_eq!(value(&r, "probe_http_status_code"), Some(0.0));
    assert_eq!(
        r.samples
            .iter()
            .filter(|s| s.name == "probe_http_duration_seconds")
            .count(),
        5
    );
    assert!(r.samples.iter().all(|s| declared.contains(&s.name)));
}

#[test]
fn cel_as_the_readme_says() {
    // Arithmetic does not mix double and int, as in cel-go.
    let r = cel(None, Some("body.n + 1 == 3")).evaluate(Ok(response(200, r#"{"n": 2}"#, &[])));
    assert!(!r.success);
    assert_eq!(value(&r, "probe_failed_due_to_cel"), Some(1.0));
    assert!(
        cel(None, Some("body.n + 1.0 == 3.0"))
            .evaluate(Ok(response(200, r#"{"n": 2}"#, &[])))
            .success
    );
    // has() tells a missing key from a failing expression.
    let c = cel(
        None,
        Some(r#"!has(body.maintenance) && body.status == "up" && body.checks.all(c, c.ok)"#),
    );
    assert!(
        c.evaluate(Ok(response(
            200,
            r#"{"status": "up", "checks": [{"ok": true}]}"#,
            &[]
        )))
        .success
    );
    assert!(
        !c.evaluate(Ok(response(
            200,
            r#"{"status": "up", "checks": [], "maintenance": true}"#,
            &[]
        )))
        .success
    );
}
