use std::collections::VecDeque;

use super::*;
use wasmprobe_sdk::http::Certificate;
use wasmprobe_sdk::tcp::{ConnectTimings, IpProtocol};

/// A peer that sends `incoming` (then closes, when `closes`), records what
/// the probe sends, and answers STARTTLS with `tls`.
#[derive(Default)]
struct Script {
    incoming: VecDeque<u8>,
    closes: bool,
    sent: Vec<u8>,
    tls: Option<Result<TlsInfo, TcpError>>,
    starttls_names: Vec<Option<String>>,
}

fn peer(incoming: &str) -> Script {
    Script {
        incoming: incoming.bytes().collect(),
        closes: true,
        ..Script::default()
    }
}

fn error(kind: ErrorKind, message: &str) -> TcpError {
    TcpError {
        kind,
        message: message.into(),
        timings: timings(),
        remote_addr: None,
        tls: None,
    }
}

impl Conn for &mut Script {
    fn send(&mut self, data: &[u8]) -> Result<(), TcpError> {
        self.sent.extend_from_slice(data);
        Ok(())
    }

    fn receive(
        &mut self,
        max_bytes: u32,
        delimiter: Option<&[u8]>,
        _timeout_ms: Option<u64>,
    ) -> Result<Received, TcpError> {
        if self.incoming.is_empty() {
            return if self.closes {
                Ok(Received {
                    data: Vec::new(),
                    delimited: false,
                    eof: true,
                })
            } else {
                Err(error(ErrorKind::Timeout, "no data before the deadline"))
            };
        }
        let mut data = Vec::new();
        let mut delimited = false;
        while let Some(b) = self.incoming.pop_front() {
            data.push(b);
            if delimiter.is_some_and(|d| data.ends_with(d)) {
                delimited = true;
                break;
            }
            if data.len() >= max_bytes as usize {
                break;
            }
        }
        Ok(Received {
            data,
            delimited,
            eof: self.incoming.is_empty() && self.closes,
        })
    }

    fn start_tls(&mut self, server_name: Option<&str>) -> Result<TlsInfo, TcpError> {
        self.starttls_names.push(server_name.map(str::to_string));
        self.tls
            .take()
            .unwrap_or_else(|| Err(error(ErrorKind::Tls, "no TLS in this script")))
    }
}

fn timings() -> ConnectTimings {
    ConnectTimings {
        resolve: 0.001,
        connect: 0.002,
        tls: 0.0,
    }
}

fn info(tls: Option<TlsInfo>) -> ConnectInfo {
    ConnectInfo {
        remote_addr: "127.0.0.1:2525".into(),
        ip_protocol: IpProtocol::Ip4,
        timings: timings(),
        tls,
    }
}

fn tls_info(verified: bool) -> TlsInfo {
    TlsInfo {
        version: "TLS 1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
        chain: vec![
            Certificate {
                subject: "CN=mail.example".into(),
                issuer: "CN=test ca".into(),
                subject_alt_names: vec!["mail.example".into(), "127.0.0.1".into()],
                not_after: 1_900_000_000,
                fingerprint_sha256: "ab12".into(),
            },
            Certificate {
                subject: "CN=test ca".into(),
                issuer: "CN=test ca".into(),
                subject_alt_names: vec![],
                not_after: 1_800_000_000,
                fingerprint_sha256: "cd34".into(),
            },
        ],
        verified,
        verify_error: (!verified).then(|| "UnknownIssuer".into()),
    }
}

/// A config from the JSON the host hands over.
fn config(json: &str) -> Config {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn check(json: &str) -> Check {
    Check::new(config(json)).unwrap_or_else(|e| panic!("{e}"))
}

fn run(check: &Check, script: &mut Script) -> Report {
    check.evaluate(Ok((script, info(None))))
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

#[test]
fn connect_only_succeeds_with_address_facts() {
    let c = check("{}");
    let r = run(&c, &mut peer(""));
    assert!(r.success, "{:?}", r.message);
    assert_eq!(value(&r, "probe_ip_protocol", &[]), Some(4.0));
    assert_eq!(
        value(&r, "probe_ip_addr_hash", &[]),
        Some(f64::from(crc32fast::hash(b"127.0.0.1")))
    );
    assert_eq!(value(&r, "probe_dns_lookup_time_seconds", &[]), Some(0.001));
    assert_eq!(value(&r, "probe_failed_due_to_regex", &[]), Some(0.0));
    assert_eq!(value(&r, "probe_failed_due_to_bytes", &[]), Some(0.0));
    assert_eq!(value(&r, "probe_ssl_earliest_cert_expiry", &[]), None);
}

#[test]
fn smtp_conversation_with_crlf_lines() {
    let c = check(
        r#"{"query_response": [
            {"expect": "^220 "},
            {"send": "EHLO prober"},
            {"expect": "^250 "},
            {"send": "QUIT"}
        ]}"#,
    );
    let mut p = peer("220 mail.example ESMTP\r\n250-mail.example\r\n250-PIPELINING\r\n250 OK\r\n");
    let r = run(&c, &mut p);
    assert!(r.success, "{:?}", r.message);
    assert_eq!(p.sent, b"EHLO prober\nQUIT\n");
}

#[test]
fn send_expands_the_groups_of_expect() {
    let c = check(
        r#"{"query_response": [
            {"send": "NICK prober"},
            {"expect": "PING :([^ ]+)", "send": "PONG ${1}"},
            {"expect": "^:[^ ]+ 001"}
        ]}"#,
    );
    let mut p = peer("NOTICE hello\nPING :k3y\n:irc.example 001 prober :welcome\n");
    let r = run(&c, &mut p);
    assert!(r.success, "{:?}", r.message);
    assert_eq!(p.sent, b"NICK prober\nPONG k3y\n");
}

#[test]
fn an_expansion_that_comes_out_empty_sends_nothing() {
    let c = check(r#"{"query_response": [{"expect": "^(x?)go", "send": "$1"}]}"#);
    let mut p = peer("go\n");
    assert!(run(&c, &mut p).success);
    assert!(p.sent.is_empty());
}

#[test]
fn no_match_before_the_peer_closes_is_a_regex_failure() {
    let c = check(r#"{"query_response": [{"expect": "^SSH-2.0-"}]}"#);
    let r = run(&c, &mut peer("HTTP/1.1 400 Bad Request\r\n"));
    assert!(!r.success);
    assert_eq!(value(&r, "probe_failed_due_to_regex", &[]), Some(1.0));
    let message = r.message.unwrap_or_default();
    assert!(message.starts_with("query_response[0]:"), "{message}");
    assert!(message.contains("HTTP/1.1 400 Bad Request"), "{message}");
}

#[test]
fn the_last_line_counts_without_its_newline() {
    let c = check(r#"{"query_response": [{"expect": "^OK$"}]}"#);
    assert!(run(&c, &mut peer("hello\r\nOK\r")).success);
}

#[test]
fn a_timeout_is_a_failure_but_not_a_regex_failure() {
    // As in blackbox_exporter: only a peer that closes first sets the
    // regex flag; a read that times out is an error of the connection.
    let c = check(r#"{"query_response": [{"expect": "^PONG"}]}"#);
    let mut p = peer("PING\n");
    p.closes = false;
    let r = run(&c, &mut p);
    assert!(!r.success);
    assert_eq!(value(&r, "probe_failed_due_to_regex", &[]), Some(0.0));
    assert!(r.message.as_deref().is_some_and(|m| m.contains("timeout")));

    let mut p = peer("PON");
    p.closes = false;
    let r = run(&c, &mut p);
    assert!(
        r.message
            .as_deref()
            .is_some_and(|m| m.contains("middle of a line"))
    );
}

#[test]
fn an_overlong_line_fails() {
    let c = check(r#"{"query_response": [{"expect": "^never"}]}"#);
    let long = "x".repeat(MAX_LINE as usize + 10);
    let mut p = peer(&long);
    p.closes = false;
    let r = run(&c, &mut p);
    assert!(!r.success);
    assert!(
        r.message
            .as_deref()
            .is_some_and(|m| m.contains("longer than"))
    );
}

#[test]
fn expect_info_labels_come_from_the_match() {
    let c = check(
        r#"{"query_response": [{
            "expect": "^SSH-2.0-([^ -]+)(?: (.*))?$",
            "labels": [
                {"name": "ssh_version", "value": "${1}"},
                {"name": "ssh_comments", "value": "${2}"}
            ]
        }]}"#,
    );
    let r = run(
        &c,
        &mut peer("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.14\r\n"),
    );
    assert!(r.success, "{:?}", r.message);
    assert_eq!(
        value(
            &r,
            "probe_expect_info",
            &[
                ("ssh_version", "OpenSSH_9.6p1"),
                ("ssh_comments", "Ubuntu-3ubuntu13.14")
            ]
        ),
        Some(1.0)
    );
}

#[test]
fn expect_bytes_reads_exactly_and_flags_a_mismatch() {
    let c = check(
        r#"{"query_response": [{"send": "hi"}, {"expect_bytes": "S"}, {"expect": "^rest"}]}"#,
    );
    let r = run(&c, &mut peer("Srest\n"));
    assert!(r.success, "{:?}", r.message);

    let r = run(&c, &mut peer("Nrest\n"));
    assert!(!r.success);
    assert_eq!(value(&r, "probe_failed_due_to_bytes", &[]), Some(1.0));
    assert_eq!(value(&r, "probe_failed_due_to_regex", &[]), Some(0.0));

    // Coming up short is a failure of the connection, not of the bytes.
    let c = check(r#"{"query_response": [{"expect_bytes": "ABCD"}]}"#);
    let r = run(&c, &mut peer("AB"));
    assert!(!r.success);
    assert_eq!(value(&r, "probe_failed_due_to_bytes", &[]), Some(0.0));
    assert!(r.message.as_deref().is_some_and(|m| m.contains("2 of 4")));
}

#[test]
fn starttls_reports_the_upgraded_tls_facts() {
    let c = check(
        r#"{"query_response": [
            {"expect": "^220 "},
            {"send": "STARTTLS"},
            {"expect": "^220 ", "starttls": true}
        ], "tls_config": {"server_name": "mail.example"}}"#,
    );
    let mut p = peer("220 hi\r\n220 go ahead\r\n");
    p.tls = Some(Ok(tls_info(true)));
    let r = run(&c, &mut p);
    assert!(r.success, "{:?}", r.message);
    assert_eq!(p.starttls_names, vec![Some("mail.example".to_string())]);
    assert_eq!(
        value(&r, "probe_ssl_earliest_cert_expiry", &[]),
        Some(1_800_000_000.0)
    );
    assert_eq!(
        value(&r, "probe_ssl_last_chain_expiry_timestamp_seconds", &[]),
        Some(1_800_000_000.0)
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
                ("subject", "CN=mail.example"),
                ("issuer", "CN=test ca"),
                ("subjectalternative", "mail.example,127.0.0.1"),
            ]
        ),
        Some(1.0)
    );
}

#[test]
fn a_failed_handshake_still_reports_the_certificate() {
    let c = check(r#"{"query_response": [{"starttls": true}]}"#);
    let mut p = peer("");
    p.tls = Some(Err(TcpError {
        tls: Some(tls_info(false)),
        ..error(ErrorKind::Tls, "invalid peer certificate: UnknownIssuer")
    }));
    let r = run(&c, &mut p);
    assert!(!r.success);
    assert!(
        r.message
            .as_deref()
            .is_some_and(|m| m.contains("UnknownIssuer"))
    );
    assert_eq!(
        value(&r, "probe_ssl_earliest_cert_expiry", &[]),
        Some(1_800_000_000.0)
    );
    // No chain verified, so no verified chain expires.
    assert_eq!(
        value(&r, "probe_ssl_last_chain_expiry_timestamp_seconds", &[]),
        None
    );
}

#[test]
fn tls_at_connect() {
    let c = check(r#"{"tls": true}"#);
    let req = c
        .connect_request("mail.example:465")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(req.tls);
    assert_eq!(req.preferred_ip_protocol, Some(IpProtocol::Ip6));
    let mut p = peer("");
    let r = c.evaluate(Ok((&mut p, info(Some(tls_info(true))))));
    assert!(r.success);
    assert_eq!(
        value(&r, "probe_tls_version_info", &[("version", "TLS 1.3")]),
        Some(1.0)
    );
}

#[test]
fn a_failed_connect_reports_what_is_known() {
    let c = check("{}");
    let err = TcpError {
        remote_addr: Some("[::1]:25".into()),
        ..error(ErrorKind::Connect, "connection refused")
    };
    let r = c.evaluate::<&mut Script>(Err(err));
    assert!(!r.success);
    assert_eq!(
        r.message.as_deref(),
        Some("connect: connect: connection refused")
    );
    assert_eq!(value(&r, "probe_ip_protocol", &[]), Some(6.0));
    assert_eq!(value(&r, "probe_dns_lookup_time_seconds", &[]), Some(0.001));
    // Not connected: the conversation's flags are not reported.
    assert_eq!(value(&r, "probe_failed_due_to_regex", &[]), None);
}

#[test]
fn connect_request_follows_the_config() {
    let c = check(
        r#"{"preferred_ip_protocol": "ip4", "ip_protocol_fallback": false, "timeout_ms": 1500}"#,
    );
    let req = c
        .connect_request("[::1]:25")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(req.address, "[::1]:25");
    assert_eq!(req.preferred_ip_protocol, Some(IpProtocol::Ip4));
    assert!(!req.ip_protocol_fallback);
    assert_eq!(req.timeout_ms, Some(1500));
    assert!(!req.tls);
}

#[test]
fn targets_must_be_host_and_port() {
    let c = check("{}");
    for bad in ["mail.example", "::1:25", "[::1]", "host:port", ":25", ""] {
        assert!(c.connect_request(bad).is_err(), "{bad:?}");
    }
    for good in ["mail.example:25", "127.0.0.1:25", "[::1]:25"] {
        assert!(c.connect_request(good).is_ok(), "{good:?}");
    }
}

#[test]
fn bad_configs_are_refused_with_their_place() {
    let refused = |json: &str| Check::new(config(json)).err().unwrap_or_default();
    assert!(
        refused(r#"{"query_response": [{}, {"expect": "("}]}"#)
            .starts_with("query_response[1].expect: invalid regular expression")
    );
    assert!(
        refused(r#"{"query_response": [{"expect": "a", "expect_bytes": "b"}]}"#)
            .contains("mutually exclusive")
    );
    assert!(
        refused(
            r#"{"query_response": [{"send": "x", "labels": [{"name": "banner", "value": "v"}]}]}"#
        )
        .contains("no expect")
    );
    assert!(
        refused(
            r#"{"query_response": [{"expect": "x", "labels": [
                {"name": "banner", "value": "a"}, {"name": "banner", "value": "b"}]}]}"#
        )
        .contains("given twice")
    );
    assert!(refused(r#"{"timeout_ms": 0}"#).contains("timeout_ms"));
}

#[test]
fn keys_outside_the_contract_are_refused_by_parsing() {
    for json in [
        r#"{"source_ip_address": "10.0.0.1"}"#,
        r#"{"tls_config": {"insecure_skip_verify": true}}"#,
        r#"{"query_response": [{"expect": "x", "labels": [{"name": "anything", "value": "v"}]}]}"#,
        r#"{"preferred_ip_protocol": "ip5"}"#,
    ] {
        assert!(serde_json::from_str::<Config>(json).is_err(), "{json}");
    }
}

#[test]
fn every_label_name_parses_as_itself() {
    for name in LabelName::ALL {
        let json = format!("{:?}", name.as_str());
        let parsed: LabelName = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed, *name);
    }
    assert!(LabelName::ALL.len() <= 16, "the host allows 16 labels");
}

#[test]
fn every_sample_is_declared_with_its_labels() {
    let declared = families();
    let c = check(
        r#"{"tls": true, "query_response": [{
            "expect": "^(.*)$", "labels": [{"name": "banner", "value": "$1"}]
        }]}"#,
    );
    let mut p = peer("hello\n");
    let r = c.evaluate(Ok((&mut p, info(Some(tls_info(true))))));
    assert!(r.success, "{:?}", r.message);
    for s in &r.samples {
        let family = declared.iter().find(|f| f.name == s.name);
        let family = family.unwrap_or_else(|| panic!("{} is not declared", s.name));
        for l in &s.labels {
            assert!(family.labels.contains(&l.name), "{}: {}", s.name, l.name);
        }
    }
}
