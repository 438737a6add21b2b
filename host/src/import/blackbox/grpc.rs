//! The `grpc` prober to the grpc plugin, whose `config` keys are
//! plugins/grpc/src/config.rs. Its `tls_config` goes to the probe's `tls`
//! table, `server_name` included: the plugin refuses every `tls_config`
//! key, since the host verifies the name the probe's `tls` table gives.

use yaml_serde::Value;

use super::read::Ctx;
use super::{Section, flag, ip_protocol, tls};
use crate::import::lines::KeyPath;

pub(super) fn convert(ctx: &mut Ctx<'_>, path: &KeyPath, value: &Value) -> Section {
    let mut s = Section::default();
    for (key, p, v) in ctx.entries(path, value) {
        let c = &mut s.config;
        match key.as_str() {
            "service" => {
                if let Some(service) = ctx.string(&p, v).filter(|x| !x.is_empty()) {
                    c.insert(key, service.into());
                }
            }
            "tls" => flag(ctx, &p, v, &key, false, c),
            "tls_config" => tls::tls_config(ctx, &p, v, &mut s.tls),
            "preferred_ip_protocol" => ip_protocol(ctx, &p, v, c),
            "ip_protocol_fallback" => flag(ctx, &p, v, &key, true, c),
            _ => ctx.unknown(&p),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use crate::import::blackbox::tests::convert_section;

    #[test]
    fn health_checks_carry_over_with_trust_on_the_probe() {
        let (s, report) = convert_section(
            "grpc",
            "service: orders.v1.Orders\ntls: true\ntls_config:\n  server_name: orders.internal\n  ca_file: /etc/ca.pem\npreferred_ip_protocol: ip4\nip_protocol_fallback: false\nfoo: bar\n",
        );
        let expected: toml::Table = toml::from_str(
            "service = \"orders.v1.Orders\"\ntls = true\npreferred_ip_protocol = \"ip4\"\nip_protocol_fallback = false\n",
        )
        .unwrap_or_default();
        assert_eq!(s.config, expected);
        assert_eq!(s.tls.server_name.as_deref(), Some("orders.internal"));
        assert_eq!(s.tls.ca_file.as_deref(), Some("/etc/ca.pem"));
        assert!(
            report.contains("b.yml:12: m.grpc.foo: unknown key"),
            "{report}"
        );
        assert_eq!(report.lines().count(), 2, "{report}");
    }
}
