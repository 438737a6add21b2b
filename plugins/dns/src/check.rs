//! What the probe decides: the query it asks for, and how the answer (or
//! the failure) turns into blackbox_exporter's metrics and a verdict.
//! Nothing here calls the host, so all of it is tested natively.

use wasmprobe_sdk::blackbox::{self, Unreached};
use wasmprobe_sdk::dns::{self, Answer, DnsError, DnsTimings, ErrorKind, IpProtocol, Request};
use wasmprobe_sdk::family::{FamilyExt, gauge};
use wasmprobe_sdk::{MetricFamily, Outcome, Report};

use crate::config::{self, Config};
use crate::rr::{self, Validator};

/// Every family this plugin emits, with blackbox_exporter's names.
pub fn families() -> Vec<MetricFamily> {
    vec![
        blackbox::dns_lookup_time_family(),
        gauge(
            "probe_dns_duration_seconds",
            "Duration of DNS request by phase.",
        )
        .labels(&["phase"])
        .unit("seconds"),
        gauge(
            "probe_dns_answer_rrs",
            "Returns number of entries in the answer resource record list.",
        ),
        gauge(
            "probe_dns_authority_rrs",
            "Returns number of entries in the authority resource record list.",
        ),
        gauge(
            "probe_dns_additional_rrs",
            "Returns number of entries in the additional resource record list.",
        ),
        gauge(
            "probe_dns_query_succeeded",
            "Displays whether or not the query was executed successfully.",
        ),
        gauge("probe_dns_serial", "Returns the serial number of the zone."),
        blackbox::ip_protocol_family(),
        blackbox::ip_addr_hash_family(),
    ]
}

/// A config checked, with its names normalised and expressions compiled.
#[derive(Debug)]
pub struct Check {
    config: Config,
    query_type: String,
    query_class: String,
    /// Accepted rcodes by value, with the names configured (for messages).
    valid_rcodes: Vec<(u16, String)>,
    answer: Validator,
    authority: Validator,
    additional: Validator,
}

impl Check {
    pub fn new(config: Config) -> Result<Check, String> {
        if config.query_name.trim().is_empty() {
            return Err("query_name must be set".into());
        }
        // miekg/dns knows names in upper case only; any case is taken here.
        let query_type = mnemonic(&config.query_type, "query_type")?;
        let query_class = mnemonic(&config.query_class, "query_class")?;
        let valid_rcodes = match &config.valid_rcodes {
            None => vec![(0, "NOERROR".to_string())],
            Some(list) if list.is_empty() => {
                return Err("valid_rcodes is empty: no answer could pass".into());
            }
            Some(list) => list
                .iter()
                .map(|name| match rr::rcode(name) {
                    Some(code) => Ok((code, name.to_ascii_uppercase())),
                    None => Err(format!("valid_rcodes: {name:?} is not a response code")),
                })
                .collect::<Result<_, _>>()?,
        };
        if config.timeout_ms == Some(0) {
            return Err("timeout_ms must be above 0".into());
        }
        Ok(Check {
            answer: Validator::new(&config.validate_answer_rrs, "validate_answer_rrs")?,
            authority: Validator::new(&config.validate_authority_rrs, "validate_authority_rrs")?,
            additional: Validator::new(&config.validate_additional_rrs, "validate_additional_rrs")?,
            config,
            query_type,
            query_class,
            valid_rcodes,
        })
    }

    /// The query to `target`, the server (`HOST`, `HOST:PORT`; port 53
    /// when absent). An empty target asks the system's resolver.
    pub fn request(&self, target: &str) -> Request {
        let c = &self.config;
        let target = target.trim();
        let mut req = dns::request(
            c.query_name.trim(),
            &self.query_type,
            (!target.is_empty()).then_some(target),
        );
        req.class = Some(self.query_class.clone());
        req.recursion_desired = c.recursion_desired;
        req.dnssec_ok = c.dnssec;
        req.transport = match c.transport_protocol {
            config::Transport::Udp => dns::Transport::Udp,
            config::Transport::Tcp => dns::Transport::Tcp,
        };
        req.timeout_ms = c.timeout_ms;
        req.preferred_ip_protocol = Some(match c.preferred_ip_protocol {
            config::IpProtocol::Ip4 => IpProtocol::Ip4,
            config::IpProtocol::Ip6 => IpProtocol::Ip6,
        });
        req.ip_protocol_fallback = c.ip_protocol_fallback;
        req
    }

    /// Metrics and verdict of one query.
    pub fn evaluate(&self, result: Result<Answer, DnsError>) -> Report {
        let mut out = Outcome::new();
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => {
                phases(&mut out, &e.timings);
                address(&mut out, e.server.as_deref(), None);
                counts(&mut out, None);
                out.set("probe_dns_query_succeeded", 0.0);
                return out.finish(false, Some(format!("query: {}", error_text(&e))));
            }
        };
        phases(&mut out, &answer.timings);
        address(&mut out, Some(&answer.server), Some(answer.ip_protocol));
        counts(&mut out, Some(&answer));
        // A reply came, whatever its rcode: the query itself succeeded.
        out.set("probe_dns_query_succeeded", 1.0);
        if self.query_type == "SOA" {
            // As blackbox_exporter: 0 when the answer holds no SOA.
            let serial = answer
                .answers
                .iter()
                .filter(|r| r.record_type.eq_ignore_ascii_case("SOA"))
                .filter_map(|r| rr::soa_serial(&r.data))
                .next_back()
                .unwrap_or(0);
            out.set("probe_dns_serial", f64::from(serial));
        }
        let failure = self.rcode_failure(&answer.rcode).or_else(|| {
            [
                ("answer", &self.answer, &answer.answers),
                ("authority", &self.authority, &answer.authority),
                ("additional", &self.additional, &answer.additional),
            ]
            .into_iter()
            .find_map(|(section, v, rrs)| {
                v.check(rrs).map(|why| format!("{section} section: {why}"))
            })
        });
        match failure {
            None => out.finish(true, None),
            Some(why) => out.finish(false, Some(why)),
        }
    }

    fn rcode_failure(&self, rcode: &str) -> Option<String> {
        let valid = match rr::rcode(rcode) {
            Some(code) => self.valid_rcodes.iter().any(|(c, _)| *c == code),
            None => self
                .valid_rcodes
                .iter()
                .any(|(_, name)| name.eq_ignore_ascii_case(rcode)),
        };
        let names: Vec<&str> = self.valid_rcodes.iter().map(|(_, n)| n.as_str()).collect();
        (!valid).then(|| format!("rcode {rcode} is not one of {}", names.join(", ")))
    }
}

/// A record type or class as the host and miekg/dns spell it: upper case
/// letters, digits and `-` (`NSAP-PTR`, `TYPE65534`, `CLASS3`).
fn mnemonic(value: &str, key: &str) -> Result<String, String> {
    let upper = value.trim().to_ascii_uppercase();
    let valid = upper.starts_with(|c: char| c.is_ascii_alphabetic())
        && upper.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(upper)
    } else {
        Err(format!("{key}: {value:?} is not a DNS mnemonic"))
    }
}

/// blackbox_exporter's three phases, all present even when not reached.
fn phases(out: &mut Outcome, t: &DnsTimings) {
    for (phase, v) in [
        ("resolve", t.resolve),
        ("connect", t.connect),
        ("request", t.exchange),
    ] {
        out.push("probe_dns_duration_seconds", &[("phase", phase)], v);
    }
    blackbox::set_dns_lookup_time(out, t.resolve);
}

/// Section sizes; 0 without an answer, as blackbox_exporter reports them.
fn counts(out: &mut Outcome, answer: Option<&Answer>) {
    let len = |f: fn(&Answer) -> usize| answer.map_or(0.0, |a| f(a) as f64);
    out.set("probe_dns_answer_rrs", len(|a| a.answers.len()))
        .set("probe_dns_authority_rrs", len(|a| a.authority.len()))
        .set("probe_dns_additional_rrs", len(|a| a.additional.len()));
}

/// `probe_ip_protocol` and `probe_ip_addr_hash` of the server, 0 when it
/// was never reached (blackbox_exporter registers them before resolving).
fn address(out: &mut Outcome, server: Option<&str>, protocol: Option<IpProtocol>) {
    blackbox::set_address(out, server, protocol, Unreached::Zero);
}

fn error_text(e: &DnsError) -> String {
    let kind = match e.kind {
        ErrorKind::Denied => "denied",
        ErrorKind::InvalidRequest => "invalid request",
        ErrorKind::Resolve => "resolve",
        ErrorKind::Connect => "connect",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Protocol => "protocol",
        ErrorKind::Io => "io",
    };
    match &e.server {
        Some(server) => format!("{kind} ({server}): {}", e.message),
        None => format!("{kind}: {}", e.message),
    }
}

#[cfg(test)]
mod tests;
