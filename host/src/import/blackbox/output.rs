//! The probes.toml an import writes: a comment header naming the source,
//! the `[engine]` keys the probes need, then one probe per module in the
//! source's order, each under a comment with its module's line.
//!
//! Values go through the `toml` serializer, never string formatting, so
//! regular expressions, header values and names are quoted and escaped
//! correctly whatever they hold.

use std::collections::BTreeMap;

use serde::Serialize;

/// A probe's `tls` table; only keys that differ from the defaults.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub(super) struct Tls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) insecure_skip_verify: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) server_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) min_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) key_file: Option<String>,
}

impl Tls {
    pub(super) fn is_empty(&self) -> bool {
        *self == Tls::default()
    }
}

/// One `[probes.NAME]` table. Field order is the order written.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Probe {
    pub(super) plugin: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) proxy_url: Option<String>,
    pub(super) allow: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tls: Option<Tls>,
    #[serde(skip_serializing_if = "toml::Table::is_empty")]
    pub(super) config: toml::Table,
    #[serde(skip_serializing_if = "toml::Table::is_empty")]
    pub(super) secrets: toml::Table,
}

/// A probe with where it came from, for its comment.
#[derive(Debug, Clone)]
pub(super) struct Written {
    pub(super) name: String,
    pub(super) module: String,
    pub(super) line: Option<usize>,
    pub(super) probe: Probe,
}

#[derive(Serialize)]
struct Engine<'a> {
    plugin_dirs: [&'a str; 1],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    icmp_sources: Vec<String>,
}

#[derive(Serialize)]
struct EngineDoc<'a> {
    engine: Engine<'a>,
}

#[derive(Serialize)]
struct ProbeDoc<'a> {
    probes: BTreeMap<&'a str, &'a Probe>,
}

/// The whole document.
pub(super) fn document(
    source: &str,
    plugin_dir: &str,
    icmp_sources: &[String],
    probes: &[Written],
) -> Result<String, toml::ser::Error> {
    // A comment ends at a line break: one in a file name would let the
    // rest of the name become TOML.
    let source: String = source
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    let mut out = format!(
        "# Imported from the blackbox_exporter config {source} by `wasmprobe import blackbox`.\n\
         # Each module is a probe without a schedule: Prometheus scrapes\n\
         # /probe?module=NAME&target=... as it did blackbox_exporter. What was not\n\
         # carried over is in the import report, not in this file.\n\n"
    );
    out.push_str(&toml::to_string(&EngineDoc {
        engine: Engine {
            plugin_dirs: [plugin_dir],
            icmp_sources: icmp_sources.to_vec(),
        },
    })?);
    for w in probes {
        out.push('\n');
        let from = match w.line {
            Some(line) => format!("{source}:{line}"),
            None => source.to_string(),
        };
        out.push_str(&format!("# {from}: module {:?}\n", w.module));
        out.push_str(&toml::to_string(&ProbeDoc {
            probes: BTreeMap::from([(w.name.as_str(), &w.probe)]),
        })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_written_in_order_with_quoting_done_by_toml() {
        let mut config = toml::Table::new();
        config.insert(
            "fail_if_body_not_matches_regexp".into(),
            toml::Value::Array(vec!["^ok\\s\"quoted\"\t$".into()]),
        );
        let mut headers = toml::Table::new();
        headers.insert("Host".into(), "example.com".into());
        config.insert("headers".into(), toml::Value::Table(headers));
        let probe = |plugin, config| Probe {
            proxy_url: None,
            plugin,
            timeout: Some("5s".into()),
            allow: vec!["http://127.0.0.1:*".into()],
            tls: Some(Tls {
                ca_file: Some("/etc/ca.pem".into()),
                ..Tls::default()
            }),
            config,
            secrets: toml::Table::new(),
        };
        let written = vec![
            Written {
                name: "z_first".into(),
                module: "z first".into(),
                line: Some(2),
                probe: probe("http-health", config),
            },
            Written {
                name: "a.second".into(),
                module: "a.second".into(),
                line: Some(9),
                probe: probe("tcp", toml::Table::new()),
            },
        ];
        let text = document("b.yml", "/plugins", &["10.0.0.1".into()], &written)
            .unwrap_or_else(|e| panic!("{e}"));
        let z = text.find("[probes.z_first]").unwrap_or(usize::MAX);
        let a = text.find("[probes.\"a.second\"]").unwrap_or(0);
        assert!(z < a, "source order, dotted names quoted:\n{text}");
        assert!(text.contains("# b.yml:2: module \"z first\"\n[probes.z_first]\nplugin = \"http-health\"\ntimeout = \"5s\"\n"), "{text}");
        assert!(!text.contains("\n[probes]\n"), "{text}");
        // It reads back as written.
        let back: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let re = back["probes"]["z_first"]["config"]["fail_if_body_not_matches_regexp"][0].as_str();
        assert_eq!(re, Some("^ok\\s\"quoted\"\t$"));
        assert_eq!(back["engine"]["icmp_sources"][0].as_str(), Some("10.0.0.1"));
        assert_eq!(
            back["probes"]["a.second"]["tls"]["ca_file"].as_str(),
            Some("/etc/ca.pem")
        );
    }
}
