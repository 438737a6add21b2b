//! The `tcp` prober to the tcp plugin, whose `config` keys are
//! plugins/tcp/src/config.rs: blackbox_exporter's, less the source address
//! (the host's business) and with trust on the probe's `tls` table.
//!
//! `query_response` steps keep their keys. Two plugin rules shape them:
//! `expect_bytes` stands in a step without `expect` (a step holding both
//! is split in two, which runs the same parts in the same order), and
//! `labels` names come from a fixed list (the plugin declares its label
//! names before any config exists).

use yaml_serde::Value;

use super::read::Ctx;
use super::{Section, flag, ip_protocol, tls};
use crate::import::lines::KeyPath;

/// The label names the tcp plugin declares for `probe_expect_info`
/// (`label_names!` in plugins/tcp/src/config.rs).
pub(super) const LABEL_NAMES: [&str; 16] = [
    "banner",
    "build",
    "comments",
    "hostname",
    "os",
    "product",
    "protocol",
    "release",
    "server",
    "service",
    "software",
    "ssh_comments",
    "ssh_version",
    "step",
    "vendor",
    "version",
];

pub(super) fn convert(ctx: &mut Ctx<'_>, path: &KeyPath, value: &Value) -> Section {
    let mut s = Section::default();
    for (key, p, v) in ctx.entries(path, value) {
        let c = &mut s.config;
        match key.as_str() {
            "preferred_ip_protocol" => ip_protocol(ctx, &p, v, c),
            "ip_protocol_fallback" => flag(ctx, &p, v, &key, true, c),
            "tls" => flag(ctx, &p, v, &key, false, c),
            "tls_config" => tls::tls_config(ctx, &p, v, &mut s.tls),
            "query_response" => {
                let steps = steps(ctx, &p, v);
                if !steps.is_empty() {
                    c.insert(key, toml::Value::Array(steps));
                }
            }
            "source_ip_address" => {
                if ctx.string(&p, v).is_some_and(|a| !a.is_empty()) {
                    ctx.not_carried(
                        &p,
                        "the host picks the source address of TCP connections; the tcp plugin has no source_ip_address",
                    );
                }
            }
            _ => ctx.unknown(&p),
        }
    }
    s
}

/// The conversation, as the plugin's `Step`s.
fn steps(ctx: &mut Ctx<'_>, path: &KeyPath, value: &Value) -> Vec<toml::Value> {
    let mut out = Vec::new();
    for (p, item) in ctx.items(path, value) {
        let mut step = toml::Table::new();
        let mut labels_at = None;
        for (key, kp, kv) in ctx.entries(&p, item) {
            match key.as_str() {
                "expect" => {
                    if let Some(re) = ctx.string(&kp, kv) {
                        ctx.regex(&kp, &re);
                        step.insert(key, re.into());
                    }
                }
                "send" | "expect_bytes" => {
                    if let Some(text) = ctx.string(&kp, kv) {
                        step.insert(key, text.into());
                    }
                }
                "starttls" => flag(ctx, &kp, kv, &key, false, &mut step),
                "labels" => {
                    let labels = labels(ctx, &kp, kv);
                    if !labels.is_empty() {
                        step.insert(key, toml::Value::Array(labels));
                        labels_at = Some(kp);
                    }
                }
                _ => ctx.unknown(&kp),
            }
        }
        if let Some(at) = labels_at
            && !step.contains_key("expect")
        {
            step.remove("labels");
            ctx.not_carried(
                &at,
                "labels need an `expect` in the same step (blackbox_exporter ignores them without one)",
            );
        }
        if step.contains_key("expect") && step.contains_key("expect_bytes") {
            // expect (and its labels) first, then the rest: the order the
            // plugin runs a step's parts in.
            let mut first = toml::Table::new();
            for k in ["expect", "labels"] {
                if let Some(v) = step.remove(k) {
                    first.insert(k.into(), v);
                }
            }
            out.push(toml::Value::Table(first));
        }
        if !step.is_empty() {
            out.push(toml::Value::Table(step));
        }
    }
    out
}

/// `[{ name, value }]`, names from [`LABEL_NAMES`].
fn labels(ctx: &mut Ctx<'_>, path: &KeyPath, value: &Value) -> Vec<toml::Value> {
    let mut out = Vec::new();
    for (p, item) in ctx.items(path, value) {
        let mut name = None;
        let mut text = None;
        for (key, kp, kv) in ctx.entries(&p, item) {
            match key.as_str() {
                "name" => name = ctx.string(&kp, kv).map(|n| (n, kp)),
                "value" => text = ctx.string(&kp, kv),
                _ => ctx.unknown(&kp),
            }
        }
        match (name, text) {
            (Some((n, _)), Some(t)) if LABEL_NAMES.contains(&n.as_str()) => {
                let mut label = toml::Table::new();
                label.insert("name".into(), n.into());
                label.insert("value".into(), t.into());
                out.push(toml::Value::Table(label));
            }
            (Some((n, at)), _) if !LABEL_NAMES.contains(&n.as_str()) => ctx.not_carried(
                &at,
                format!(
                    "label name {n:?} is not one the tcp plugin declares ({})",
                    LABEL_NAMES.join(", ")
                ),
            ),
            _ => ctx.not_carried(&p, "a label needs `name` and `value`"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::blackbox::tests::convert_section;

    #[test]
    fn conversations_carry_over_step_by_step() {
        let (s, report) = convert_section(
            "tcp",
            "preferred_ip_protocol: ip4
ip_protocol_fallback: false
tls: true
tls_config:
  server_name: mail.example
  ca_file: /etc/ca.pem
query_response:
  - expect: \"^220 ([^ ]+) ESMTP (.+)$\"
    labels:
      - name: server
        value: \"${1}\"
  - send: \"EHLO prober\\r\"
  - expect: \"^250-STARTTLS\"
  - starttls: true
  - expect_bytes: \"OK\"
  - expect: \"^banner\"
    expect_bytes: \"xyz\"
    send: \"QUIT\"
",
        );
        assert!(report.ends_with("everything carried over"), "{report}");
        let expected: toml::Table = toml::from_str(
            r#"preferred_ip_protocol = "ip4"
ip_protocol_fallback = false
tls = true
query_response = [
  { expect = "^220 ([^ ]+) ESMTP (.+)$", labels = [{ name = "server", value = "${1}" }] },
  { send = "EHLO prober\r" },
  { expect = "^250-STARTTLS" },
  { starttls = true },
  { expect_bytes = "OK" },
  { expect = "^banner" },
  { expect_bytes = "xyz", send = "QUIT" },
]
"#,
        )
        .unwrap_or_default();
        assert_eq!(s.config, expected);
        assert_eq!(s.tls.server_name.as_deref(), Some("mail.example"));
        assert_eq!(s.tls.ca_file.as_deref(), Some("/etc/ca.pem"));
    }

    #[test]
    fn what_the_plugin_refuses_is_reported() {
        let (s, report) = convert_section(
            "tcp",
            "source_ip_address: 10.0.0.1
query_response:
  - expect: \"^SSH\"
    labels:
      - name: anything_goes
        value: x
  - send: hi
    labels:
      - name: banner
        value: y
  - expect: \"(\"
    nope: 1
",
        );
        for line in [
            "b.yml:5: m.tcp.source_ip_address: not carried over: the host picks the source address",
            "b.yml:9: m.tcp.query_response[0].labels[0].name: not carried over: label name \"anything_goes\" is not one the tcp plugin declares",
            "b.yml:12: m.tcp.query_response[1].labels: not carried over: labels need an `expect`",
            "b.yml:15: m.tcp.query_response[2].expect: not carried over: regular expression \"(\" does not compile",
            "b.yml:16: m.tcp.query_response[2].nope: unknown key: not carried over",
        ] {
            assert!(report.contains(line), "{line}\n---\n{report}");
        }
        let steps = s.config["query_response"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(steps.len(), 3);
        assert!(steps[1].get("labels").is_none());
        assert_eq!(steps[2]["expect"].as_str(), Some("("), "written as is");
    }

    #[test]
    fn the_label_list_is_the_plugins() {
        let source = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/tcp/src/config.rs"),
        )
        .unwrap_or_default();
        let declared: Vec<&str> = source
            .lines()
            .filter_map(|l| l.trim().split_once(" => \""))
            .filter_map(|(_, rest)| rest.split_once('"').map(|(name, _)| name))
            .collect();
        assert_eq!(declared, LABEL_NAMES, "plugins/tcp/src/config.rs changed");
    }
}
