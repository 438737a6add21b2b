//! The probe's `config` table: blackbox_exporter's `grpc` module, keys and
//! defaults included, less what the host owns. TLS trust (CA, skip-verify,
//! client certificate, versions) lives on the probe's `tls` table, so every
//! `tls_config` key is refused rather than ignored. `server_name` too:
//! the http capability takes the TLS name from the URL or the probe, never
//! from the request, so it belongs on the probe's `tls` table.

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IpProtocol {
    Ip4,
    #[default]
    Ip6,
}

/// blackbox_exporter's TLS settings: none is taken here. Trust and the
/// name to verify belong on the probe's `tls` table.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Not supported: set `server_name` on the probe's `tls` table.
    // The schema refuses it, so `wasmprobe check` stops at this key; it is
    // parsed all the same so a run that skipped the check explains itself.
    #[schemars(schema_with = "refused")]
    pub server_name: Option<String>,
}

/// A schema no value passes.
fn refused(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::Schema::from(false)
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The service whose health is asked; empty asks for the server as a
    /// whole.
    pub service: String,
    /// TLS, offering HTTP/2 through ALPN; otherwise plaintext HTTP/2 with
    /// prior knowledge (h2c), as gRPC clients speak it.
    pub tls: bool,
    pub tls_config: TlsConfig,
    pub preferred_ip_protocol: IpProtocol,
    /// Use the other protocol when the preferred one has no address.
    pub ip_protocol_fallback: bool,
    /// Longest wait for the answer, in milliseconds; the probe's timeout
    /// caps it.
    pub timeout_ms: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service: String::new(),
            tls: false,
            tls_config: TlsConfig::default(),
            preferred_ip_protocol: IpProtocol::Ip6,
            ip_protocol_fallback: true,
            timeout_ms: None,
        }
    }
}
