use super::*;
use wasmprobe_sdk::dns::{ResourceRecord, Transport};

fn config(json: &str) -> Config {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn check(json: &str) -> Check {
    Check::new(config(json)).unwrap_or_else(|e| panic!("{e}"))
}

fn rr(name: &str, rtype: &str, ttl: u32, data: &str) -> ResourceRecord {
    ResourceRecord {
        name: name.into(),
        record_type: rtype.into(),
        class: "IN".into(),
        ttl,
        data: data.into(),
    }
}

fn timings() -> DnsTimings {
    DnsTimings {
        resolve: 0.001,
        connect: 0.0,
        exchange: 0.003,
    }
}

/// The reply of blackbox_exporter's authoritative test server.
fn answer(rcode: &str) -> Answer {
    Answer {
        rcode: rcode.into(),
        authoritative: true,
        truncated: false,
        authentic_data: false,
        recursion_available: false,
        answers: vec![rr("example.com.", "A", 3600, "127.0.0.1")],
        authority: vec![
            rr("example.com.", "NS", 7200, "ns1.isp.net."),
            rr("example.com.", "NS", 7200, "ns2.isp.net."),
        ],
        additional: vec![
            rr("ns1.isp.net.", "A", 7200, "127.0.0.1"),
            rr("ns1.isp.net.", "AAAA", 7200, "::1"),
            rr("ns2.isp.net.", "A", 7200, "127.0.0.2"),
        ],
        server: "127.0.0.1:5353".into(),
        ip_protocol: IpProtocol::Ip4,
        timings: timings(),
    }
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

const EXAMPLE: &str = r#"{"query_name": "example.com"}"#;

#[test]
fn defaults_are_blackbox_exporters() {
    let req = check(EXAMPLE).request("127.0.0.1:5353");
    assert_eq!(req.name, "example.com");
    assert_eq!(req.record_type, "ANY");
    assert_eq!(req.class.as_deref(), Some("IN"));
    assert!(req.recursion_desired);
    assert!(!req.dnssec_ok);
    assert_eq!(req.transport, Transport::Udp);
    assert_eq!(req.server.as_deref(), Some("127.0.0.1:5353"));
    assert_eq!(req.preferred_ip_protocol, Some(IpProtocol::Ip6));
    assert!(req.ip_protocol_fallback);
}

#[test]
fn request_follows_the_config() {
    let c = check(
        r#"{"query_name": "example.com", "query_type": "soa", "query_class": "ch",
            "transport_protocol": "tcp", "recursion_desired": false, "dnssec": true,
            "preferred_ip_protocol": "ip4", "ip_protocol_fallback": false, "timeout_ms": 800}"#,
    );
    let req = c.request(" ns1.example ");
    assert_eq!(req.record_type, "SOA");
    assert_eq!(req.class.as_deref(), Some("CH"));
    assert_eq!(req.transport, Transport::Tcp);
    assert!(!req.recursion_desired);
    assert!(req.dnssec_ok);
    assert_eq!(req.server.as_deref(), Some("ns1.example"));
    assert_eq!(req.preferred_ip_protocol, Some(IpProtocol::Ip4));
    assert!(!req.ip_protocol_fallback);
    assert_eq!(req.timeout_ms, Some(800));
    // No target: the system's resolver.
    assert_eq!(c.request("").server, None);
}

#[test]
fn an_answer_reports_blackbox_exporters_metrics() {
    let r = check(EXAMPLE).evaluate(Ok(answer("NOERROR")));
    assert!(r.success, "{:?}", r.message);
    for (name, v) in [
        ("probe_dns_answer_rrs", 1.0),
        ("probe_dns_authority_rrs", 2.0),
        ("probe_dns_additional_rrs", 3.0),
        ("probe_dns_query_succeeded", 1.0),
        ("probe_dns_lookup_time_seconds", 0.001),
        ("probe_ip_protocol", 4.0),
    ] {
        assert_eq!(value(&r, name, &[]), Some(v), "{name}");
    }
    for (phase, v) in [("resolve", 0.001), ("connect", 0.0), ("request", 0.003)] {
        assert_eq!(
            value(&r, "probe_dns_duration_seconds", &[("phase", phase)]),
            Some(v)
        );
    }
    assert_eq!(
        value(&r, "probe_ip_addr_hash", &[]),
        Some(f64::from(crc32fast::hash(b"127.0.0.1")))
    );
    // Only a SOA query reports a serial.
    assert_eq!(value(&r, "probe_dns_serial", &[]), None);
}

#[test]
fn soa_serial() {
    let c = check(r#"{"query_name": "example.com", "query_type": "SOA"}"#);
    let mut a = answer("NOERROR");
    a.answers = vec![rr(
        "example.com.",
        "SOA",
        3600,
        "ns.example.com. noc.example.com. 1000 7200 3600 1209600 3600",
    )];
    let r = c.evaluate(Ok(a));
    assert_eq!(value(&r, "probe_dns_serial", &[]), Some(1000.0));
    // A SOA query answered without a SOA: 0, as blackbox_exporter.
    let r = c.evaluate(Ok(answer("NOERROR")));
    assert_eq!(value(&r, "probe_dns_serial", &[]), Some(0.0));
}

#[test]
fn rcodes() {
    let r = check(EXAMPLE).evaluate(Ok(answer("SERVFAIL")));
    assert!(!r.success);
    assert_eq!(
        r.message.as_deref(),
        Some("rcode SERVFAIL is not one of NOERROR")
    );
    // The query itself succeeded.
    assert_eq!(value(&r, "probe_dns_query_succeeded", &[]), Some(1.0));

    let c = check(r#"{"query_name": "example.com", "valid_rcodes": ["SERVFAIL", "NXDOMAIN"]}"#);
    assert!(c.evaluate(Ok(answer("SERVFAIL"))).success);
    assert!(!c.evaluate(Ok(answer("NOERROR"))).success);

    // The host's spelling of an unnamed code matches its number.
    let c = check(r#"{"query_name": "example.com", "valid_rcodes": ["BADCOOKIE"]}"#);
    assert!(c.evaluate(Ok(answer("RCODE23"))).success);
}

/// blackbox_exporter's authoritative-server test, case by case.
#[test]
fn rr_validation_cases() {
    let cases = [
        (
            r#"{"validate_answer_rrs": {"fail_if_matches_regexp": [".*3600.*"], "fail_if_not_matches_regexp": [".*3600.*"]}}"#,
            false,
        ),
        (
            r#"{"validate_answer_rrs": {"fail_if_matches_regexp": [".*7200.*"], "fail_if_not_matches_regexp": [".*7200.*"]}}"#,
            false,
        ),
        (
            r#"{"validate_authority_rrs": {"fail_if_not_matches_regexp": ["ns.*.isp.net"]}}"#,
            true,
        ),
        (
            r#"{"validate_additional_rrs": {"fail_if_not_matches_regexp": ["^ns.*.isp"]}}"#,
            true,
        ),
        (
            r#"{"validate_additional_rrs": {"fail_if_matches_regexp": ["^ns.*.isp"]}}"#,
            false,
        ),
        (
            r#"{"validate_additional_rrs": {"fail_if_all_match_regexp": [".*127.0.0.*"]}}"#,
            false,
        ),
        (
            r#"{"validate_additional_rrs": {"fail_if_none_matches_regexp": [".*127.0.0.3.*"]}}"#,
            false,
        ),
        (
            r#"{"validate_answer_rrs": {"fail_if_not_matches_regexp": ["^example\\.com\\.\t3600\tIN\tA\t127\\.0\\.0\\.1$"]}}"#,
            true,
        ),
    ];
    for (validators, pass) in cases {
        let json = format!(
            r#"{{"query_name": "example.com", {}"#,
            validators.trim_start_matches('{')
        );
        let r = check(&json).evaluate(Ok(answer("NOERROR")));
        assert_eq!(r.success, pass, "{json}: {:?}", r.message);
    }
}

#[test]
fn the_failing_section_is_named() {
    let c = check(
        r#"{"query_name": "example.com",
            "validate_authority_rrs": {"fail_if_matches_regexp": ["ns2"]}}"#,
    );
    let r = c.evaluate(Ok(answer("NOERROR")));
    assert_eq!(
        r.message.as_deref(),
        Some(
            "authority section: record \"example.com.\\t7200\\tIN\\tNS\\tns2.isp.net.\" \
             matched fail_if_matches_regexp \"ns2\""
        )
    );
}

#[test]
fn a_failed_query_reports_what_is_known() {
    let err = DnsError {
        kind: ErrorKind::Timeout,
        message: "no answer before the deadline".into(),
        server: Some("[::1]:53".into()),
        timings: timings(),
    };
    let r = check(EXAMPLE).evaluate(Err(err));
    assert!(!r.success);
    assert_eq!(
        r.message.as_deref(),
        Some("query: timeout ([::1]:53): no answer before the deadline")
    );
    assert_eq!(value(&r, "probe_dns_query_succeeded", &[]), Some(0.0));
    assert_eq!(value(&r, "probe_dns_answer_rrs", &[]), Some(0.0));
    assert_eq!(value(&r, "probe_ip_protocol", &[]), Some(6.0));
    assert_eq!(
        value(&r, "probe_dns_duration_seconds", &[("phase", "request")]),
        Some(0.003)
    );

    // Never reached: address facts at 0, as blackbox_exporter.
    let err = DnsError {
        kind: ErrorKind::Resolve,
        message: "no address".into(),
        server: None,
        timings: timings(),
    };
    let r = check(EXAMPLE).evaluate(Err(err));
    assert_eq!(value(&r, "probe_ip_protocol", &[]), Some(0.0));
    assert_eq!(value(&r, "probe_ip_addr_hash", &[]), Some(0.0));
}

#[test]
fn bad_configs_are_refused() {
    let refused = |json: &str| Check::new(config(json)).err().unwrap_or_default();
    assert_eq!(refused(r#"{"query_name": " "}"#), "query_name must be set");
    assert!(refused(r#"{"query_name": "x", "query_type": "A B"}"#).starts_with("query_type:"));
    assert!(refused(r#"{"query_name": "x", "query_class": ""}"#).starts_with("query_class:"));
    assert!(
        refused(r#"{"query_name": "x", "valid_rcodes": ["NOT_A_VALID_RCODE"]}"#)
            .contains("NOT_A_VALID_RCODE")
    );
    assert!(refused(r#"{"query_name": "x", "valid_rcodes": []}"#).contains("empty"));
    assert!(
        refused(
            r#"{"query_name": "x", "validate_additional_rrs": {"fail_if_none_matches_regexp": ["["]}}"#
        )
        .starts_with("validate_additional_rrs.fail_if_none_matches_regexp:")
    );
    assert!(refused(r#"{"query_name": "x", "timeout_ms": 0}"#).contains("timeout_ms"));
}

#[test]
fn keys_outside_the_contract_are_refused_by_parsing() {
    for json in [
        r#"{}"#,
        r#"{"query_name": "x", "dns_over_tls": true}"#,
        r#"{"query_name": "x", "source_ip_address": "10.0.0.1"}"#,
        r#"{"query_name": "x", "transport_protocol": "quic"}"#,
        r#"{"query_name": "x", "validate_answer_rrs": {"fail_if_matches": ["x"]}}"#,
    ] {
        assert!(serde_json::from_str::<Config>(json).is_err(), "{json}");
    }
}

#[test]
fn every_sample_is_declared_with_its_labels() {
    let declared = families();
    let c = check(r#"{"query_name": "example.com", "query_type": "SOA"}"#);
    for r in [
        c.evaluate(Ok(answer("NOERROR"))),
        c.evaluate(Err(DnsError {
            kind: ErrorKind::Denied,
            message: "not allowed".into(),
            server: None,
            timings: timings(),
        })),
    ] {
        for s in &r.samples {
            let family = declared.iter().find(|f| f.name == s.name);
            let family = family.unwrap_or_else(|| panic!("{} is not declared", s.name));
            for l in &s.labels {
                assert!(family.labels.contains(&l.name), "{}: {}", s.name, l.name);
            }
        }
    }
}
