use prost::Message;

use super::*;
use crate::wire::HealthCheckResponse;
use wasmprobe_sdk::http::{Certificate, HttpVersion, TlsInfo};

fn timings() -> PhaseTimings {
    PhaseTimings {
        resolve: 0.001,
        connect: 0.002,
        tls: 0.0,
        processing: 0.003,
        transfer: 0.004,
    }
}

fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A framed HealthCheckResponse.
fn message(status: i32) -> Vec<u8> {
    let m = HealthCheckResponse { status }.encode_to_vec();
    let mut body = vec![0];
    body.extend_from_slice(&(m.len() as u32).to_be_bytes());
    body.extend_from_slice(&m);
    body
}

/// A gRPC answer: 200, `application/grpc`, `body`, then `trailers`.
fn answer(body: Vec<u8>, trailers: &[(&str, &str)]) -> Response {
    Response {
        status: 200,
        version: HttpVersion::Http2,
        headers: fields(&[("content-type", "application/grpc")]),
        wire_body_length: body.len() as u64,
        content_length: None,
        body,
        trailers: fields(trailers),
        body_truncated: false,
        redirects: 0,
        final_url: "http://127.0.0.1:50051/grpc.health.v1.Health/Check".into(),
        remote_addr: "127.0.0.1:50051".into(),
        ip_protocol: IpProtocol::Ip4,
        timings: timings(),
        tls: None,
    }
}

fn serving(status: ServingStatus) -> Response {
    answer(message(status as i32), &[("grpc-status", "0")])
}

fn error(kind: ErrorKind, remote_addr: Option<&str>) -> HttpError {
    HttpError {
        kind,
        message: "it went wrong".into(),
        timings: timings(),
        remote_addr: remote_addr.map(str::to_string),
        ip_protocol: remote_addr.map(|_| IpProtocol::Ip4),
        tls: None,
        redirects: 0,
    }
}

fn tls_info(verified: bool) -> TlsInfo {
    TlsInfo {
        version: "TLS 1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
        chain: vec![Certificate {
            subject: "CN=grpc.example".into(),
            issuer: "CN=test ca".into(),
            subject_alt_names: vec!["grpc.example".into()],
            not_after: 1_900_000_000,
            fingerprint_sha256: "ab12".into(),
        }],
        verified,
        verify_error: None,
    }
}

fn config(json: &str) -> Config {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn check(json: &str) -> Check {
    Check::new(config(json)).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn value(r: &Report, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    r.samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && s.labels
                    .iter()
                    .zip(labels)
                    .all(|(l, (k, v))| l.name == *k && l.value == *v)
        })
        .map(|s| s.value)
}

fn count(r: &Report, name: &str) -> usize {
    r.samples.iter().filter(|s| s.name == name).count()
}

/// `probe_grpc_healthcheck_response` by label, in the order emitted.
fn statuses(r: &Report) -> Vec<(String, f64)> {
    r.samples
        .iter()
        .filter(|s| s.name == "probe_grpc_healthcheck_response")
        .map(|s| {
            let label = s.labels.first().map(|l| l.value.clone());
            (label.unwrap_or_default(), s.value)
        })
        .collect()
}

fn statuses_with(received: &str) -> Vec<(String, f64)> {
    ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"]
        .iter()
        .map(|s| (s.to_string(), if *s == received { 1.0 } else { 0.0 }))
        .collect()
}

#[test]
fn families_are_blackbox_exporters() {
    let names: Vec<String> = families().into_iter().map(|f| f.name).collect();
    assert_eq!(
        names,
        [
            "probe_grpc_duration_seconds",
            "probe_grpc_ssl",
            "probe_grpc_status_code",
            "probe_grpc_healthcheck_response",
            "probe_dns_lookup_time_seconds",
            "probe_ip_protocol",
            "probe_ip_addr_hash",
            "probe_ssl_earliest_cert_expiry",
            "probe_ssl_last_chain_info",
            "probe_tls_version_info",
        ]
    );
}

#[test]
fn the_request_is_a_health_check_over_h2c() {
    let req = check(r#"{"service": "foo"}"#)
        .request("127.0.0.1:50051")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.url,
        "http://127.0.0.1:50051/grpc.health.v1.Health/Check"
    );
    assert_eq!(
        req.headers,
        fields(&[("content-type", "application/grpc"), ("te", "trailers")])
    );
    assert_eq!(req.body.as_deref(), Some(&b"\0\0\0\0\x05\x0a\x03foo"[..]));
    assert!(req.http2_prior_knowledge);
    assert!(!req.enable_http2);
    assert!(!req.follow_redirects);
    assert!(!req.decompress);
    assert_eq!(req.preferred_ip_protocol, Some(IpProtocol::Ip6));
    assert!(req.ip_protocol_fallback);
    assert_eq!(req.timeout_ms, None);
}

#[test]
fn tls_offers_h2_through_alpn() {
    let c = check(
        r#"{"tls": true, "preferred_ip_protocol": "ip4", "ip_protocol_fallback": false, "timeout_ms": 1500}"#,
    );
    let req = c.request("grpc.example").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(req.url, "https://grpc.example/grpc.health.v1.Health/Check");
    assert!(req.enable_http2);
    assert!(!req.http2_prior_knowledge);
    assert_eq!(req.preferred_ip_protocol, Some(IpProtocol::Ip4));
    assert!(!req.ip_protocol_fallback);
    assert_eq!(req.timeout_ms, Some(1500));
}

#[test]
fn targets() {
    let url = |json: &str, target: &str| {
        check(json)
            .request(target)
            .map(|r| r.url.trim_end_matches(wire::PATH).to_string())
    };
    assert_eq!(
        url("{}", "[::1]:50051").as_deref(),
        Ok("http://[::1]:50051")
    );
    assert_eq!(url("{}", "[::1]").as_deref(), Ok("http://[::1]"));
    assert_eq!(
        url("{}", "http://grpc:80/").as_deref(),
        Ok("http://grpc:80")
    );
    assert_eq!(
        url(r#"{"tls": true}"#, "HTTPS://grpc:443").as_deref(),
        Ok("https://grpc:443")
    );
    let refused = |json: &str, target: &str| url(json, target).err().unwrap_or_default();
    assert!(refused("{}", "https://grpc:443").contains("contradicts tls = false"));
    assert!(refused(r#"{"tls": true}"#, "http://grpc:80").contains("contradicts tls = true"));
    assert!(refused("{}", "::1:50051").contains("brackets"));
    for bad in [
        "",
        "grpc:http",
        "grpc:70000",
        "grpc:80/path",
        "[::1]x",
        "user@grpc:80",
        ":80",
    ] {
        assert_eq!(
            refused("{}", bad),
            format!("target {bad:?} is not HOST:PORT"),
            "{bad:?}"
        );
    }
}

#[test]
fn bad_configs_are_refused() {
    let refused = |json: &str| Check::new(config(json)).err().unwrap_or_default();
    assert_eq!(
        refused(r#"{"timeout_ms": 0}"#),
        "timeout_ms must be above 0"
    );
    let m = refused(r#"{"tls": true, "tls_config": {"server_name": "grpc.internal"}}"#);
    assert!(m.contains("[probes.NAME.tls]"), "{m}");
    // The schema stops it first, at the key.
    let schema = serde_json::to_value(schemars::schema_for!(Config)).unwrap_or_default();
    assert_eq!(
        schema.pointer("/$defs/TlsConfig/properties/server_name/not"),
        Some(&serde_json::json!({})),
        "{schema:#}"
    );
    for json in [
        r#"{"tls_config": {"insecure_skip_verify": true}}"#,
        r#"{"source_ip_address": "10.0.0.1"}"#,
        r#"{"preferred_ip_protocol": "ip5"}"#,
    ] {
        assert!(serde_json::from_str::<Config>(json).is_err(), "{json}");
    }
}

#[test]
fn serving_succeeds_with_blackbox_metrics() {
    let r = check("{}").evaluate(Ok(serving(ServingStatus::Serving)));
    assert!(r.success, "{:?}", r.message);
    assert_eq!(value(&r, "probe_grpc_status_code", &[]), Some(0.0));
    assert_eq!(value(&r, "probe_grpc_ssl", &[]), Some(0.0));
    assert_eq!(statuses(&r), statuses_with("SERVING"));
    assert_eq!(
        value(&r, "probe_grpc_duration_seconds", &[("phase", "resolve")]),
        Some(0.001)
    );
    let check_phase = value(&r, "probe_grpc_duration_seconds", &[("phase", "check")]);
    assert!(check_phase.is_some_and(|v| (v - 0.009).abs() < 1e-12));
    assert_eq!(value(&r, "probe_dns_lookup_time_seconds", &[]), Some(0.001));
    assert_eq!(value(&r, "probe_ip_protocol", &[]), Some(4.0));
    assert_eq!(
        value(&r, "probe_ip_addr_hash", &[]),
        "127.0.0.1".parse().ok().map(blackbox::ip_addr_hash)
    );
    assert_eq!(count(&r, "probe_ssl_earliest_cert_expiry"), 0);
    assert_eq!(count(&r, "probe_tls_version_info"), 0);
}

#[test]
fn other_serving_statuses_fail() {
    let r = check(r#"{"service": "foo"}"#).evaluate(Ok(serving(ServingStatus::NotServing)));
    assert!(!r.success);
    assert_eq!(
        r.message.as_deref(),
        Some(r#"service "foo" is NOT_SERVING"#)
    );
    assert_eq!(value(&r, "probe_grpc_status_code", &[]), Some(0.0));
    assert_eq!(statuses(&r), statuses_with("NOT_SERVING"));

    let r = check("{}").evaluate(Ok(serving(ServingStatus::Unknown)));
    assert_eq!(r.message.as_deref(), Some("the server is UNKNOWN"));
    assert_eq!(statuses(&r), statuses_with("UNKNOWN"));

    // A status the proto does not know gets its own series, by number.
    let r = check("{}").evaluate(Ok(answer(message(7), &[("grpc-status", "0")])));
    assert!(!r.success);
    let mut want = statuses_with("");
    want.push(("7".into(), 1.0));
    assert_eq!(statuses(&r), want);
}

#[test]
fn a_failing_status_is_reported_with_its_code() {
    // Trailers-only: the status comes in the one header block.
    let mut resp = answer(Vec::new(), &[]);
    resp.headers = fields(&[
        ("content-type", "application/grpc"),
        ("grpc-status", "5"),
        ("grpc-message", "unknown%20service"),
    ]);
    let r = check(r#"{"service": "nope"}"#).evaluate(Ok(resp));
    assert!(!r.success);
    assert_eq!(value(&r, "probe_grpc_status_code", &[]), Some(5.0));
    assert_eq!(statuses(&r), statuses_with(""));
    assert_eq!(
        r.message.as_deref(),
        Some("rpc: NOT_FOUND (5): unknown service")
    );

    // In the trailers after an empty body, as most servers send it.
    let r = check("{}").evaluate(Ok(answer(
        Vec::new(),
        &[
            ("grpc-status", "12"),
            ("grpc-message", "unknown service grpc.health.v1.Health"),
        ],
    )));
    assert_eq!(value(&r, "probe_grpc_status_code", &[]), Some(12.0));
}

#[test]
fn answers_that_are_not_grpc() {
    let code = |resp: Response| {
        let r = check("{}").evaluate(Ok(resp));
        assert!(!r.success);
        (value(&r, "probe_grpc_status_code", &[]), r.message)
    };
    let mut resp = answer(b"not found".to_vec(), &[]);
    resp.status = 404;
    resp.headers = fields(&[("content-type", "text/plain")]);
    let (c, why) = code(resp);
    assert_eq!(c, Some(12.0));
    assert_eq!(
        why.as_deref(),
        Some(
            r#"rpc: UNIMPLEMENTED (12): unexpected HTTP status code 404; unexpected content-type "text/plain""#
        )
    );

    let mut resp = serving(ServingStatus::Serving);
    resp.status = 503;
    assert_eq!(code(resp).0, Some(14.0));

    let mut resp = serving(ServingStatus::Serving);
    resp.headers.clear();
    assert_eq!(code(resp).0, Some(2.0));

    let mut resp = serving(ServingStatus::Serving);
    resp.version = HttpVersion::Http11;
    assert_eq!(code(resp).0, Some(14.0));

    // A body but no trailers at all.
    assert_eq!(code(answer(message(1), &[])).0, Some(13.0));
    // Trailers without a status.
    assert_eq!(code(answer(message(1), &[("x-other", "1")])).0, Some(2.0));
    assert_eq!(
        code(answer(message(1), &[("grpc-status", "zero")])).0,
        Some(13.0)
    );
    // OK without the message a unary call must return.
    assert_eq!(
        code(answer(Vec::new(), &[("grpc-status", "0")])).0,
        Some(13.0)
    );
}

#[test]
fn transport_failures_after_dialling_have_a_code() {
    let r = check("{}").evaluate(Err(error(ErrorKind::Connect, Some("127.0.0.1:50051"))));
    assert!(!r.success);
    assert_eq!(value(&r, "probe_grpc_status_code", &[]), Some(14.0));
    assert_eq!(
        r.message.as_deref(),
        Some("rpc: UNAVAILABLE (14): connect: it went wrong")
    );
    assert_eq!(statuses(&r), statuses_with(""));
    assert_eq!(count(&r, "probe_grpc_duration_seconds"), 2);
    assert_eq!(value(&r, "probe_grpc_ssl", &[]), Some(0.0));
    assert_eq!(value(&r, "probe_ip_protocol", &[]), Some(4.0));

    let r = check("{}").evaluate(Err(error(ErrorKind::Timeout, Some("[::1]:50051"))));
    assert_eq!(value(&r, "probe_grpc_status_code", &[]), Some(4.0));
    let r = check("{}").evaluate(Err(error(ErrorKind::Protocol, Some("[::1]:50051"))));
    assert_eq!(value(&r, "probe_grpc_status_code", &[]), Some(14.0));
}

#[test]
fn failures_before_dialling_look_like_a_failed_resolution() {
    for kind in [ErrorKind::Dns, ErrorKind::Denied, ErrorKind::Timeout] {
        let r = check("{}").evaluate(Err(error(kind, None)));
        assert!(!r.success);
        assert_eq!(value(&r, "probe_grpc_status_code", &[]), Some(0.0));
        assert_eq!(value(&r, "probe_grpc_ssl", &[]), Some(0.0));
        assert_eq!(count(&r, "probe_grpc_healthcheck_response"), 0);
        assert_eq!(count(&r, "probe_grpc_duration_seconds"), 1);
        assert_eq!(value(&r, "probe_ip_protocol", &[]), Some(0.0));
        assert_eq!(value(&r, "probe_ip_addr_hash", &[]), Some(0.0));
        assert_eq!(value(&r, "probe_dns_lookup_time_seconds", &[]), Some(0.001));
    }
    let r = check("{}").evaluate(Err(error(ErrorKind::Dns, None)));
    assert_eq!(r.message.as_deref(), Some("dns: it went wrong"));
}

#[test]
fn tls_facts() {
    let mut resp = serving(ServingStatus::Serving);
    resp.tls = Some(tls_info(true));
    let r = check(r#"{"tls": true}"#).evaluate(Ok(resp));
    assert!(r.success, "{:?}", r.message);
    assert_eq!(value(&r, "probe_grpc_ssl", &[]), Some(1.0));
    assert_eq!(
        value(&r, "probe_ssl_earliest_cert_expiry", &[]),
        Some(1_900_000_000.0)
    );
    assert_eq!(
        value(&r, "probe_tls_version_info", &[("version", "TLS 1.3")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &r,
            "probe_ssl_last_chain_info",
            &[
                ("fingerprint_sha256", "ab12"),
                ("subject", "CN=grpc.example"),
                ("issuer", "CN=test ca"),
                ("subjectalternative", "grpc.example"),
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        count(&r, "probe_ssl_last_chain_expiry_timestamp_seconds"),
        0
    );

    // A handshake that failed to verify still shows its certificate.
    let err = HttpError {
        tls: Some(tls_info(false)),
        ..error(ErrorKind::Tls, Some("127.0.0.1:50051"))
    };
    let r = check(r#"{"tls": true}"#).evaluate(Err(err));
    assert!(!r.success);
    assert_eq!(value(&r, "probe_grpc_ssl", &[]), Some(0.0));
    assert_eq!(value(&r, "probe_grpc_status_code", &[]), Some(14.0));
    assert_eq!(
        value(&r, "probe_ssl_earliest_cert_expiry", &[]),
        Some(1_900_000_000.0)
    );
}

#[test]
fn a_refused_target_reports_the_early_shape() {
    let r = refused("target \"x\" is not HOST:PORT".into());
    assert!(!r.success);
    assert_eq!(
        value(&r, "probe_grpc_duration_seconds", &[("phase", "resolve")]),
        Some(0.0)
    );
    assert_eq!(value(&r, "probe_grpc_status_code", &[]), Some(0.0));
    assert_eq!(count(&r, "probe_grpc_healthcheck_response"), 0);
}
