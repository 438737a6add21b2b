//! The probe's `config` table: blackbox_exporter's `dns` module, keys and
//! defaults included, less what the host owns (source address, DNS over
//! TLS), plus `dnssec` and `timeout_ms`. `query_name` is the one required
//! key, as in blackbox_exporter.

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IpProtocol {
    Ip4,
    #[default]
    Ip6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
}

/// Regular expressions checked against each record of one section, in its
/// text form (`name<TAB>ttl<TAB>class<TAB>type<TAB>data`, as `dig` and
/// blackbox_exporter print it). Unanchored.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RrValidator {
    /// Fail when any record matches any of these.
    pub fail_if_matches_regexp: Vec<String>,
    /// Fail unless every record matches every one of these (an empty
    /// section passes). The name says otherwise; this is what
    /// blackbox_exporter does, and configs written for it rely on it.
    pub fail_if_all_match_regexp: Vec<String>,
    /// Fail when any record does not match one of these, or when the
    /// section is empty.
    pub fail_if_not_matches_regexp: Vec<String>,
    /// Fail unless at least one record matches one of these (an empty
    /// section fails).
    pub fail_if_none_matches_regexp: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The name to ask about.
    pub query_name: String,
    /// `A`, `AAAA`, `MX`, `SOA`, `TXT`, ... or `TYPE<n>`.
    #[serde(default = "any")]
    pub query_type: String,
    /// `IN`, `CH`, `HS`, `NONE`, `ANY` or `CLASS<n>`.
    #[serde(default = "internet")]
    pub query_class: String,
    #[serde(default)]
    pub transport_protocol: Transport,
    /// For a server given by name: resolve this protocol first.
    #[serde(default)]
    pub preferred_ip_protocol: IpProtocol,
    /// Use the other protocol when the preferred one has no address.
    #[serde(default = "yes")]
    pub ip_protocol_fallback: bool,
    /// Set the RD flag: ask the server to recurse.
    #[serde(default = "yes")]
    pub recursion_desired: bool,
    /// Set the DNSSEC OK bit (with EDNS). Not a blackbox_exporter key.
    #[serde(default)]
    pub dnssec: bool,
    /// Accepted response codes; `NOERROR` when absent.
    #[serde(default)]
    pub valid_rcodes: Option<Vec<String>>,
    #[serde(default)]
    pub validate_answer_rrs: RrValidator,
    #[serde(default)]
    pub validate_authority_rrs: RrValidator,
    #[serde(default)]
    pub validate_additional_rrs: RrValidator,
    /// Longest wait for the answer, in milliseconds; the probe's timeout
    /// caps it.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

fn any() -> String {
    "ANY".into()
}

fn internet() -> String {
    "IN".into()
}

fn yes() -> bool {
    true
}
