//! The dns plugin on the dns capability against a local authoritative
//! server whose zone the test knows (`dns_server.rs`): counts, rcodes,
//! record validation, the SOA serial, truncation over UDP and the whole
//! answer over TCP, a server that never answers, and a server outside the
//! allow-list that no query reaches.

use std::time::Duration;

use crate::dns_server::{self, SERIAL};
use crate::harness::{Engine, Scrape, promtool_check};

const WAIT: Duration = Duration::from_secs(60);

fn probe(name: &str, server: &str, allow: &str, config: &str) -> String {
    format!(
        "[probes.{name}]\nplugin = \"dns\"\nschedule = \"* * * * * *\"\ntarget = \"{server}\"\nallow = [\"dns://{allow}\"]\ntimeout = \"3s\"\n[probes.{name}.config]\npreferred_ip_protocol = \"ip4\"\n{config}\n"
    )
}

#[test]
fn answers_are_counted_validated_and_judged_by_rcode() {
    let server = dns_server::start();
    let addr = server.addr.to_string();
    let e = Engine::new()
        .raw(&probe(
            "ok",
            &addr,
            &addr,
            "query_name = \"ok.example\"\nquery_type = \"A\"\n[probes.ok.config.validate_answer_rrs]\nfail_if_not_matches_regexp = ['^ok\\.example\\.\\t300\\tIN\\tA\\t127\\.0\\.0\\.[12]$']\nfail_if_none_matches_regexp = ['\\t127\\.0\\.0\\.1$']\n",
        ))
        .raw(&probe(
            "unwanted",
            &addr,
            &addr,
            "query_name = \"ok.example\"\nquery_type = \"A\"\n[probes.unwanted.config.validate_answer_rrs]\nfail_if_matches_regexp = ['127\\.0\\.0\\.2$']\n",
        ))
        .raw(&probe(
            "missing",
            &addr,
            &addr,
            "query_name = \"missing.example\"\nquery_type = \"A\"\n",
        ))
        .raw(&probe(
            "nxdomain_ok",
            &addr,
            &addr,
            "query_name = \"missing.example\"\nquery_type = \"A\"\nvalid_rcodes = [\"NXDOMAIN\"]\n",
        ))
        .raw(&probe(
            "soa",
            &addr,
            &addr,
            "query_name = \"example\"\nquery_type = \"SOA\"\n",
        ))
        .raw(&probe(
            "big_udp",
            &addr,
            &addr,
            "query_name = \"big.example\"\nquery_type = \"TXT\"\n",
        ))
        .raw(&probe(
            "big_tcp",
            &addr,
            &addr,
            "query_name = \"big.example\"\nquery_type = \"TXT\"\ntransport_protocol = \"tcp\"\n",
        ))
        .raw(&probe(
            "slow",
            &addr,
            &addr,
            "query_name = \"slow.example\"\nquery_type = \"A\"\n",
        ))
        .start();
    let probes = [
        "ok",
        "unwanted",
        "missing",
        "nxdomain_ok",
        "soa",
        "big_udp",
        "big_tcp",
        "slow",
    ];
    let s = e.wait_for("a run of each", WAIT, |s| {
        probes
            .iter()
            .all(|p| s.get("probe_success", &[("probe", p)]).is_some())
    });
    let v = |name: &str, p: &str| s.value(name, &[("probe", p)]);
    assert_eq!(v("probe_success", "ok"), 1.0, "{}", s.text);
    assert_eq!(v("probe_dns_answer_rrs", "ok"), 2.0);
    assert_eq!(v("probe_dns_authority_rrs", "ok"), 1.0);
    assert_eq!(v("probe_dns_additional_rrs", "ok"), 1.0);
    assert_eq!(v("probe_dns_query_succeeded", "ok"), 1.0);
    assert_eq!(v("probe_success", "unwanted"), 0.0, "an answer matched");
    assert_eq!(v("probe_success", "missing"), 0.0, "NXDOMAIN is not valid");
    assert_eq!(v("probe_dns_authority_rrs", "missing"), 1.0);
    assert_eq!(v("probe_success", "nxdomain_ok"), 1.0);
    assert_eq!(v("probe_success", "soa"), 1.0);
    assert_eq!(v("probe_dns_serial", "soa"), f64::from(SERIAL));
    assert_eq!(v("probe_dns_answer_rrs", "big_udp"), 0.0, "cut over UDP");
    assert_eq!(v("probe_dns_answer_rrs", "big_tcp"), 40.0, "whole over TCP");
    assert_eq!(v("probe_success", "big_tcp"), 1.0);
    assert_eq!(v("probe_success", "slow"), 0.0);
    assert_eq!(v("probe_dns_query_succeeded", "slow"), 0.0);
    assert!(
        s.get(
            "probe_dns_duration_seconds",
            &[("probe", "big_tcp"), ("phase", "connect")]
        )
        .is_some()
    );
    promtool_check(&s.text);
    let _ = Scrape::parse(&s.text);
}

/// A probe allowed to ask one server is pointed (by its own config, here
/// its target) at another on the same host: the query is denied before any
/// packet leaves, and the other server receives nothing.
#[test]
fn a_server_outside_the_allow_list_receives_no_query() {
    let allowed = dns_server::start();
    let other = dns_server::start();
    let e = Engine::new()
        .raw(&format!(
            "[probes.sneaky]\nplugin = \"dns\"\nschedule = \"* * * * * *\"\ntarget = \"{allowed}\"\nallow = [\"dns://{allowed}\"]\n[probes.sneaky.config]\nquery_name = \"ok.example\"\nquery_type = \"A\"\n",
            allowed = allowed.addr
        ))
        .start();
    let s = e.wait_for("a run", WAIT, |s| {
        s.get("probe_success", &[("probe", "sneaky")]).is_some()
    });
    assert_eq!(s.value("probe_success", &[("probe", "sneaky")]), 1.0);
    // The same engine cannot be talked into another server: the on-demand
    // run with another target is refused before it runs.
    let reply = crate::harness::get(
        &e.url(&format!("/probe?module=sneaky&target={}", other.addr)),
        None,
    );
    assert_ne!(reply.status, 200, "{}", reply.body);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(other.queries(), 0, "a query reached the other server");
}
