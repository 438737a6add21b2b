use super::*;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey};
use wasmprobe_sdk::http::{HttpVersion, IpProtocol, PhaseTimings};

const SEED: [u8; 32] = [7; 32];

fn timings(rtt: f64) -> PhaseTimings {
    PhaseTimings {
        resolve: 0.0,
        connect: rtt / 4.0,
        tls: 0.0,
        processing: rtt / 2.0,
        transfer: rtt / 4.0,
    }
}

fn response(
    status: u16,
    body: &str,
    headers: Vec<(String, String)>,
) -> Result<Response, HttpError> {
    Ok(Response {
        status,
        version: HttpVersion::Http11,
        headers,
        body: body.as_bytes().to_vec(),
        body_truncated: false,
        content_length: None,
        wire_body_length: body.len() as u64,
        trailers: Vec::new(),
        redirects: 0,
        final_url: "http://127.0.0.1:9471/order".into(),
        remote_addr: "127.0.0.1:9471".into(),
        ip_protocol: IpProtocol::Ip4,
        timings: timings(0.1),
        tls: None,
    })
}

fn signed(body: &str, good: bool) -> Result<Response, HttpError> {
    let key = SigningKey::from_bytes(&SEED);
    let signed_over = if good {
        body.to_string()
    } else {
        format!("{body}x")
    };
    let sig = B64.encode(key.sign(signed_over.as_bytes()).to_bytes());
    response(200, body, vec![("X-Treaty-Signature".into(), sig)])
}

fn check(provenance: bool) -> Check {
    let key = SigningKey::from_bytes(&SEED).verifying_key();
    Check::new(Config {
        filled_pointer: Some("/filled".into()),
        provenance: provenance.then(|| Provenance {
            ed25519_public_key: Some(B64.encode(key.to_bytes())),
            signature_header: "x-treaty-signature".into(),
            digest_header: None,
        }),
        ..Config::default()
    })
    .unwrap_or_else(|e| unreachable!("{e}"))
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

fn timeout() -> Result<Response, HttpError> {
    Err(HttpError {
        kind: ErrorKind::Timeout,
        message: "deadline passed".into(),
        timings: timings(2.0),
        remote_addr: None,
        ip_protocol: None,
        tls: None,
        redirects: 0,
    })
}

#[test]
fn kpis_of_a_mixed_batch() {
    let results = vec![
        signed(r#"{"filled": true}"#, true),
        signed(r#"{"filled": true}"#, true),
        signed(r#"{"filled": true}"#, false),
        signed(r#"{"filled": false}"#, true),
        response(503, "busy", vec![]),
        timeout(),
    ];
    let r = check(true).evaluate(&results);
    assert_eq!(value(&r, "treaty_requests_total", &[]), Some(6.0));
    assert_eq!(value(&r, "treaty_filled_total", &[]), Some(3.0));
    assert_eq!(value(&r, "treaty_fill_rate", &[]), Some(0.5));
    assert_eq!(value(&r, "treaty_drop_rate", &[]), Some(0.5));
    assert_eq!(
        value(
            &r,
            "treaty_dropped_requests_total",
            &[("reason", "unfilled")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&r, "treaty_dropped_requests_total", &[("reason", "status")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &r,
            "treaty_dropped_requests_total",
            &[("reason", "timeout")]
        ),
        Some(1.0)
    );
    // 4 responses carried a body to verify; 3 signatures were good.
    assert_eq!(
        value(&r, "treaty_provenance_verified_total", &[]),
        Some(3.0)
    );
    assert_eq!(value(&r, "treaty_provenance_coverage", &[]), Some(0.75));
    assert_eq!(
        r.samples
            .iter()
            .filter(|s| s.name == "treaty_rtt_seconds")
            .count(),
        6
    );
    assert!(r.success, "no thresholds set");
}

#[test]
fn thresholds_fail_the_probe() {
    let c = Check::new(Config {
        min_fill_rate: 0.95,
        ..Config::default()
    })
    .unwrap_or_else(|e| unreachable!("{e}"));
    let r = c.evaluate(&[response(200, "", vec![]), response(500, "", vec![])]);
    assert!(!r.success);
    assert_eq!(r.message.as_deref(), Some("fill rate 0.500 is below 0.95"));
}

#[test]
fn digest_provenance() {
    let c = Check::new(Config {
        provenance: Some(Provenance {
            ed25519_public_key: None,
            signature_header: default_signature_header(),
            digest_header: Some("x-content-sha256".into()),
        }),
        ..Config::default()
    })
    .unwrap_or_else(|e| unreachable!("{e}"));
    let body = "{}";
    let good = hex::encode(Sha256::digest(body.as_bytes()));
    let r = c.evaluate(&[
        response(200, body, vec![("x-content-sha256".into(), good)]),
        response(200, body, vec![("x-content-sha256".into(), "00".into())]),
        response(200, body, vec![]),
        response(200, body, vec![]),
    ]);
    assert_eq!(value(&r, "treaty_provenance_coverage", &[]), Some(0.25));
}

#[test]
fn bad_provenance_config_is_refused() {
    let bad = |p: Provenance| {
        Check::new(Config {
            provenance: Some(p),
            ..Config::default()
        })
        .is_err()
    };
    assert!(bad(Provenance::default()));
    assert!(bad(Provenance {
        ed25519_public_key: Some("not base64!".into()),
        ..Provenance::default()
    }));
    assert!(bad(Provenance {
        ed25519_public_key: Some(B64.encode([1u8; 31])),
        ..Provenance::default()
    }));
}

#[test]
fn every_sample_is_declared() {
    let declared: Vec<String> = families().into_iter().map(|f| f.name).collect();
    let r = check(true).evaluate(&[signed(r#"{"filled": true}"#, true)]);
    for s in &r.samples {
        assert!(declared.contains(&s.name), "{}", s.name);
    }
}
