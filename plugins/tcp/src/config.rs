//! The probe's `config` table: blackbox_exporter's `tcp` module, keys and
//! defaults included, less what the host owns. TLS trust (CA, skip-verify,
//! client certificate, versions) lives on the probe's `tls` table, and the
//! source address is the host's business, so `source_ip_address` and every
//! `tls_config` key but `server_name` are refused rather than ignored.

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IpProtocol {
    Ip4,
    #[default]
    Ip6,
}

/// Declares the label names `probe_expect_info` may carry.
///
/// A plugin declares its families once, before any probe config exists,
/// and the host drops a sample whose label was not declared. So the names
/// a step may use are this fixed list (blackbox_exporter takes any name);
/// a config naming another is refused by the schema, before it runs.
macro_rules! label_names {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// A label name of `probe_expect_info`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
        pub enum LabelName {
            $(#[serde(rename = $name)] $variant),+
        }

        impl LabelName {
            pub const ALL: &[LabelName] = &[$(LabelName::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(LabelName::$variant => $name),+
                }
            }
        }
    };
}

label_names! {
    Banner => "banner",
    Build => "build",
    Comments => "comments",
    Hostname => "hostname",
    Os => "os",
    Product => "product",
    Protocol => "protocol",
    Release => "release",
    Server => "server",
    Service => "service",
    Software => "software",
    SshComments => "ssh_comments",
    SshVersion => "ssh_version",
    Step => "step",
    Vendor => "vendor",
    Version => "version",
}

/// One label of `probe_expect_info`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectLabel {
    pub name: LabelName,
    /// May use the groups of the step's `expect` (`${1}`, `${name}`).
    pub value: String,
}

/// One step of the conversation. Its parts run in blackbox_exporter's
/// order: `expect` (then `labels`), `expect_bytes`, `send`, `starttls`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Step {
    /// Regular expression; lines are read until one matches. Unanchored.
    pub expect: Option<String>,
    /// Exact bytes (the string's UTF-8) to read next; not with `expect`.
    pub expect_bytes: Option<String>,
    /// `probe_expect_info` labels, set when this step's `expect` matched.
    pub labels: Vec<ExpectLabel>,
    /// A line to send; `\n` is appended. May use `expect`'s groups.
    pub send: Option<String>,
    /// Upgrade the connection to TLS, with the probe's trust settings.
    pub starttls: bool,
}

/// Only the name to verify: trust settings belong to the probe's `tls`
/// table, where a plugin cannot loosen them.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// SNI and verification name; the target's host when absent. The
    /// probe's `tls.server_name` takes precedence.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub preferred_ip_protocol: IpProtocol,
    /// Use the other protocol when the preferred one has no address.
    pub ip_protocol_fallback: bool,
    /// The conversation, in order; empty means connect only.
    pub query_response: Vec<Step>,
    /// TLS as soon as the connection is up.
    pub tls: bool,
    pub tls_config: TlsConfig,
    /// Longest wait, in milliseconds, for the connection and for each
    /// read or handshake; the probe's timeout caps it.
    pub timeout_ms: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            preferred_ip_protocol: IpProtocol::Ip6,
            ip_protocol_fallback: true,
            query_response: Vec::new(),
            tls: false,
            tls_config: TlsConfig::default(),
            timeout_ms: None,
        }
    }
}
