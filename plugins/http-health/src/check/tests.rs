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
    assert_eq!(c.request("http://x/").max_body_bytes, Some(4));
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
    let mut r = check(Config::default()).evaluate(Ok(response(
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
