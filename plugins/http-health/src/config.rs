//! The probe's `config` table: blackbox_exporter's http module options.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// A header condition.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub header: String,
    pub regexp: String,
    /// For `fail_if_header_not_matches`: a missing header passes.
    #[serde(default)]
    pub allow_missing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IpProtocol {
    Ip4,
    Ip6,
}

/// Content coding to ask for and decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Deflate,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Request method.
    pub method: String,
    pub headers: BTreeMap<String, String>,
    /// Request body.
    pub body: Option<String>,
    /// Accepted status codes; empty means any 2xx.
    pub valid_status_codes: Vec<u16>,
    /// Accepted versions as `HTTP/1.0`, `HTTP/1.1`, `HTTP/2.0`; empty
    /// means any.
    pub valid_http_versions: Vec<String>,
    pub fail_if_ssl: bool,
    pub fail_if_not_ssl: bool,
    pub fail_if_body_matches_regexp: Vec<String>,
    pub fail_if_body_not_matches_regexp: Vec<String>,
    pub fail_if_header_matches: Vec<HeaderMatch>,
    pub fail_if_header_not_matches: Vec<HeaderMatch>,
    pub follow_redirects: bool,
    /// Redirect hops followed before failing.
    pub max_redirects: u32,
    pub preferred_ip_protocol: IpProtocol,
    pub ip_protocol_fallback: bool,
    pub enable_http2: bool,
    pub compression: Option<Compression>,
    /// Body bytes read; more fails the probe (the host caps it too).
    pub body_size_limit: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            method: "GET".into(),
            headers: BTreeMap::new(),
            body: None,
            valid_status_codes: Vec::new(),
            valid_http_versions: Vec::new(),
            fail_if_ssl: false,
            fail_if_not_ssl: false,
            fail_if_body_matches_regexp: Vec::new(),
            fail_if_body_not_matches_regexp: Vec::new(),
            fail_if_header_matches: Vec::new(),
            fail_if_header_not_matches: Vec::new(),
            follow_redirects: true,
            max_redirects: 10,
            preferred_ip_protocol: IpProtocol::Ip6,
            ip_protocol_fallback: true,
            enable_http2: true,
            compression: None,
            body_size_limit: None,
        }
    }
}
