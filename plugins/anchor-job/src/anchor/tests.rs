use super::*;
use crate::merkle;
use wasmprobe_sdk::http::{HttpVersion, IpProtocol, PhaseTimings};

fn response(status: u16, body: &str) -> Result<Response, HttpError> {
    Ok(Response {
        status,
        version: HttpVersion::Http11,
        headers: vec![],
        body: body.as_bytes().to_vec(),
        body_truncated: false,
        content_length: None,
        wire_body_length: body.len() as u64,
        trailers: Vec::new(),
        redirects: 0,
        final_url: "http://127.0.0.1:9472/anchor".into(),
        remote_addr: "127.0.0.1:9472".into(),
        ip_protocol: IpProtocol::Ip4,
        timings: PhaseTimings {
            resolve: 0.0,
            connect: 0.0,
            tls: 0.0,
            processing: 0.0,
            transfer: 0.0,
        },
        tls: None,
    })
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
fn mock_receipts_are_deterministic_and_failures_injectable() {
    let c = Config {
        mock_fail_every: Some(3),
        ..Config::default()
    };
    let root = merkle::root(&c.generate_batch("p", 1)).unwrap_or_default();
    assert_eq!(c.mock_anchor(&root, 1), Ok(mock_receipt(&root, 1)));
    assert_eq!(c.mock_anchor(&root, 1).map(|r| r.anchor_id.len()), Ok(32));
    assert_eq!(c.mock_anchor(&root, 3), Err("ledger_unavailable"));
    let always = Config {
        mock_failure_ratio: 1.0,
        ..Config::default()
    };
    assert!(always.mock_anchor(&root, 1).is_err());
}

#[test]
fn http_ledger_needs_url_and_credential() {
    let c = Config {
        ledger: Ledger::Http,
        ..Config::default()
    };
    assert!(
        c.unconfigured(Some("t"))
            .is_some_and(|m| m.contains("ledger_url"))
    );
    let c = Config {
        ledger_url: Some("http://127.0.0.1:9472/anchor".into()),
        ..c
    };
    assert!(
        c.unconfigured(None)
            .is_some_and(|m| m.contains("secrets.ledger_token"))
    );
    assert_eq!(c.unconfigured(Some("t")), None);
    let req = c.ledger_request(&[0; 32], 2, "t0ken");
    assert!(req.is_some_and(|r| {
        r.headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "Bearer t0ken")
    }));
}

#[test]
fn ledger_answers_are_validated() {
    let root = [7u8; 32];
    let good = format!(
        r#"{{"root":"{}","anchor_id":"abc","height":4}}"#,
        hex::encode(root)
    );
    assert!(parse_ledger(response(200, &good), &root).is_ok());
    assert_eq!(
        parse_ledger(response(401, ""), &root).map_err(|e| e.0),
        Err("unauthorized")
    );
    assert_eq!(
        parse_ledger(response(500, ""), &root).map_err(|e| e.0),
        Err("ledger_error")
    );
    assert_eq!(
        parse_ledger(response(200, "nope"), &root).map_err(|e| e.0),
        Err("invalid_receipt")
    );
    let other = good.replace(&hex::encode(root), &hex::encode([8u8; 32]));
    assert_eq!(
        parse_ledger(response(200, &other), &root).map_err(|e| e.0),
        Err("invalid_receipt")
    );
}

#[test]
fn batches_from_json() {
    let b = parse_batch(response(200, r#"["a", {"id": 2}]"#));
    assert_eq!(b, Ok(vec![b"a".to_vec(), br#"{"id":2}"#.to_vec()]));
    assert!(parse_batch(response(200, "{}")).is_err());
    assert!(parse_batch(response(404, "[]")).is_err());
}

#[test]
fn reports() {
    let r = report(&Ended::Unconfigured("no credential".into()), Some(1.0), 0.0);
    assert!(!r.success);
    assert_eq!(value(&r, "anchor_configured", &[]), Some(0.0));
    assert_eq!(
        value(&r, "anchor_last_success_timestamp_seconds", &[]),
        Some(1.0)
    );
    assert_eq!(value(&r, "anchor_attempts_total", &[]), None);

    let receipt = mock_receipt(&[0; 32], 1);
    let r = report(&Ended::Anchored { batch: 64, receipt }, Some(2.0), 0.01);
    assert!(r.success);
    assert_eq!(value(&r, "anchor_success_total", &[]), Some(1.0));
    assert_eq!(value(&r, "anchor_batch_size", &[]), Some(64.0));
    assert_eq!(
        value(&r, "anchor_failures_total", &[("reason", "ledger_error")]),
        Some(0.0)
    );

    let r = report(
        &Ended::Failed {
            batch: Some(64),
            reason: "ledger_unavailable",
            message: "injected".into(),
        },
        None,
        0.01,
    );
    assert!(!r.success);
    assert_eq!(
        value(
            &r,
            "anchor_failures_total",
            &[("reason", "ledger_unavailable")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&r, "anchor_success_total", &[]), Some(0.0));
    assert_eq!(r.message.as_deref(), Some("ledger_unavailable: injected"));
}

#[test]
fn every_sample_is_declared() {
    let declared: Vec<String> = families().into_iter().map(|f| f.name).collect();
    let r = report(
        &Ended::Failed {
            batch: Some(1),
            reason: "empty_batch",
            message: String::new(),
        },
        Some(1.0),
        0.1,
    );
    for s in &r.samples {
        assert!(declared.contains(&s.name), "{}", s.name);
    }
}
