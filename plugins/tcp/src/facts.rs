//! Samples describing where the probe connected and what TLS it got,
//! shaped as blackbox_exporter's shared helpers shape them (its address
//! choice and TLS state), so dashboards built for it keep working.

use std::net::{IpAddr, SocketAddr};

use wasmprobe_sdk::Outcome;
use wasmprobe_sdk::tcp::{IpProtocol, TlsInfo};

/// Longest label value the host keeps; a longer one would drop the sample.
const MAX_LABEL_VALUE: usize = 1024;

/// `probe_dns_lookup_time_seconds`, `probe_ip_protocol` and
/// `probe_ip_addr_hash`. blackbox_exporter registers all three before it
/// resolves, so a failed resolution still shows them, at 0.
pub(crate) fn address(
    out: &mut Outcome,
    resolve: f64,
    remote: Option<&str>,
    protocol: Option<IpProtocol>,
) {
    let ip = remote.and_then(ip_of);
    let protocol = protocol.or(ip.map(|ip| match ip {
        IpAddr::V4(_) => IpProtocol::Ip4,
        IpAddr::V6(_) => IpProtocol::Ip6,
    }));
    out.set("probe_dns_lookup_time_seconds", resolve)
        .set(
            "probe_ip_protocol",
            match protocol {
                Some(IpProtocol::Ip4) => 4.0,
                Some(IpProtocol::Ip6) => 6.0,
                None => 0.0,
            },
        )
        // The address is hashed, not labelled: a change is visible without
        // a series per address. Same hash as the other bundled plugins.
        .set(
            "probe_ip_addr_hash",
            ip.map_or(0.0, |ip| {
                f64::from(crc32fast::hash(ip.to_string().as_bytes()))
            }),
        );
}

/// The address of `ADDRESS:PORT` (or of a bare address).
fn ip_of(addr: &str) -> Option<IpAddr> {
    addr.parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| addr.trim_matches(['[', ']']).parse::<IpAddr>())
        .ok()
}

/// TLS samples of the last handshake, even one that failed to verify: an
/// expired or untrusted certificate is then visible, not only a failure.
pub(crate) fn tls(out: &mut Outcome, tls: &TlsInfo) {
    if let Some(earliest) = tls.chain.iter().map(|c| c.not_after).min() {
        out.set("probe_ssl_earliest_cert_expiry", earliest as f64);
        // The expiry of the chain that verified: without verification there
        // is none (blackbox_exporter then reports year 1), so none is set.
        // The host reports the chain as presented, which stands in for it.
        if tls.verified {
            out.set(
                "probe_ssl_last_chain_expiry_timestamp_seconds",
                earliest as f64,
            );
        }
    }
    if let Some(leaf) = tls.chain.first() {
        let sans = leaf.subject_alt_names.join(",");
        out.push(
            "probe_ssl_last_chain_info",
            &[
                ("fingerprint_sha256", label_value(&leaf.fingerprint_sha256)),
                ("subject", label_value(&leaf.subject)),
                ("issuer", label_value(&leaf.issuer)),
                ("subjectalternative", label_value(&sans)),
            ],
            1.0,
        );
    }
    if !tls.version.is_empty() {
        out.push("probe_tls_version_info", &[("version", &tls.version)], 1.0);
    }
}

/// `s` cut at a character boundary to what the host keeps as a label.
pub(crate) fn label_value(s: &str) -> &str {
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
        address(&mut out, 0.25, None, None);
        assert_eq!(out.value("probe_dns_lookup_time_seconds", &[]), Some(0.25));
        assert_eq!(out.value("probe_ip_protocol", &[]), Some(0.0));
        assert_eq!(out.value("probe_ip_addr_hash", &[]), Some(0.0));
    }

    #[test]
    fn protocol_from_the_address_when_not_reported() {
        let mut out = Outcome::new();
        address(&mut out, 0.0, Some("[2001:db8::1]:443"), None);
        assert_eq!(out.value("probe_ip_protocol", &[]), Some(6.0));
        let hash = f64::from(crc32fast::hash(b"2001:db8::1"));
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
}
