//! The families blackbox_exporter's probers share, so every plugin that
//! stands in for one reports them under the same names, HELP and labels,
//! and dashboards built for blackbox_exporter keep working whichever plugin
//! fills them: where the probe connected (`probe_dns_lookup_time_seconds`,
//! `probe_ip_protocol`, `probe_ip_addr_hash`) and what TLS it got
//! (`probe_ssl_*`, `probe_tls_version_info`).
//!
//! Each family has its own declaration function, so a plugin keeps its own
//! order of families. Where the bundled plugins have reported a piece
//! differently since their first release, the difference is a parameter
//! ([`Unreached`], [`TlsStyle`]) rather than a silent change of values.
//!
//! `probe_ip_addr_hash` is the CRC-32 of the address text (`127.0.0.1`,
//! `2001:db8::1`). blackbox_exporter hashes the address bytes with FNV-1a,
//! so the values differ from its own but change at the same moments.
//!
//! Out of scope: families of one prober only (HTTP phases, gRPC status,
//! DNS sections), and `probe_success` / `probe_duration_seconds`, which
//! the host reports for every probe.

use std::net::{IpAddr, SocketAddr};

use crate::Outcome;
use crate::family::{Family, FamilyExt, gauge};
use crate::http::TlsInfo;
use crate::wasmprobe::plugin::types::IpProtocol;

/// Longest label value the host keeps: a sample with a longer one is
/// dropped (and counted as rejected), so values from the peer are cut.
pub const MAX_LABEL_VALUE: usize = 1024;

pub fn dns_lookup_time_family() -> Family {
    gauge(
        "probe_dns_lookup_time_seconds",
        "Returns the time taken for probe dns lookup in seconds.",
    )
    .unit("seconds")
}

pub fn ip_protocol_family() -> Family {
    gauge(
        "probe_ip_protocol",
        "Specifies whether probe ip protocol is IP4 or IP6.",
    )
}

pub fn ip_addr_hash_family() -> Family {
    gauge(
        "probe_ip_addr_hash",
        "Specifies the hash of IP address. It's useful to detect if the IP address changes.",
    )
}

/// The three families blackbox_exporter's address choice registers, in
/// its order.
pub fn address_families() -> Vec<Family> {
    vec![
        dns_lookup_time_family(),
        ip_protocol_family(),
        ip_addr_hash_family(),
    ]
}

/// The TLS families a plugin declares for `style`: all four, less
/// `probe_ssl_last_chain_expiry_timestamp_seconds` where the style never
/// sets it (a declared family that never appears would only mislead).
pub fn tls_families(style: TlsStyle) -> Vec<Family> {
    let mut families = vec![gauge(
        "probe_ssl_earliest_cert_expiry",
        "Returns last SSL chain expiry in unixtime.",
    )];
    if style.last_chain_expiry != LastChainExpiry::Never {
        families.push(
            gauge(
                "probe_ssl_last_chain_expiry_timestamp_seconds",
                "Returns last SSL chain expiry in timestamp.",
            )
            .unit("seconds"),
        );
    }
    families.push(
        gauge(
            "probe_ssl_last_chain_info",
            "Contains SSL leaf certificate information.",
        )
        .labels(&[
            "fingerprint_sha256",
            "subject",
            "issuer",
            "subjectalternative",
        ]),
    );
    families.push(
        gauge(
            "probe_tls_version_info",
            "Returns the TLS version used or NaN when unknown.",
        )
        .labels(&["version"]),
    );
    families
}

pub fn set_dns_lookup_time(out: &mut Outcome, seconds: f64) {
    out.set("probe_dns_lookup_time_seconds", seconds);
}

/// What `probe_ip_protocol` and `probe_ip_addr_hash` show when no address
/// was reached (the name did not resolve, the allow-list refused it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreached {
    /// 0, as blackbox_exporter shows them: it registers both before it
    /// resolves.
    Zero,
    /// Absent: http-health's behaviour since its first release, kept so
    /// its series do not appear where they were missing.
    Omit,
}

/// `probe_ip_protocol` and `probe_ip_addr_hash` of `remote` (the host's
/// `ADDRESS:PORT`, or a bare address). The protocol is the one the host
/// reported, else the one the address shows.
pub fn set_address(
    out: &mut Outcome,
    remote: Option<&str>,
    protocol: Option<IpProtocol>,
    unreached: Unreached,
) {
    let ip = remote.and_then(ip_of);
    let protocol = protocol.or(ip.map(|ip| match ip {
        IpAddr::V4(_) => IpProtocol::Ip4,
        IpAddr::V6(_) => IpProtocol::Ip6,
    }));
    let protocol = match protocol {
        Some(IpProtocol::Ip4) => Some(4.0),
        Some(IpProtocol::Ip6) => Some(6.0),
        None => None,
    };
    // The address is hashed, not labelled: a change is visible without a
    // series per address.
    let hash = ip.map(ip_addr_hash);
    for (name, value) in [
        ("probe_ip_protocol", protocol),
        ("probe_ip_addr_hash", hash),
    ] {
        match (value, unreached) {
            (Some(v), _) => {
                out.set(name, v);
            }
            (None, Unreached::Zero) => {
                out.set(name, 0.0);
            }
            (None, Unreached::Omit) => {}
        }
    }
}

/// The value of `probe_ip_addr_hash` for `ip`: the CRC-32 of its text.
pub fn ip_addr_hash(ip: IpAddr) -> f64 {
    f64::from(crc32fast::hash(ip.to_string().as_bytes()))
}

/// The address of `ADDRESS:PORT` (`[v6]:PORT`), or of a bare address.
pub fn ip_of(addr: &str) -> Option<IpAddr> {
    addr.parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| addr.trim_matches(['[', ']']).parse::<IpAddr>())
        .ok()
}

/// When `probe_ssl_last_chain_expiry_timestamp_seconds` is set. The host
/// reports the chain as the server presented it, which stands in for
/// blackbox_exporter's verified chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastChainExpiry {
    /// Not reported: blackbox_exporter's grpc prober has no such family.
    Never,
    /// Only when the chain verified: without verification there is no
    /// verified chain (blackbox_exporter then reports year 1).
    Verified,
    /// Whenever a chain was presented (http-health since its first
    /// release).
    Always,
}

/// How a plugin reports the TLS families; the bundled plugins differ in
/// ways their users may already rely on, so each says which it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsStyle {
    pub last_chain_expiry: LastChainExpiry,
    /// Cut certificate text to [`MAX_LABEL_VALUE`] so the series is kept;
    /// without it, a longer subject makes the host drop the sample.
    pub cut_long_labels: bool,
}

/// The TLS families of a handshake, also one that failed to verify: an
/// expired or untrusted certificate is then visible, not only a failure.
pub fn set_tls(out: &mut Outcome, tls: &TlsInfo, style: TlsStyle) {
    if let Some(earliest) = tls.chain.iter().map(|c| c.not_after).min() {
        out.set("probe_ssl_earliest_cert_expiry", earliest as f64);
        let last_chain = match style.last_chain_expiry {
            LastChainExpiry::Never => false,
            LastChainExpiry::Verified => tls.verified,
            LastChainExpiry::Always => true,
        };
        if last_chain {
            out.set(
                "probe_ssl_last_chain_expiry_timestamp_seconds",
                earliest as f64,
            );
        }
    }
    let cut = |s| {
        if style.cut_long_labels {
            label_value(s)
        } else {
            s
        }
    };
    if let Some(leaf) = tls.chain.first() {
        let sans = leaf.subject_alt_names.join(",");
        out.push(
            "probe_ssl_last_chain_info",
            &[
                ("fingerprint_sha256", cut(&leaf.fingerprint_sha256)),
                ("subject", cut(&leaf.subject)),
                ("issuer", cut(&leaf.issuer)),
                ("subjectalternative", cut(&sans)),
            ],
            1.0,
        );
    }
    if !tls.version.is_empty() {
        out.push("probe_tls_version_info", &[("version", &tls.version)], 1.0);
    }
}

/// `s` cut at a character boundary to what the host keeps as a label.
pub fn label_value(s: &str) -> &str {
    if s.len() <= MAX_LABEL_VALUE {
        return s;
    }
    let mut cut = MAX_LABEL_VALUE;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Certificate;

    const CUT: TlsStyle = TlsStyle {
        last_chain_expiry: LastChainExpiry::Verified,
        cut_long_labels: true,
    };

    fn tls(verified: bool, subject: &str) -> TlsInfo {
        TlsInfo {
            version: "TLS 1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
            chain: vec![
                Certificate {
                    subject: subject.into(),
                    issuer: "CN=test ca".into(),
                    subject_alt_names: vec!["a.example".into(), "127.0.0.1".into()],
                    not_after: 1_900_000_000,
                    fingerprint_sha256: "ab12".into(),
                },
                Certificate {
                    subject: "CN=test ca".into(),
                    issuer: "CN=test ca".into(),
                    subject_alt_names: Vec::new(),
                    not_after: 1_800_000_000,
                    fingerprint_sha256: "cd34".into(),
                },
            ],
            verified,
            verify_error: None,
        }
    }

    fn names(families: &[Family]) -> Vec<&str> {
        families.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn address_forms() {
        assert_eq!(ip_of("127.0.0.1:25"), "127.0.0.1".parse().ok());
        assert_eq!(ip_of("[::1]:25"), "::1".parse().ok());
        assert_eq!(ip_of("::1"), "::1".parse().ok());
        assert_eq!(ip_of("mail.example:25"), None);
    }

    #[test]
    fn unknown_address_reports_zeros() {
        let mut out = Outcome::new();
        set_address(&mut out, None, None, Unreached::Zero);
        assert_eq!(out.value("probe_ip_protocol", &[]), Some(0.0));
        assert_eq!(out.value("probe_ip_addr_hash", &[]), Some(0.0));
    }

    #[test]
    fn unknown_address_may_be_left_out() {
        let mut out = Outcome::new();
        set_address(&mut out, None, None, Unreached::Omit);
        assert!(out.samples().is_empty());
    }

    #[test]
    fn protocol_from_the_address_when_not_reported() {
        let mut out = Outcome::new();
        set_address(&mut out, Some("[2001:db8::1]:443"), None, Unreached::Zero);
        assert_eq!(out.value("probe_ip_protocol", &[]), Some(6.0));
        let hash = f64::from(crc32fast::hash(b"2001:db8::1"));
        assert_eq!(out.value("probe_ip_addr_hash", &[]), Some(hash));
    }

    #[test]
    fn reported_protocol_and_address_text_hash() {
        let mut out = Outcome::new();
        set_address(
            &mut out,
            Some("127.0.0.1:8080"),
            Some(IpProtocol::Ip4),
            Unreached::Omit,
        );
        assert_eq!(out.value("probe_ip_protocol", &[]), Some(4.0));
        let hash = f64::from(crc32fast::hash(b"127.0.0.1"));
        assert_eq!(out.value("probe_ip_addr_hash", &[]), Some(hash));
    }

    #[test]
    fn long_label_values_are_cut_on_a_char_boundary() {
        let long = "é".repeat(600);
        let cut = label_value(&long);
        assert!(cut.len() <= MAX_LABEL_VALUE);
        assert_eq!(cut.len(), 1024);
        assert_eq!(label_value("short"), "short");
    }

    #[test]
    fn tls_families_follow_the_style() {
        assert_eq!(
            names(&tls_families(CUT)),
            [
                "probe_ssl_earliest_cert_expiry",
                "probe_ssl_last_chain_expiry_timestamp_seconds",
                "probe_ssl_last_chain_info",
                "probe_tls_version_info",
            ]
        );
        let never = TlsStyle {
            last_chain_expiry: LastChainExpiry::Never,
            ..CUT
        };
        assert_eq!(
            names(&tls_families(never)),
            [
                "probe_ssl_earliest_cert_expiry",
                "probe_ssl_last_chain_info",
                "probe_tls_version_info",
            ]
        );
        assert_eq!(
            names(&address_families()),
            [
                "probe_dns_lookup_time_seconds",
                "probe_ip_protocol",
                "probe_ip_addr_hash",
            ]
        );
    }

    #[test]
    fn tls_facts_of_a_verified_chain() {
        let mut out = Outcome::new();
        set_tls(&mut out, &tls(true, "CN=a.example"), CUT);
        assert_eq!(
            out.value("probe_ssl_earliest_cert_expiry", &[]),
            Some(1_800_000_000.0)
        );
        assert_eq!(
            out.value("probe_ssl_last_chain_expiry_timestamp_seconds", &[]),
            Some(1_800_000_000.0)
        );
        assert_eq!(
            out.value("probe_tls_version_info", &[("version", "TLS 1.3")]),
            Some(1.0)
        );
        assert_eq!(
            out.value(
                "probe_ssl_last_chain_info",
                &[
                    ("fingerprint_sha256", "ab12"),
                    ("subject", "CN=a.example"),
                    ("issuer", "CN=test ca"),
                    ("subjectalternative", "a.example,127.0.0.1"),
                ]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn last_chain_expiry_by_style() {
        let expiry = |verified, last_chain_expiry| {
            let mut out = Outcome::new();
            let style = TlsStyle {
                last_chain_expiry,
                ..CUT
            };
            set_tls(&mut out, &tls(verified, "CN=a"), style);
            out.value("probe_ssl_last_chain_expiry_timestamp_seconds", &[])
        };
        assert_eq!(expiry(false, LastChainExpiry::Verified), None);
        assert_eq!(expiry(true, LastChainExpiry::Never), None);
        assert_eq!(
            expiry(false, LastChainExpiry::Always),
            Some(1_800_000_000.0)
        );
    }

    #[test]
    fn long_certificate_text_is_cut_only_when_asked() {
        let subject = format!("CN={}", "x".repeat(2000));
        let info = |style| {
            let mut out = Outcome::new();
            set_tls(&mut out, &tls(true, &subject), style);
            out.samples()
                .iter()
                .find(|s| s.name == "probe_ssl_last_chain_info")
                .and_then(|s| s.labels.iter().find(|l| l.name == "subject"))
                .map(|l| l.value.len())
        };
        assert_eq!(info(CUT), Some(MAX_LABEL_VALUE));
        let keep = TlsStyle {
            cut_long_labels: false,
            ..CUT
        };
        assert_eq!(info(keep), Some(subject.len()));
    }
}
