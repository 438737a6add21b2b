//! The `dns` prober to the dns plugin, whose `config` keys are
//! plugins/dns/src/config.rs: blackbox_exporter's names and defaults, less
//! the source address and DNS over TLS, which the plugin does not do.
//! `query_name` is required there as in blackbox_exporter, so a module
//! without one is not imported.

use yaml_serde::Value;

use super::read::Ctx;
use super::{Section, array, flag, ip_protocol};
use crate::import::lines::KeyPath;

/// The rules of a record validator, as both name them.
const VALIDATOR_RULES: [&str; 4] = [
    "fail_if_matches_regexp",
    "fail_if_all_match_regexp",
    "fail_if_not_matches_regexp",
    "fail_if_none_matches_regexp",
];

/// The section, or why the module cannot be imported.
pub(super) fn convert(ctx: &mut Ctx<'_>, path: &KeyPath, value: &Value) -> Result<Section, String> {
    let mut s = Section::default();
    for (key, p, v) in ctx.entries(path, value) {
        let c = &mut s.config;
        match key.as_str() {
            "query_name" => {
                if let Some(name) = ctx.string(&p, v).filter(|n| !n.is_empty()) {
                    c.insert(key, name.into());
                }
            }
            "query_type" | "query_class" => {
                let default = if key == "query_type" { "ANY" } else { "IN" };
                if let Some(t) = ctx
                    .string(&p, v)
                    .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case(default))
                {
                    c.insert(key, t.into());
                }
            }
            "transport_protocol" => match ctx.string(&p, v).as_deref() {
                None | Some("" | "udp") => {}
                Some("tcp") => {
                    c.insert(key, "tcp".into());
                }
                Some(other) => {
                    ctx.not_carried(&p, format!("{other:?} is not udp or tcp"));
                }
            },
            "preferred_ip_protocol" => ip_protocol(ctx, &p, v, c),
            "ip_protocol_fallback" | "recursion_desired" => flag(ctx, &p, v, &key, true, c),
            "valid_rcodes" => match ctx.strings(&p, v) {
                Some(codes) if codes == ["NOERROR"] => {}
                Some(codes) if codes.is_empty() => ctx.note(
                    &p,
                    "an empty list is not written: the dns plugin then accepts NOERROR",
                ),
                Some(codes) => {
                    c.insert(key, array(codes));
                }
                None => {}
            },
            "validate_answer_rrs" | "validate_authority_rrs" | "validate_additional_rrs" => {
                let mut rules = toml::Table::new();
                for (rule, rp, rv) in ctx.entries(&p, v) {
                    if !VALIDATOR_RULES.contains(&rule.as_str()) {
                        ctx.unknown(&rp);
                        continue;
                    }
                    if let Some(list) = ctx.regexes(&rp, rv).filter(|l| !l.is_empty()) {
                        rules.insert(rule, array(list));
                    }
                }
                if !rules.is_empty() {
                    c.insert(key, toml::Value::Table(rules));
                }
            }
            "source_ip_address" => {
                if ctx.string(&p, v).is_some_and(|a| !a.is_empty()) {
                    ctx.not_carried(
                        &p,
                        "the host picks the source address of DNS queries; the dns plugin has no source_ip_address",
                    );
                }
            }
            "dns_over_tls" => {
                if ctx.boolean(&p, v) == Some(true) {
                    ctx.not_carried(
                        &p,
                        "the dns plugin does not speak DNS over TLS: the probe queries in plain DNS (transport_protocol)",
                    );
                }
            }
            "tls_config" => {
                if v.as_mapping().is_some_and(|m| !m.is_empty()) {
                    ctx.not_carried(
                        &p,
                        "TLS settings are for DNS over TLS, which the dns plugin does not speak",
                    );
                }
            }
            _ => ctx.unknown(&p),
        }
    }
    if s.config.contains_key("query_name") {
        Ok(s)
    } else {
        Err(
            "it has no dns.query_name, which the dns plugin requires (as blackbox_exporter does)"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::import::blackbox::tests::convert_section;

    #[test]
    fn queries_and_validators_carry_over() {
        let (s, report) = convert_section(
            "dns",
            "query_name: www.prometheus.io
query_type: A
query_class: CH
transport_protocol: tcp
preferred_ip_protocol: ip4
ip_protocol_fallback: false
recursion_desired: false
valid_rcodes: [NOERROR, NXDOMAIN]
validate_answer_rrs:
  fail_if_matches_regexp: [\".*127.0.0.1\"]
  fail_if_all_match_regexp: [\".*127.0.0.1\"]
  fail_if_not_matches_regexp: [\"www.prometheus.io.\\t300\\tIN\\tA\\t127.0.0.1\"]
  fail_if_none_matches_regexp: [\"127.0.0.1\"]
validate_authority_rrs:
  fail_if_matches_regexp: [\".*127.0.0.1\"]
validate_additional_rrs:
  fail_if_matches_regexp: [\".*127.0.0.1\"]
dns_over_tls: false
",
        );
        assert!(report.ends_with("everything carried over"), "{report}");
        let expected: toml::Table = toml::from_str(
            r#"query_name = "www.prometheus.io"
query_type = "A"
query_class = "CH"
transport_protocol = "tcp"
preferred_ip_protocol = "ip4"
ip_protocol_fallback = false
recursion_desired = false
valid_rcodes = ["NOERROR", "NXDOMAIN"]
[validate_answer_rrs]
fail_if_matches_regexp = [".*127.0.0.1"]
fail_if_all_match_regexp = [".*127.0.0.1"]
fail_if_not_matches_regexp = ["www.prometheus.io.\t300\tIN\tA\t127.0.0.1"]
fail_if_none_matches_regexp = ["127.0.0.1"]
[validate_authority_rrs]
fail_if_matches_regexp = [".*127.0.0.1"]
[validate_additional_rrs]
fail_if_matches_regexp = [".*127.0.0.1"]
"#,
        )
        .unwrap_or_default();
        assert_eq!(s.config, expected);
    }

    #[test]
    fn what_the_plugin_does_not_do_is_reported() {
        let (s, report) = convert_section(
            "dns",
            "query_name: example.com
query_type: ANY
valid_rcodes: [NOERROR]
dns_over_tls: true
tls_config:
  ca_file: /etc/ca.pem
source_ip_address: 10.0.0.1
validate_answer_rrs:
  fail_if_something: [x]
",
        );
        for line in [
            "b.yml:8: m.dns.dns_over_tls: not carried over: the dns plugin does not speak DNS over TLS",
            "b.yml:9: m.dns.tls_config: not carried over: TLS settings are for DNS over TLS",
            "b.yml:11: m.dns.source_ip_address: not carried over",
            "b.yml:13: m.dns.validate_answer_rrs.fail_if_something: unknown key",
        ] {
            assert!(report.contains(line), "{line}\n---\n{report}");
        }
        assert_eq!(s.config.len(), 1, "{:?}", s.config);
    }
}
