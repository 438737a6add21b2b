use super::*;
use wasmprobe_sdk::icmp::{EchoReply, ErrorKind, SocketMode};

fn result(sent: u32, rtts: &[f64]) -> EchoResult {
    EchoResult {
        address: "10.0.0.2".into(),
        ip_protocol: IpProtocol::Ip4,
        resolve: 0.0,
        setup: 0.0001,
        sent,
        replies: rtts
            .iter()
            .enumerate()
            .map(|(i, r)| EchoReply {
                sequence: i as u16,
                rtt: *r,
                hop_limit: Some(64),
            })
            .collect(),
        mode: SocketMode::Raw,
        send_error: None,
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

#[test]
fn statistics() {
    let (min, avg, max, sd) = stats(&[0.001, 0.002, 0.003]).unwrap_or_default();
    assert_eq!((min, max), (0.001, 0.003));
    assert!((avg - 0.002).abs() < 1e-12);
    assert!((sd - 0.000816496580927726).abs() < 1e-12);
    assert_eq!(stats(&[]), None);
}

#[test]
fn all_replies_succeed_with_statistics() {
    let r = Config::default().evaluate(Ok(result(3, &[0.001, 0.002, 0.003])));
    assert!(r.success, "{:?}", r.message);
    assert_eq!(value(&r, "probe_icmp_packet_loss_ratio", &[]), Some(0.0));
    assert_eq!(value(&r, "probe_icmp_packets_sent_total", &[]), Some(3.0));
    assert_eq!(
        value(&r, "probe_icmp_packets_received_total", &[]),
        Some(3.0)
    );
    assert_eq!(value(&r, "probe_icmp_reply_hop_limit", &[]), Some(64.0));
    assert_eq!(value(&r, "probe_ip_protocol", &[]), Some(4.0));
    assert!(value(&r, "probe_icmp_duration_seconds", &[("phase", "rtt")]).is_some());
    assert_eq!(
        r.samples
            .iter()
            .filter(|s| s.name == "probe_icmp_rtt_seconds")
            .count(),
        3
    );
}

#[test]
fn total_loss_fails_clearly() {
    let r = Config::default().evaluate(Ok(result(4, &[])));
    assert!(!r.success);
    assert_eq!(value(&r, "probe_icmp_packet_loss_ratio", &[]), Some(1.0));
    assert_eq!(value(&r, "probe_icmp_rtt_avg_seconds", &[]), None);
    assert_eq!(
        r.message.as_deref(),
        Some("4 of 4 echo requests to 10.0.0.2 got no reply")
    );
}

#[test]
fn the_success_rule_is_configurable() {
    let half = Config {
        success_if_loss_below: 0.5,
        ..Config::default()
    };
    assert!(
        !half.evaluate(Ok(result(4, &[0.001, 0.001]))).success,
        "50% loss is not below 50%"
    );
    assert!(half.evaluate(Ok(result(4, &[0.001, 0.001, 0.001]))).success);
    assert!(Config::default().evaluate(Ok(result(4, &[0.001]))).success);
    let fast = Config {
        max_rtt_avg_seconds: Some(0.01),
        ..Config::default()
    };
    assert!(!fast.evaluate(Ok(result(2, &[0.02, 0.03]))).success);
}

#[test]
fn errors_fail_with_their_kind() {
    let e = IcmpError {
        kind: ErrorKind::Unavailable,
        message: "no ICMP socket".into(),
        resolve: 0.0,
    };
    let r = Config::default().evaluate(Err(e));
    assert!(!r.success);
    assert!(r.message.is_some_and(|m| m.contains("Unavailable")));
}

#[test]
fn every_sample_is_declared() {
    let declared: Vec<String> = families().into_iter().map(|f| f.name).collect();
    let r = Config::default().evaluate(Ok(result(3, &[0.001])));
    for s in &r.samples {
        assert!(declared.contains(&s.name), "{}", s.name);
    }
}

#[test]
fn config_bounds() {
    assert!(
        Config {
            count: 0,
            ..Config::default()
        }
        .validate()
        .is_err()
    );
    assert!(
        Config {
            payload_size: 4,
            ..Config::default()
        }
        .validate()
        .is_err()
    );
    assert!(Config::default().validate().is_ok());
}
