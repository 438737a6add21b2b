//! What the probe decides: the connection it asks for, the conversation of
//! `query_response`, and how its outcome turns into blackbox_exporter's
//! metrics and a verdict.
//!
//! The conversation runs against the [`Conn`] trait, never against the
//! host directly: `lib.rs` hands in the real connection, the tests a
//! scripted one, so everything here is tested natively.

use regex::Regex;
use wasmprobe_sdk::blackbox::{self, LastChainExpiry, TlsStyle, Unreached};
use wasmprobe_sdk::family::{FamilyExt, gauge};
use wasmprobe_sdk::tcp::{
    self, ConnectInfo, ConnectRequest, ErrorKind, IpProtocol, Received, TcpError, TlsInfo,
};
use wasmprobe_sdk::{MetricFamily, Outcome, Report};

use crate::config::{self, Config, LabelName};
use crate::expand::expand;

/// Longest line `expect` reads, delimiter included: blackbox_exporter's
/// line scanner gives up at the same size.
pub const MAX_LINE: u32 = 64 * 1024;

/// Longest excerpt of the peer's data quoted in a failure message.
const EXCERPT: usize = 120;

/// Every family this plugin emits, with blackbox_exporter's names.
pub fn families() -> Vec<MetricFamily> {
    let expect_labels: Vec<&str> = LabelName::ALL.iter().map(|l| l.as_str()).collect();
    let mut families = blackbox::address_families();
    families.extend([
        gauge(
            "probe_failed_due_to_regex",
            "Indicates if probe failed due to regex.",
        ),
        gauge(
            "probe_failed_due_to_bytes",
            "Indicates if probe failed due to bytes.",
        ),
        gauge("probe_expect_info", "Explicit content matched.").labels(&expect_labels),
    ]);
    families.extend(blackbox::tls_families(TLS));
    families
}

/// blackbox_exporter's tcp prober sets the chain expiry from the verified
/// chain, so only a chain that verified has one; certificate text comes
/// from the peer and is cut so a long subject cannot drop the series.
const TLS: TlsStyle = TlsStyle {
    last_chain_expiry: LastChainExpiry::Verified,
    cut_long_labels: true,
};

/// `probe_dns_lookup_time_seconds`, `probe_ip_protocol` and
/// `probe_ip_addr_hash`. blackbox_exporter registers all three before it
/// resolves, so a failed resolution still shows them, at 0.
fn address(out: &mut Outcome, resolve: f64, remote: Option<&str>, protocol: Option<IpProtocol>) {
    blackbox::set_dns_lookup_time(out, resolve);
    blackbox::set_address(out, remote, protocol, Unreached::Zero);
}

/// The host side of a connection, as the conversation uses it.
pub trait Conn {
    fn send(&mut self, data: &[u8]) -> Result<(), TcpError>;
    fn receive(
        &mut self,
        max_bytes: u32,
        delimiter: Option<&[u8]>,
        timeout_ms: Option<u64>,
    ) -> Result<Received, TcpError>;
    fn start_tls(&mut self, server_name: Option<&str>) -> Result<TlsInfo, TcpError>;
}

/// A step with its regular expression compiled.
#[derive(Debug)]
struct Step {
    expect: Option<Regex>,
    expect_bytes: Option<Vec<u8>>,
    labels: Vec<(LabelName, String)>,
    send: Option<String>,
    starttls: bool,
}

/// A config checked and compiled.
#[derive(Debug)]
pub struct Check {
    config: Config,
    steps: Vec<Step>,
}

/// What the conversation found, emitted once it ends however it ends.
#[derive(Debug, Default)]
struct Findings {
    regex_failed: bool,
    bytes_failed: bool,
    /// The last handshake's facts: a STARTTLS replaces those of connect.
    tls: Option<TlsInfo>,
    /// One `probe_expect_info` series per step with labels.
    expect_info: Vec<Vec<(LabelName, String)>>,
}

impl Check {
    pub fn new(config: Config) -> Result<Check, String> {
        if config.timeout_ms == Some(0) {
            return Err("timeout_ms must be above 0".into());
        }
        let steps = config
            .query_response
            .iter()
            .enumerate()
            .map(|(i, s)| compile(i, s))
            .collect::<Result<_, _>>()?;
        Ok(Check { config, steps })
    }

    /// The connection for `target` (`HOST:PORT`), or why there is none.
    pub fn connect_request(&self, target: &str) -> Result<ConnectRequest, String> {
        split_host_port(target)?;
        let c = &self.config;
        let mut req = tcp::request(target);
        req.timeout_ms = c.timeout_ms;
        req.preferred_ip_protocol = Some(match c.preferred_ip_protocol {
            config::IpProtocol::Ip4 => tcp::IpProtocol::Ip4,
            config::IpProtocol::Ip6 => tcp::IpProtocol::Ip6,
        });
        req.ip_protocol_fallback = c.ip_protocol_fallback;
        req.tls = c.tls;
        req.server_name = c.tls_config.server_name.clone();
        Ok(req)
    }

    /// Metrics and verdict of a connection attempt and its conversation.
    pub fn evaluate<C: Conn>(&self, connected: Result<(C, ConnectInfo), TcpError>) -> Report {
        let mut out = Outcome::new();
        let (mut conn, info) = match connected {
            Ok(c) => c,
            Err(e) => {
                address(&mut out, e.timings.resolve, e.remote_addr.as_deref(), None);
                if let Some(tls) = &e.tls {
                    blackbox::set_tls(&mut out, tls, TLS);
                }
                return out.finish(false, Some(format!("connect: {}", error_text(&e))));
            }
        };
        address(
            &mut out,
            info.timings.resolve,
            Some(&info.remote_addr),
            Some(info.ip_protocol),
        );
        let mut found = Findings {
            tls: info.tls,
            ..Findings::default()
        };
        let verdict = self.converse(&mut conn, &mut found);
        out.set("probe_failed_due_to_regex", flag(found.regex_failed))
            .set("probe_failed_due_to_bytes", flag(found.bytes_failed));
        if let Some(tls) = &found.tls {
            blackbox::set_tls(&mut out, tls, TLS);
        }
        for labels in &found.expect_info {
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(n, v)| (n.as_str(), blackbox::label_value(v)))
                .collect();
            out.push("probe_expect_info", &labels, 1.0);
        }
        match verdict {
            Ok(()) => out.finish(true, None),
            Err(message) => out.finish(false, Some(message)),
        }
    }

    fn converse<C: Conn>(&self, conn: &mut C, found: &mut Findings) -> Result<(), String> {
        for (i, step) in self.steps.iter().enumerate() {
            let at = |what: String| format!("query_response[{i}]: {what}");
            let mut send = step.send.clone();
            if let Some(re) = &step.expect {
                let line = match self.read_matching(conn, re).map_err(at)? {
                    Matched::Line(line) => line,
                    Matched::Ended(last) => {
                        found.regex_failed = true;
                        return Err(at(format!(
                            "the connection ended before a line matched {:?} (last line {:?})",
                            re.as_str(),
                            excerpt(&last)
                        )));
                    }
                };
                if let Some(caps) = re.captures(&line) {
                    send = send.map(|t| expand(&caps, &t));
                    if !step.labels.is_empty() {
                        found.expect_info.push(
                            step.labels
                                .iter()
                                .map(|(name, value)| (*name, expand(&caps, value)))
                                .collect(),
                        );
                    }
                }
            }
            if let Some(want) = &step.expect_bytes {
                let got = self.read_exact(conn, want.len()).map_err(at)?;
                if &got != want {
                    found.bytes_failed = true;
                    return Err(at(format!(
                        "expected bytes {:?}, got {:?}",
                        excerpt(&String::from_utf8_lossy(want)),
                        excerpt(&String::from_utf8_lossy(&got))
                    )));
                }
            }
            // An expansion that comes out empty sends nothing, as in
            // blackbox_exporter.
            if let Some(line) = send.filter(|s| !s.is_empty()) {
                conn.send(format!("{line}\n").as_bytes())
                    .map_err(|e| at(format!("send: {}", error_text(&e))))?;
            }
            if step.starttls {
                let server_name = self.config.tls_config.server_name.as_deref();
                match conn.start_tls(server_name) {
                    Ok(tls) => found.tls = Some(tls),
                    Err(e) => {
                        if e.tls.is_some() {
                            found.tls = e.tls.clone();
                        }
                        return Err(at(format!("starttls: {}", error_text(&e))));
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads lines until one matches `re`. A line is what comes before
    /// `\n`, without a trailing `\r`; the last line before the peer closes
    /// counts even without its `\n`, as with blackbox_exporter's scanner.
    fn read_matching<C: Conn>(&self, conn: &mut C, re: &Regex) -> Result<Matched, String> {
        let mut last = String::new();
        loop {
            let got = match conn.receive(MAX_LINE, Some(b"\n"), self.config.timeout_ms) {
                Ok(got) => got,
                Err(e) if e.kind == ErrorKind::Closed => return Ok(Matched::Ended(last)),
                Err(e) => {
                    return Err(format!(
                        "reading a line to match {:?}: {}",
                        re.as_str(),
                        error_text(&e)
                    ));
                }
            };
            if got.delimited || (got.eof && !got.data.is_empty()) {
                last = line_of(&got.data);
                if re.is_match(&last) {
                    return Ok(Matched::Line(last));
                }
            } else if !got.eof {
                return Err(if got.data.len() >= MAX_LINE as usize {
                    format!("a line is longer than {MAX_LINE} bytes")
                } else {
                    format!(
                        "timed out in the middle of a line waiting for {:?} (read {:?})",
                        re.as_str(),
                        excerpt(&String::from_utf8_lossy(&got.data))
                    )
                });
            }
            if got.eof {
                return Ok(Matched::Ended(last));
            }
        }
    }

    /// Reads exactly `n` bytes (blackbox_exporter reads once and may come
    /// up short on a slow peer; waiting for all of them is the intent).
    fn read_exact<C: Conn>(&self, conn: &mut C, n: usize) -> Result<Vec<u8>, String> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let want = u32::try_from(n - got.len()).unwrap_or(u32::MAX);
            match conn.receive(want, None, self.config.timeout_ms) {
                Ok(r) => {
                    got.extend_from_slice(&r.data);
                    if r.eof && got.len() < n {
                        return Err(format!(
                            "the connection ended after {} of {n} expected bytes",
                            got.len()
                        ));
                    }
                }
                Err(e) if e.kind == ErrorKind::Closed => {
                    return Err(format!(
                        "the connection ended after {} of {n} expected bytes",
                        got.len()
                    ));
                }
                Err(e) => return Err(format!("reading {n} bytes: {}", error_text(&e))),
            }
        }
        Ok(got)
    }
}

/// How waiting for a line ended without an error.
enum Matched {
    Line(String),
    /// The peer closed first; the last line read, if any.
    Ended(String),
}

fn compile(i: usize, step: &config::Step) -> Result<Step, String> {
    let at = |what: &str| format!("query_response[{i}].{what}");
    // An empty `expect` or `expect_bytes` is no expectation at all.
    let expect = match step.expect.as_deref().filter(|e| !e.is_empty()) {
        Some(re) => Some(
            Regex::new(re)
                .map_err(|e| format!("{}: invalid regular expression {re:?}: {e}", at("expect")))?,
        ),
        None => None,
    };
    let expect_bytes = step
        .expect_bytes
        .as_deref()
        .filter(|b| !b.is_empty())
        .map(|b| b.as_bytes().to_vec());
    if expect.is_some() && expect_bytes.is_some() {
        return Err(format!(
            "query_response[{i}]: expect and expect_bytes are mutually exclusive"
        ));
    }
    if !step.labels.is_empty() && expect.is_none() {
        // blackbox_exporter silently ignores them: nothing would be set.
        return Err(format!(
            "{}: labels are set when expect matches, and this step has no expect",
            at("labels")
        ));
    }
    let mut labels: Vec<(LabelName, String)> = Vec::new();
    for l in &step.labels {
        if labels.iter().any(|(n, _)| *n == l.name) {
            return Err(format!(
                "{}: label {:?} is given twice",
                at("labels"),
                l.name.as_str()
            ));
        }
        labels.push((l.name, l.value.clone()));
    }
    Ok(Step {
        expect,
        expect_bytes,
        labels,
        send: step.send.clone(),
        starttls: step.starttls,
    })
}

/// Splits `HOST:PORT` (`[v6]:PORT`) as the connection will.
fn split_host_port(target: &str) -> Result<(&str, &str), String> {
    let refuse = || format!("target {target:?} is not HOST:PORT");
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").ok_or_else(refuse)?;
        (host, port)
    } else {
        let (host, port) = target.rsplit_once(':').ok_or_else(refuse)?;
        if host.contains(':') {
            return Err(format!(
                "target {target:?} is not HOST:PORT (an IPv6 address goes in brackets)"
            ));
        }
        (host, port)
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(refuse());
    }
    Ok((host, port))
}

/// A line's text: without its `\n` and one `\r` before it.
fn line_of(data: &[u8]) -> String {
    let line = data.strip_suffix(b"\n").unwrap_or(data);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

fn error_text(e: &TcpError) -> String {
    let kind = match e.kind {
        ErrorKind::Denied => "denied",
        ErrorKind::InvalidRequest => "invalid request",
        ErrorKind::Dns => "dns",
        ErrorKind::Connect => "connect",
        ErrorKind::Tls => "tls",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Closed => "closed",
        ErrorKind::Io => "io",
    };
    format!("{kind}: {}", e.message)
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The report of a probe whose target cannot be connected to at all.
pub fn refused(message: String) -> Report {
    Outcome::new().finish(false, Some(message))
}

#[cfg(test)]
mod tests;
