//! The allow-list: which `scheme://host:port` a probe may reach.
//!
//! Fail-closed: an empty list admits nothing. A rule names a host either by
//! DNS name or by address (`127.0.0.1`, `[::1]`, a CIDR such as
//! `10.0.0.0/8`). Checking happens twice:
//!
//! 1. before resolution, on the URL as parsed by the WHATWG rules of the
//!    `url` crate (which already folds case, decimal/octal/hex IPv4 and
//!    IDNA), so no spelling of a host reaches a different rule;
//! 2. after resolution, on every address: an address is admitted when a rule
//!    names the host the URL named, or when a rule's network contains the
//!    address. The caller then connects only to admitted addresses and never
//!    resolves again, so a DNS answer that changes between check and connect
//!    cannot redirect the connection.
//!
//! IPv4-mapped IPv6 addresses are compared as the IPv4 address they map to.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

/// One allow-list entry as written in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AllowRule {
    text: String,
    scheme: String,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Lowercase, without a trailing dot.
    Name(String),
    /// `*.example.org`: any name under `example.org` (not the name itself).
    Suffix(String),
    Net(IpNet),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    Any,
    Exact(u16),
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "dns" => Some(53),
        _ => None,
    }
}

/// Schemes without ports: a rule for them admits any port.
fn portless(scheme: &str) -> bool {
    scheme == "icmp"
}

impl TryFrom<String> for AllowRule {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bad = |why: &str| format!("allow entry {text:?} {why}; write scheme://host[:port]");
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("has no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme.is_empty()
            || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return Err(bad("has an invalid scheme"));
        }
        // A `/` is only valid as a CIDR prefix length, which `parse_host`
        // checks; anything that looks like a path then fails there.
        if rest.contains(['?', '#', '@']) {
            return Err(bad("may not hold a query, fragment or user"));
        }
        let (host_text, port_text) = if let Some(inner) = rest.strip_prefix('[') {
            let (inside, after) = inner
                .split_once(']')
                .ok_or_else(|| bad("has an unclosed `[`"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("has text after `]`"))?,
                ),
            };
            (inside, port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                Some(_) => return Err(bad("has an IPv6 address outside `[...]`")),
                None => (rest, None),
            }
        };
        let host = parse_host(host_text).map_err(|why| bad(&why))?;
        let port = match port_text {
            Some("*") => PortPattern::Any,
            Some(p) => PortPattern::Exact(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| bad("has an invalid port"))?,
            ),
            None if portless(&scheme) => PortPattern::Any,
            None => PortPattern::Exact(
                default_port(&scheme).ok_or_else(|| bad("needs a port for this scheme"))?,
            ),
        };
        Ok(AllowRule {
            text,
            scheme,
            host,
            port,
        })
    }
}

fn parse_host(text: &str) -> Result<HostPattern, String> {
    if text.is_empty() {
        return Err("has no host".into());
    }
    if text.contains('/') {
        let net: IpNet = text
            .parse()
            .map_err(|_| format!("has an invalid network {text:?}"))?;
        return Ok(HostPattern::Net(canonical_net(net.trunc())));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(HostPattern::Net(IpNet::from(ip.to_canonical())));
    }
    let (wild, name) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !valid || name.parse::<IpAddr>().is_ok() {
        return Err(format!("has an invalid host {text:?}"));
    }
    Ok(if wild {
        HostPattern::Suffix(name)
    } else {
        HostPattern::Name(name)
    })
}

fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => {
                IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net)
            }
            _ => net,
        },
        IpNet::V4(_) => net,
    }
}

impl AllowRule {
    /// Whether everything this rule admits could be inside `cap`: the
    /// scheme and port fit a cap rule, and the host is the same name or a
    /// network inside the cap's. A name under a network cap passes here;
    /// its addresses are checked against the cap at every call.
    pub fn within(&self, cap: &AllowList) -> bool {
        cap.rules.iter().any(|c| {
            let port = match (c.port, self.port) {
                (PortPattern::Any, _) => true,
                (PortPattern::Exact(a), PortPattern::Exact(b)) => a == b,
                (PortPattern::Exact(_), PortPattern::Any) => false,
            };
            let host = match (&c.host, &self.host) {
                (HostPattern::Name(a), HostPattern::Name(b)) => a == b,
                (HostPattern::Suffix(a), HostPattern::Name(b)) => under(b, a),
                (HostPattern::Suffix(a), HostPattern::Suffix(b)) => b == a || under(b, a),
                (HostPattern::Net(a), HostPattern::Net(b)) => a.contains(b),
                (HostPattern::Net(_), HostPattern::Name(_) | HostPattern::Suffix(_)) => true,
                (HostPattern::Name(_) | HostPattern::Suffix(_), _) => false,
            };
            c.scheme == self.scheme && port && host
        })
    }

    /// Before resolution: a named host passes only when the rule names it
    /// (or a `*.` rule covers it), so no name is ever looked up that the
    /// list does not name: the lookup itself would carry data out. An
    /// address must be in the rule's network. `networks_admit_names` is
    /// for an operator's ceiling, whose networks bound the addresses a
    /// name (already admitted by the probe's own list) resolves to.
    fn may_admit(&self, host: &DestHost, networks_admit_names: bool) -> bool {
        match (&self.host, host) {
            (HostPattern::Name(n), DestHost::Name(d)) => n == d,
            (HostPattern::Suffix(s), DestHost::Name(d)) => under(d, s),
            (HostPattern::Net(_), DestHost::Name(_)) => networks_admit_names,
            (HostPattern::Net(net), DestHost::Ip(ip)) => net.contains(ip),
            (HostPattern::Name(_) | HostPattern::Suffix(_), DestHost::Ip(_)) => false,
        }
    }
}

/// Whether `name` is a name under `domain` (`a.b.example` under `example`).
fn under(name: &str, domain: &str) -> bool {
    name.len() > domain.len() + 1
        && name.ends_with(domain)
        && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A host as a request names it, after URL normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestHost {
    Name(String),
    Ip(IpAddr),
}

impl DestHost {
    /// Reads a host as it appears in a URL (`[::1]` bracketed) or bare.
    pub fn parse(host: &str) -> Self {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => DestHost::Ip(ip.to_canonical()),
            Err(_) => DestHost::Name(bare.trim_end_matches('.').to_ascii_lowercase()),
        }
    }
}

impl fmt::Display for DestHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestHost::Name(n) => f.write_str(n),
            DestHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            DestHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Where a request wants to go, before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub scheme: String,
    pub host: DestHost,
    /// `None` for port-less schemes such as `icmp`.
    pub port: Option<u16>,
}

impl Destination {
    /// The destination of an absolute URL, or why it has none.
    pub fn from_url(url: &url::Url) -> Result<Self, String> {
        let host = match url.host() {
            Some(url::Host::Domain(d)) => DestHost::parse(d),
            Some(url::Host::Ipv4(ip)) => DestHost::Ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => DestHost::Ip(IpAddr::V6(ip).to_canonical()),
            None => return Err(format!("URL {url} has no host")),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("URL {url} has no port and its scheme has no default"))?;
        Ok(Destination {
            scheme: url.scheme().to_string(),
            host,
            port: Some(port),
        })
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// A probe's allow-list. Empty denies everything. A probe of a package
/// also has the operator's ceiling: both lists must admit a destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    /// Shared: every grant of a probe, and every probe of the same
    /// origins, holds the same list.
    rules: std::sync::Arc<[AllowRule]>,
    ceiling: Option<std::sync::Arc<AllowList>>,
    /// A per-address run: this host reaches only this address. Boxed: a
    /// probe and each of its grants hold a list, and few are pinned.
    pin: Option<Box<(DestHost, IpAddr)>>,
}

/// Why the allow-list refused a destination; shown to the plugin and in logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is not allowed (allow = [{rules}]){note}")]
pub struct Denied {
    what: String,
    rules: String,
    /// Why, when the rules alone do not say it.
    note: &'static str,
}

impl AllowList {
    pub fn new(rules: Vec<AllowRule>) -> Self {
        AllowList {
            rules: rules.into(),
            ceiling: None,
            pin: None,
        }
    }

    /// This list, with `host` reaching only `ip` (one of its addresses):
    /// the runs of a probe's `fan_out`, one per address of a name.
    pub fn pinned(mut self, host: DestHost, ip: IpAddr) -> Self {
        self.pin = Some(Box::new((host, ip)));
        self
    }

    /// The address `host` is pinned to, if it is.
    pub fn pin_for(&self, host: &DestHost) -> Option<IpAddr> {
        self.pin
            .as_deref()
            .filter(|(h, _)| h == host)
            .map(|(_, ip)| *ip)
    }

    /// This list, further limited by `ceiling`.
    pub fn with_ceiling(mut self, ceiling: std::sync::Arc<AllowList>) -> Self {
        self.ceiling = Some(ceiling);
        self
    }

    pub fn rules(&self) -> &[AllowRule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn denied(&self, what: String) -> Denied {
        let rules = self
            .rules
            .iter()
            .map(|r| format!("{:?}", r.text))
            .collect::<Vec<_>>()
            .join(", ");
        Denied {
            what,
            rules,
            note: "",
        }
    }

    fn scheme_and_port(&self, dest: &Destination) -> impl Iterator<Item = &AllowRule> {
        self.rules.iter().filter(move |r| {
            r.scheme == dest.scheme
                && match (r.port, dest.port) {
                    (PortPattern::Any, _) => true,
                    (PortPattern::Exact(p), Some(d)) => p == d,
                    (PortPattern::Exact(_), None) => false,
                }
        })
    }

    /// Before resolution: could any rule admit this destination? A named
    /// host passes only when a rule names it (exactly or by `*.`): a
    /// network rule admits addresses, and names only through what they
    /// resolve to once a name rule let them be resolved. An address must
    /// be in a rule's network.
    pub fn check(&self, dest: &Destination) -> Result<(), Denied> {
        self.check_as(dest, false)
    }

    fn check_as(&self, dest: &Destination, ceiling: bool) -> Result<(), Denied> {
        if !self
            .scheme_and_port(dest)
            .any(|r| r.may_admit(&dest.host, ceiling))
        {
            let mut denied = self.denied(format!("target {:?}", dest.to_string()));
            if matches!(dest.host, DestHost::Name(_)) && !ceiling {
                denied.note =
                    "; a name is looked up only when a rule names it, exactly or as *.domain";
            }
            return Err(denied);
        }
        match &self.ceiling {
            Some(c) => c.check_as(dest, true),
            None => Ok(()),
        }
    }

    /// After resolution: is a connection to `addr` for this destination
    /// admitted? An address destination must be inside a network rule. A
    /// name must be named by a rule (it was, or it would not have been
    /// looked up); when the list also has network rules for the scheme and
    /// port, they bound the addresses the name may lead to, so a name that
    /// rebinds elsewhere is refused.
    pub fn admits(&self, dest: &Destination, addr: IpAddr) -> bool {
        self.admits_as(dest, addr.to_canonical(), false)
    }

    fn admits_as(&self, dest: &Destination, addr: IpAddr, ceiling: bool) -> bool {
        let in_net =
            |r: &&AllowRule| matches!(&r.host, HostPattern::Net(net) if net.contains(&addr));
        let has_net = |r: &&AllowRule| matches!(&r.host, HostPattern::Net(_));
        let ours = match &dest.host {
            DestHost::Ip(_) => self.scheme_and_port(dest).any(|r| in_net(&r)),
            DestHost::Name(d) => {
                let named = self.scheme_and_port(dest).any(|r| match &r.host {
                    HostPattern::Name(n) => n == d,
                    HostPattern::Suffix(s) => under(d, s),
                    HostPattern::Net(_) => false,
                });
                let bounded = !self.scheme_and_port(dest).any(|r| has_net(&r))
                    || self.scheme_and_port(dest).any(|r| in_net(&r));
                // An operator's ceiling of networks bounds names its
                // packages were allowed to name.
                (named && bounded) || (ceiling && self.scheme_and_port(dest).any(|r| in_net(&r)))
            }
        };
        ours && self
            .ceiling
            .as_ref()
            .is_none_or(|c| c.admits_as(dest, addr, true))
    }

    /// Keeps the resolved addresses this destination may connect to, or
    /// explains that none is admitted.
    pub fn filter_resolved(
        &self,
        dest: &Destination,
        addrs: Vec<IpAddr>,
    ) -> Result<Vec<IpAddr>, Denied> {
        let all = addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let kept: Vec<IpAddr> = addrs
            .into_iter()
            .filter(|a| self.admits(dest, *a))
            .collect();
        if kept.is_empty() {
            Err(self.denied(format!(
                "target {:?} resolved to [{all}], which",
                dest.to_string()
            )))
        } else {
            Ok(kept)
        }
    }

    /// Whether a `/probe` target is inside the list: a URL is checked as a
    /// destination; a bare host (for port-less probes) against rules of
    /// any scheme.
    pub fn check_target(&self, target: &str) -> Result<(), Denied> {
        // A URL is whatever the URL parser reads with a host, as the HTTP
        // client will (`http:/h/` included), not only text with `://`.
        let parsed = url::Url::parse(target);
        if target.contains("://") || parsed.as_ref().is_ok_and(url::Url::has_host) {
            let url = parsed.map_err(|e| self.denied(format!("target {target:?} ({e})")))?;
            let dest = Destination::from_url(&url).map_err(|e| self.denied(e))?;
            return self.check(&dest);
        }
        // Without a scheme the target is `HOST` (ICMP, or a DNS server on
        // its default port) or `HOST:PORT` (TCP, DNS): admitted when a
        // rule of some scheme admits it, whichever the plugin speaks;
        // every call is checked again with its own scheme.
        let (host, port) = split_host_port(target.trim());
        let host = DestHost::parse(host);
        let admitted = self.rules.iter().any(|r| {
            if portless(&r.scheme) {
                return port.is_none() && r.may_admit(&host, false);
            }
            // A bare host is a DNS server on its port 53, never an HTTP
            // target: a URL would have said so.
            let default = (r.scheme == "dns")
                .then(|| default_port(&r.scheme))
                .flatten();
            let Some(port) = port.or(default) else {
                return false;
            };
            let dest = Destination {
                scheme: r.scheme.clone(),
                host: host.clone(),
                port: Some(port),
            };
            self.scheme_and_port(&dest)
                .any(|rule| rule.may_admit(&dest.host, false))
        });
        if !admitted {
            return Err(self.denied(format!("target {target:?}")));
        }
        match &self.ceiling {
            Some(c) => c.check_target(target),
            None => Ok(()),
        }
    }

    /// The rule that admits a probe's own target, its default allow-list:
    /// a URL's origin, or `icmp://HOST` for a bare host.
    pub fn origin_rule(target: &str) -> Option<AllowRule> {
        if !target.contains("://") {
            let host = DestHost::parse(target.trim());
            return AllowRule::try_from(format!("icmp://{host}")).ok();
        }
        let url = url::Url::parse(target).ok()?;
        let dest = Destination::from_url(&url).ok()?;
        AllowRule::try_from(dest.to_string()).ok()
    }
}

/// `HOST:PORT`, `[V6]:PORT`, `[V6]`, `V6` or `HOST`, split.
fn split_host_port(target: &str) -> (&str, Option<u16>) {
    if let Some(rest) = target.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (target, None),
        };
    }
    match target.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host, port.parse().ok()),
        _ => (target, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_targets_are_admitted_by_a_rule_of_any_scheme() {
        let l = list(&["tcp://127.0.0.1:25", "dns://127.0.0.2", "icmp://127.0.0.3"]);
        assert!(l.check_target("127.0.0.1:25").is_ok());
        assert!(l.check_target("127.0.0.1:26").is_err());
        assert!(
            l.check_target("127.0.0.1").is_err(),
            "tcp has no default port"
        );
        assert!(l.check_target("127.0.0.2").is_ok(), "dns on port 53");
        assert!(l.check_target("127.0.0.2:53").is_ok());
        assert!(l.check_target("127.0.0.3").is_ok());
        assert!(l.check_target("127.0.0.3:25").is_err());
        let v6 = list(&["tcp://[::1]:6379"]);
        assert!(v6.check_target("[::1]:6379").is_ok());
        assert!(v6.check_target("[::1]:6380").is_err());
        assert_eq!(split_host_port("::1"), ("::1", None));
        assert_eq!(split_host_port("h:x"), ("h", None));
    }

    fn list(rules: &[&str]) -> AllowList {
        AllowList::new(
            rules
                .iter()
                .map(|r| AllowRule::try_from(r.to_string()))
                .collect::<Result<_, _>>()
                .unwrap_or_default(),
        )
    }

    fn check(list: &AllowList, url: &str) -> bool {
        url::Url::parse(url)
            .ok()
            .and_then(|u| Destination::from_url(&u).ok())
            .is_some_and(|d| list.check(&d).is_ok())
    }

    #[test]
    fn rules_parse_and_refuse() {
        assert!(AllowRule::try_from("https://127.0.0.1:8443".to_string()).is_ok());
        assert!(AllowRule::try_from("http://[::1]:8080".to_string()).is_ok());
        assert!(AllowRule::try_from("http://10.0.0.0/8:*".to_string()).is_ok());
        assert!(AllowRule::try_from("icmp://192.0.2.0/24".to_string()).is_ok());
        assert!(AllowRule::try_from("127.0.0.1:80".to_string()).is_err());
        assert!(AllowRule::try_from("http://a@b:80".to_string()).is_err());
        assert!(AllowRule::try_from("http://::1:80".to_string()).is_err());
        assert!(AllowRule::try_from("tcp://host".to_string()).is_err());
        assert!(AllowRule::try_from("http://host:0".to_string()).is_err());
        assert!(AllowRule::try_from("http://host:99999".to_string()).is_err());
    }

    #[test]
    fn empty_list_denies_everything() {
        let l = list(&[]);
        assert!(!check(&l, "http://127.0.0.1/"));
    }

    #[test]
    fn scheme_host_and_port_must_match() {
        let l = list(&["https://127.0.0.1:8443", "http://localhost:8080"]);
        assert!(check(&l, "https://127.0.0.1:8443/x"));
        assert!(!check(&l, "http://127.0.0.1:8443/x"));
        assert!(!check(&l, "https://127.0.0.1:8444/x"));
        assert!(check(&l, "http://LOCALHOST:8080/"));
        assert!(check(&l, "http://localhost.:8080/"));
        assert!(!check(&l, "http://127.0.0.1:8080/"));
        assert!(!check(&l, "ftp://localhost:8080/"));
    }

    #[test]
    fn targets_are_read_as_the_http_client_reads_them() {
        // Found by the allowlist fuzz target: one slash is still a URL.
        let l = list(&["http://127.0.0.1:80"]);
        assert!(l.check_target("http:/17.0/.02t.180htp:").is_err());
        assert!(l.check_target("http:/127.0.0.1/").is_ok());
        // A bare host is an ICMP target: an http rule does not admit it.
        assert!(
            list(&["http://127.0.0.0/8:*"])
                .check_target("127.0.0.1")
                .is_err()
        );
        assert!(
            list(&["icmp://127.0.0.0/8"])
                .check_target("127.0.0.1")
                .is_ok()
        );
    }

    #[test]
    fn bypass_spellings_resolve_to_the_same_host() {
        let l = list(&["http://127.0.0.2:80"]);
        // Userinfo names the user, not the host.
        assert!(!check(&l, "http://127.0.0.2@127.0.0.3/"));
        assert!(check(&l, "http://other@127.0.0.2/"));
        // Decimal, hex and octal IPv4 fold to dotted form.
        assert!(check(&l, "http://2130706434/"));
        assert!(check(&l, "http://0x7f000002/"));
        assert!(check(&l, "http://0177.0.0.2/"));
        assert!(!check(&l, "http://2130706433/"));
        // IPv4-mapped IPv6 is the IPv4 address.
        assert!(check(&l, "http://[::ffff:127.0.0.2]/"));
        assert!(!check(&l, "http://[::ffff:127.0.0.3]/"));
        // Zone identifiers are not URLs at all.
        assert!(url::Url::parse("http://[fe80::1%25eth0]/").is_err());
    }

    #[test]
    fn networks_admit_resolved_addresses_only_inside() {
        let dest = Destination {
            scheme: "http".into(),
            host: DestHost::Name("localhost".into()),
            port: Some(9),
        };
        // A network rule alone does not let a name be looked up: the query
        // itself would carry the name out.
        assert!(list(&["http://127.0.0.0/8:*"]).check(&dest).is_err());
        // A name rule does; the ceiling's network then bounds its addresses.
        let l = list(&["http://localhost:*"])
            .with_ceiling(std::sync::Arc::new(list(&["http://127.0.0.0/8:*"])));
        assert!(l.check(&dest).is_ok());
        let kept = l.filter_resolved(
            &dest,
            vec![
                "127.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
                "::1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            ],
        );
        assert_eq!(kept.ok().map(|k| k.len()), Some(1));
        let only_v6 = l.filter_resolved(&dest, vec![IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])]);
        assert!(only_v6.is_err());
    }

    #[test]
    fn wildcard_rules_admit_names_under_a_domain_only() {
        let l = list(&["https://*.probes.example:443"]);
        let dest = |host: &str| Destination {
            scheme: "https".into(),
            host: DestHost::parse(host),
            port: Some(443),
        };
        assert!(l.check(&dest("api.probes.example")).is_ok());
        assert!(l.check(&dest("a.b.probes.example")).is_ok());
        assert!(l.check(&dest("probes.example")).is_err());
        assert!(l.check(&dest("evilprobes.example")).is_err());
        assert!(l.check(&dest("probes.example.evil")).is_err());
        assert!(l.check(&dest("127.0.0.1")).is_err());
        let rule =
            |r: &str| AllowRule::try_from(r.to_string()).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(rule("https://api.probes.example:443").within(&l));
        assert!(rule("https://*.x.probes.example:443").within(&l));
        assert!(!rule("https://probes.example:443").within(&l));
    }

    #[test]
    fn denial_names_the_target_and_the_rules() {
        let l = list(&["https://127.0.0.1:8443"]);
        let url = url::Url::parse("https://db:5432/").ok();
        let err = url
            .and_then(|u| Destination::from_url(&u).ok())
            .and_then(|d| l.check(&d).err())
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                r#"target "https://db:5432" is not allowed (allow = ["https://127.0.0.1:8443"]); a name is looked up only when a rule names it, exactly or as *.domain"#
            )
        );
    }

    #[test]
    fn rules_within_a_cap_and_the_ceiling() {
        let cap = list(&["http://127.0.0.0/8:*", "icmp://127.0.0.0/8"]);
        let rule =
            |r: &str| AllowRule::try_from(r.to_string()).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(rule("http://127.0.0.2:8080").within(&cap));
        assert!(rule("http://localhost:8080").within(&cap));
        assert!(!rule("https://127.0.0.2:443").within(&cap));
        assert!(!rule("http://10.0.0.0/8:*").within(&cap));
        assert!(rule("icmp://127.0.0.1").within(&cap));
        let ceiled = list(&["http://localhost:80", "https://10.0.0.1:443"])
            .with_ceiling(std::sync::Arc::new(cap));
        assert!(!check(&ceiled, "https://10.0.0.1/"), "outside the ceiling");
        let dest = Destination {
            scheme: "http".into(),
            host: DestHost::Name("localhost".into()),
            port: Some(80),
        };
        assert!(ceiled.admits(&dest, [127, 0, 0, 1].into()));
        assert!(
            !ceiled.admits(&dest, [10, 0, 0, 1].into()),
            "a name that resolves outside the ceiling"
        );
    }

    #[test]
    fn networks_beside_a_name_bound_where_it_may_lead() {
        let l = list(&["http://rebind.test:80", "http://127.0.0.1/32:80"]);
        let dest = Destination {
            scheme: "http".into(),
            host: DestHost::Name("rebind.test".into()),
            port: Some(80),
        };
        assert!(l.check(&dest).is_ok());
        assert!(l.admits(&dest, [127, 0, 0, 1].into()));
        assert!(!l.admits(&dest, [127, 0, 0, 2].into()), "rebound elsewhere");
        // A name alone may lead anywhere it resolves to.
        let alone = list(&["http://rebind.test:80"]);
        assert!(alone.admits(&dest, [127, 0, 0, 2].into()));
    }

    #[test]
    fn bare_targets_for_portless_probes() {
        let l = list(&["icmp://127.0.0.0/8", "icmp://node-a"]);
        assert!(l.check_target("127.0.0.9").is_ok());
        assert!(l.check_target("node-a").is_ok());
        assert!(l.check_target("10.0.0.1").is_err());
    }
}
