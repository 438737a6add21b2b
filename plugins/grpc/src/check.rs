//! What the probe decides: the request it sends for a target, and how the
//! answer (or the failure) turns into blackbox_exporter's metrics and a
//! verdict. Nothing here calls the host, so all of it is tested natively.
//!
//! The report keeps blackbox_exporter's two shapes: before an address was
//! dialled (the name did not resolve, the allow-list or a run budget
//! refused) it looks like its failed resolution: only the `resolve` phase,
//! status code 0 and no `probe_grpc_healthcheck_response`. Once dialled,
//! every run has both phases, a status code and one series per serving
//! status.

use wasmprobe_sdk::blackbox::{self, LastChainExpiry, TlsStyle, Unreached};
use wasmprobe_sdk::family::{FamilyExt, gauge};
use wasmprobe_sdk::http::{
    self, ErrorKind, HttpError, IpProtocol, PhaseTimings, Request, Response,
};
use wasmprobe_sdk::{MetricFamily, Outcome, Report};

use crate::config::{self, Config};
use crate::rpc::{self, Code};
use crate::wire::{self, ServingStatus};

/// blackbox_exporter's grpc prober reports no chain expiry; certificate
/// text comes from the peer and is cut so a long subject cannot drop the
/// series.
const TLS: TlsStyle = TlsStyle {
    last_chain_expiry: LastChainExpiry::Never,
    cut_long_labels: true,
};

/// Every family this plugin emits, with blackbox_exporter's names.
pub fn families() -> Vec<MetricFamily> {
    let mut families = vec![
        gauge(
            "probe_grpc_duration_seconds",
            "Duration of gRPC request by phase.",
        )
        .labels(&["phase"])
        .unit("seconds"),
        gauge(
            "probe_grpc_ssl",
            "Indicates if SSL was used for the connection.",
        ),
        gauge("probe_grpc_status_code", "Response gRPC status code."),
        gauge(
            "probe_grpc_healthcheck_response",
            "Response HealthCheck response.",
        )
        .labels(&["serving_status"]),
    ];
    families.extend(blackbox::address_families());
    families.extend(blackbox::tls_families(TLS));
    families
}

/// A config checked.
#[derive(Debug)]
pub struct Check {
    config: Config,
}

impl Check {
    pub fn new(config: Config) -> Result<Check, String> {
        if config.timeout_ms == Some(0) {
            return Err("timeout_ms must be above 0".into());
        }
        if let Some(name) = &config.tls_config.server_name {
            // The http capability verifies the name of the URL or the one
            // the operator set; a plugin cannot pick another.
            return Err(format!(
                "tls_config.server_name ({name:?}) is not supported by the grpc plugin: \
                 set server_name = {name:?} on the probe's tls table ([probes.NAME.tls])"
            ));
        }
        Ok(Check { config })
    }

    /// The call for `target` (`HOST:PORT`, `HOST`, `[v6]:PORT`), or why
    /// there is none.
    pub fn request(&self, target: &str) -> Result<Request, String> {
        let c = &self.config;
        let url = format!("{}{}", origin(target, c.tls)?, wire::PATH);
        let mut req = http::request("POST", &url);
        req.headers = vec![
            ("content-type".into(), "application/grpc".into()),
            // Required by gRPC: it tells proxies the client reads trailers.
            ("te".into(), "trailers".into()),
        ];
        req.body = Some(wire::request_body(&c.service));
        req.timeout_ms = c.timeout_ms;
        // A gRPC client follows no redirect.
        req.follow_redirects = false;
        req.max_redirects = 0;
        req.max_body_bytes = Some(wire::MAX_BODY);
        req.preferred_ip_protocol = Some(match c.preferred_ip_protocol {
            config::IpProtocol::Ip4 => IpProtocol::Ip4,
            config::IpProtocol::Ip6 => IpProtocol::Ip6,
        });
        req.ip_protocol_fallback = c.ip_protocol_fallback;
        req.enable_http2 = c.tls;
        req.http2_prior_knowledge = !c.tls;
        req.decompress = false;
        Ok(req)
    }

    /// Metrics and verdict of one call.
    pub fn evaluate(&self, result: Result<Response, HttpError>) -> Report {
        let mut out = Outcome::new();
        match result {
            Ok(resp) => {
                let t = &resp.timings;
                durations(&mut out, t.resolve, Some(check_seconds(t)));
                blackbox::set_dns_lookup_time(&mut out, t.resolve);
                blackbox::set_address(
                    &mut out,
                    Some(&resp.remote_addr),
                    Some(resp.ip_protocol),
                    Unreached::Zero,
                );
                out.set("probe_grpc_ssl", flag(resp.tls.is_some()));
                if let Some(tls) = &resp.tls {
                    blackbox::set_tls(&mut out, tls, TLS);
                }
                let answer = rpc::health(&resp);
                let (code, serving) = match &answer {
                    Ok(status) => (Code::OK, Some(*status)),
                    Err(e) => (e.code, None),
                };
                out.set("probe_grpc_status_code", f64::from(code.0));
                serving_statuses(&mut out, serving);
                match answer {
                    Ok(status) if status == ServingStatus::Serving as i32 => out.finish(true, None),
                    Ok(status) => {
                        let message =
                            format!("{} is {}", self.subject(), wire::status_name(status));
                        out.finish(false, Some(message))
                    }
                    Err(e) => out.finish(false, Some(format!("rpc: {e}"))),
                }
            }
            Err(e) => {
                let dialled = e.remote_addr.is_some();
                let check = dialled.then(|| check_seconds(&e.timings));
                durations(&mut out, e.timings.resolve, check);
                blackbox::set_dns_lookup_time(&mut out, e.timings.resolve);
                blackbox::set_address(
                    &mut out,
                    e.remote_addr.as_deref(),
                    e.ip_protocol,
                    Unreached::Zero,
                );
                out.set("probe_grpc_ssl", 0.0);
                if let Some(tls) = &e.tls {
                    blackbox::set_tls(&mut out, tls, TLS);
                }
                let failure = format!("{}: {}", kind_text(e.kind), e.message);
                let message = if dialled {
                    let code = Code::of_transport(e.kind);
                    out.set("probe_grpc_status_code", f64::from(code.0));
                    serving_statuses(&mut out, None);
                    format!("rpc: {code}: {failure}")
                } else {
                    out.set("probe_grpc_status_code", 0.0);
                    failure
                };
                out.finish(false, Some(message))
            }
        }
    }

    /// Who was asked, for messages.
    fn subject(&self) -> String {
        if self.config.service.is_empty() {
            "the server".into()
        } else {
            format!("service {:?}", self.config.service)
        }
    }
}

/// The origin to call for `target`: blackbox_exporter's target is
/// `HOST[:PORT]`, with the port of the scheme (80, 443) when absent. A
/// scheme may lead it, as blackbox_exporter allows, but only the one `tls`
/// implies: there it is ignored, here a contradiction is refused.
fn origin(target: &str, tls: bool) -> Result<String, String> {
    let scheme = if tls { "https" } else { "http" };
    let authority = match target.split_once("://") {
        Some((given, rest)) if given.eq_ignore_ascii_case(scheme) => rest,
        Some((given, _)) => {
            return Err(format!(
                "target {target:?}: scheme {given:?} contradicts tls = {tls} \
                 (the connection is {scheme})"
            ));
        }
        None => target,
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let refuse = || format!("target {target:?} is not HOST:PORT");
    if authority.is_empty()
        || authority.contains(['/', '?', '#', '@'])
        || authority.contains(char::is_whitespace)
    {
        return Err(refuse());
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(refuse)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(refuse)?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(format!(
                    "target {target:?} is not HOST:PORT (an IPv6 address goes in brackets)"
                ));
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(refuse());
    }
    Ok(format!("{scheme}://{authority}"))
}

/// blackbox_exporter's two phases: `resolve`, then `check` for everything
/// after it (connect, TLS, the call), which is absent when nothing was
/// dialled.
fn durations(out: &mut Outcome, resolve: f64, check: Option<f64>) {
    out.push(
        "probe_grpc_duration_seconds",
        &[("phase", "resolve")],
        resolve,
    );
    if let Some(check) = check {
        out.push("probe_grpc_duration_seconds", &[("phase", "check")], check);
    }
}

fn check_seconds(t: &PhaseTimings) -> f64 {
    t.connect + t.tls + t.processing + t.transfer
}

/// Every serving status at 0, and the one received at 1 (its number as
/// the label when the proto does not name it, as blackbox_exporter).
fn serving_statuses(out: &mut Outcome, received: Option<i32>) {
    for status in ServingStatus::ALL {
        let value = flag(received == Some(status as i32));
        out.push(
            "probe_grpc_healthcheck_response",
            &[("serving_status", status.name())],
            value,
        );
    }
    if let Some(other) = received.filter(|s| ServingStatus::try_from(*s).is_err()) {
        out.push(
            "probe_grpc_healthcheck_response",
            &[("serving_status", &wire::status_name(other))],
            1.0,
        );
    }
}

fn kind_text(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Denied => "denied",
        ErrorKind::InvalidRequest => "invalid request",
        ErrorKind::Dns => "dns",
        ErrorKind::Connect => "connect",
        ErrorKind::Tls => "tls",
        ErrorKind::Timeout => "timeout",
        ErrorKind::TooManyRedirects => "too many redirects",
        ErrorKind::Protocol => "protocol",
    }
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The report of a probe whose target cannot be called at all: the shape
/// of blackbox_exporter's when it cannot parse the target.
pub fn refused(message: String) -> Report {
    let mut out = Outcome::new();
    durations(&mut out, 0.0, None);
    out.set("probe_grpc_ssl", 0.0)
        .set("probe_grpc_status_code", 0.0);
    out.finish(false, Some(message))
}

#[cfg(test)]
mod tests;
