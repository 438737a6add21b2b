//! treaty-kpis against the demo partner simulator: the KPIs it reports
//! match the partner's configured truth.

use std::time::Duration;

use wasmprobe::demo::partner::PartnerConfig;

use crate::harness::{Engine, Scrape, get};
use crate::targets;

const WAIT: Duration = Duration::from_secs(90);

fn treaty_probe(name: &str, url: &str, key: &str, extra: &str) -> String {
    format!(
        "[probes.{name}]\nplugin = \"treaty-kpis\"\nschedule = \"*/2 * * * * *\"\ntarget = \"{url}\"\ntimeout = \"8s\"\n\
         [probes.{name}.config]\nrequests = 20\nconcurrency = 4\nfilled_pointer = \"/filled\"\n{extra}\n\
         [probes.{name}.config.provenance]\ned25519_public_key = \"{key}\"\n"
    )
}

fn v(s: &Scrape, name: &str, probe: &str) -> f64 {
    s.value(name, &[("probe", probe)])
}

#[test]
fn kpis_match_the_partners_truth() {
    let truth = PartnerConfig {
        fill_rate: 0.8,
        latency: Duration::from_millis(20),
        bad_signature_share: 0.25,
        ..PartnerConfig::default()
    };
    let key = truth.public_key();
    let partner = targets::partner(truth);
    let e = Engine::new()
        .raw(&treaty_probe("partner", &partner.url("/order"), &key, ""))
        .start();
    let s = e.wait_for("a treaty run", WAIT, |s| {
        s.get("treaty_fill_rate", &[("probe", "partner")]).is_some()
    });
    let one = 1.0 / 20.0 + 1e-9;
    let fill = v(&s, "treaty_fill_rate", "partner");
    let drop = v(&s, "treaty_drop_rate", "partner");
    let coverage = v(&s, "treaty_provenance_coverage", "partner");
    println!(
        "partner truth fill 0.80 coverage 0.75; measured fill {fill} drop {drop} coverage {coverage}"
    );
    assert!((fill - 0.8).abs() <= one, "{}", s.text);
    assert!((drop - 0.2).abs() <= one);
    assert!(
        (coverage - 0.75).abs() <= one,
        "bad signatures lower coverage"
    );
    let requests = v(&s, "treaty_requests_total", "partner");
    assert_eq!(v(&s, "treaty_rtt_seconds_count", "partner"), requests);
    assert_eq!(
        s.value(
            "treaty_dropped_requests_total",
            &[("probe", "partner"), ("reason", "unfilled")]
        ),
        requests - v(&s, "treaty_filled_total", "partner")
    );
    // 20 ms of latency: every RTT lands above the 10 ms bucket.
    assert_eq!(
        s.value(
            "treaty_rtt_seconds_bucket",
            &[("probe", "partner"), ("le", "0.01")]
        ),
        0.0
    );
}

#[test]
fn a_hanging_partner_yields_drops_within_the_deadline() {
    let truth = PartnerConfig {
        fill_rate: 1.0,
        latency: Duration::from_millis(5),
        bad_signature_share: 0.0,
        hang_share: 0.5,
        ..PartnerConfig::default()
    };
    let key = truth.public_key();
    let partner = targets::partner(truth);
    let e = Engine::new()
        .raw(&treaty_probe(
            "slow",
            &partner.url("/order"),
            &key,
            "timeout_ms = 500",
        ))
        .start();
    let s = e.wait_for("a treaty run", WAIT, |s| {
        s.get("treaty_fill_rate", &[("probe", "slow")]).is_some()
    });
    let timeouts = s.value(
        "treaty_dropped_requests_total",
        &[("probe", "slow"), ("reason", "timeout")],
    );
    assert!((timeouts - 10.0).abs() <= 1.0, "{}", s.text);
    assert!((v(&s, "treaty_fill_rate", "slow") - 0.5).abs() <= 0.05 + 1e-9);
    let d = v(&s, "probe_duration_seconds", "slow");
    println!("hanging partner: run of 20 requests (10 hang) took {d:.3}s with 500 ms per request");
    assert!(d < 8.0, "the run ended within its deadline");
    assert_eq!(get(&e.url("/healthz"), None).status, 200);
}
