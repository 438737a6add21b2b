//! The `icmp` prober to the icmp plugin, whose `config` keys are the
//! `Config` of plugins/icmp/src/check.rs.
//!
//! blackbox_exporter sends one echo request and waits for its reply until
//! the module's deadline; the plugin sends a burst (3 by default) and waits
//! a second for each. So every imported probe gets `count = 1` and
//! `timeout_ms` of the whole timeout (the host still ends the wait at the
//! run's deadline, which a scrape timeout shortens as it did before).

use std::time::Duration;

use yaml_serde::Value;

use super::read::Ctx;
use super::{Section, flag, ip_protocol};
use crate::import::lines::KeyPath;

pub(super) fn convert(
    ctx: &mut Ctx<'_>,
    path: &KeyPath,
    value: &Value,
    timeout: Duration,
) -> Section {
    let mut s = Section::default();
    s.config.insert("count".into(), toml::Value::Integer(1));
    let wait = i64::try_from(timeout.as_millis())
        .unwrap_or(i64::MAX)
        .min(i64::from(u32::MAX));
    s.config
        .insert("timeout_ms".into(), toml::Value::Integer(wait));
    for (key, p, v) in ctx.entries(path, value) {
        let c = &mut s.config;
        match key.as_str() {
            "preferred_ip_protocol" => ip_protocol(ctx, &p, v, c),
            "ip_protocol_fallback" => flag(ctx, &p, v, &key, true, c),
            "source_ip_address" => {
                let Some(text) = ctx.string(&p, v).filter(|a| !a.is_empty()) else {
                    continue;
                };
                match text.parse::<std::net::IpAddr>() {
                    Ok(ip) => {
                        c.insert("source_ip_address".into(), ip.to_string().into());
                        ctx.note(
                            &p,
                            format!("{ip} is added to [engine] icmp_sources, the addresses echoes may be sent from"),
                        );
                        s.icmp_source = Some(ip.to_string());
                    }
                    Err(_) => ctx.not_carried(
                        &p,
                        format!("{text:?} is not an IP address (blackbox_exporter refuses it too)"),
                    ),
                }
            }
            "dont_fragment" => {
                if ctx.boolean(&p, v) == Some(true) {
                    ctx.not_carried(&p, "the icmp plugin cannot set the DF bit");
                }
            }
            "payload_size" => match ctx.uint(&p, v, u64::from(u32::MAX)) {
                Some(n) if (8..=65_000).contains(&n) => {
                    c.insert(key, toml::Value::Integer(n as i64));
                }
                Some(n) => ctx.not_carried(
                    &p,
                    format!("{n} bytes: the icmp plugin sends 8 to 65000 (default 56)"),
                ),
                None => {}
            },
            "ttl" => match ctx.uint(&p, v, 255) {
                // 0: the system's default, as in blackbox_exporter.
                None | Some(0) => {}
                Some(n) => {
                    c.insert(key, toml::Value::Integer(n as i64));
                }
            },
            _ => ctx.unknown(&p),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use crate::import::blackbox::tests::convert_section;

    #[test]
    fn one_echo_until_the_deadline_as_blackbox_sends_it() {
        let (s, report) = convert_section(
            "icmp",
            "preferred_ip_protocol: ip4\nip_protocol_fallback: false\nsource_ip_address: 192.0.2.7\npayload_size: 100\nttl: 5\ndont_fragment: false\n",
        );
        let expected: toml::Table = toml::from_str(
            "count = 1\ntimeout_ms = 5000\npreferred_ip_protocol = \"ip4\"\nip_protocol_fallback = false\nsource_ip_address = \"192.0.2.7\"\npayload_size = 100\nttl = 5\n",
        )
        .unwrap_or_default();
        assert_eq!(s.config, expected);
        assert_eq!(s.icmp_source.as_deref(), Some("192.0.2.7"));
        assert!(report.contains("b.yml:7: m.icmp.source_ip_address: note: 192.0.2.7 is added to [engine] icmp_sources"), "{report}");
        assert!(report.ends_with("everything carried over"), "{report}");
    }

    #[test]
    fn what_the_plugin_cannot_do_is_reported() {
        let (s, report) = convert_section(
            "icmp",
            "dont_fragment: true\npayload_size: 4\nttl: 300\nsource_ip_address: gateway.local\n",
        );
        for line in [
            "b.yml:5: m.icmp.dont_fragment: not carried over: the icmp plugin cannot set the DF bit",
            "b.yml:6: m.icmp.payload_size: not carried over: 4 bytes",
            "b.yml:7: m.icmp.ttl: not carried over: 300 is above 255",
            "b.yml:8: m.icmp.source_ip_address: not carried over: \"gateway.local\" is not an IP address",
        ] {
            assert!(report.contains(line), "{line}\n---\n{report}");
        }
        assert_eq!(
            s.config.len(),
            2,
            "count and timeout_ms only: {:?}",
            s.config
        );
    }
}
