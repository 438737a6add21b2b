//! What the probe decides: the request it asks for, and how a response (or
//! a failure) turns into blackbox_exporter's metrics and a verdict. Nothing
//! here calls the host, so all of it is tested natively.

use regex::Regex;
use wasmprobe_sdk::blackbox::{self, LastChainExpiry, TlsStyle, Unreached};
use wasmprobe_sdk::family::{FamilyExt, gauge};
use wasmprobe_sdk::http::{
    self, HttpError, HttpVersion, IpProtocol, PhaseTimings, Request, Response, TlsInfo,
};
use wasmprobe_sdk::{MetricFamily, Outcome, Report};

use crate::auth::Auth;
use crate::config::{self, Compression, Config};
use crate::json_cel::{self, Expression};

/// Every family this plugin emits, with blackbox_exporter's names.
pub fn families() -> Vec<MetricFamily> {
    let mut families = vec![
        gauge(
            "probe_http_duration_seconds",
            "Duration of the HTTP request by phase, summed over all redirects.",
        )
        .labels(&["phase"])
        .unit("seconds"),
        gauge(
            "probe_http_status_code",
            "Response HTTP status code (0 when no response arrived).",
        ),
        gauge(
            "probe_http_content_length",
            "Length of the HTTP content response (-1 when not given).",
        ),
        gauge(
            "probe_http_uncompressed_body_length",
            "Length of the uncompressed response body.",
        ),
        gauge(
            "probe_http_version",
            "Returns the version of HTTP of the probe response.",
        ),
        gauge("probe_http_redirects", "The number of redirects."),
        gauge(
            "probe_http_ssl",
            "Indicates if SSL was used for the final redirect.",
        ),
        gauge(
            "probe_failed_due_to_regex",
            "Indicates if probe failed due to regex.",
        ),
        gauge(
            "probe_failed_due_to_cel",
            "Indicates if probe failed due to CEL expression not matching.",
        ),
        gauge(
            "probe_http_last_modified_timestamp_seconds",
            "Returns the Last-Modified HTTP response header in unixtime.",
        )
        .unit("seconds"),
    ];
    families.extend(blackbox::address_families());
    families.extend(blackbox::tls_families(TLS));
    families.extend([
        gauge(
            "probe_tls_cipher_info",
            "Returns the TLS cipher suite negotiated.",
        )
        .labels(&["cipher"]),
        gauge(
            "probe_tls_certificate_verified",
            "Whether the server's certificate chain verified against the trusted roots.",
        ),
    ]);
    families
}

/// The TLS families as http-health has always reported them: the chain's
/// expiry whether or not it verified, certificate text uncut.
const TLS: TlsStyle = TlsStyle {
    last_chain_expiry: LastChainExpiry::Always,
    cut_long_labels: false,
};

/// A config with its regular expressions and CEL expressions compiled and
/// its credential keys checked.
#[derive(Debug)]
pub struct Check {
    config: Config,
    body_match: Vec<Regex>,
    body_not_match: Vec<Regex>,
    header_match: Vec<(String, Regex)>,
    header_not_match: Vec<(String, Regex, bool)>,
    cel_match: Option<Expression>,
    cel_not_match: Option<Expression>,
    auth: Auth,
}

fn compile(re: &str, key: &str) -> Result<Regex, String> {
    Regex::new(re).map_err(|e| format!("{key}: invalid regular expression {re:?}: {e}"))
}

impl Check {
    pub fn new(config: Config) -> Result<Check, String> {
        let body_match = config
            .fail_if_body_matches_regexp
            .iter()
            .map(|r| compile(r, "fail_if_body_matches_regexp"))
            .collect::<Result<_, _>>()?;
        let body_not_match = config
            .fail_if_body_not_matches_regexp
            .iter()
            .map(|r| compile(r, "fail_if_body_not_matches_regexp"))
            .collect::<Result<_, _>>()?;
        let header_match = config
            .fail_if_header_matches
            .iter()
            .map(|h| {
                Ok((
                    h.header.clone(),
                    compile(&h.regexp, "fail_if_header_matches")?,
                ))
            })
            .collect::<Result<_, String>>()?;
        let header_not_match = config
            .fail_if_header_not_matches
            .iter()
            .map(|h| {
                Ok((
                    h.header.clone(),
                    compile(&h.regexp, "fail_if_header_not_matches")?,
                    h.allow_missing,
                ))
            })
            .collect::<Result<_, String>>()?;
        for v in &config.valid_http_versions {
            if version_number(v).is_none() {
                return Err(format!(
                    "valid_http_versions: {v:?} is not one of HTTP/1.0, HTTP/1.1, HTTP/2.0"
                ));
            }
        }
        let cel_match = config
            .fail_if_body_json_matches_cel
            .as_deref()
            .map(|e| Expression::parse(e, "fail_if_body_json_matches_cel"))
            .transpose()?;
        let cel_not_match = config
            .fail_if_body_json_not_matches_cel
            .as_deref()
            .map(|e| Expression::parse(e, "fail_if_body_json_not_matches_cel"))
            .transpose()?;
        let auth = Auth::from_config(&config)?;
        Ok(Check {
            config,
            body_match,
            body_not_match,
            header_match,
            header_not_match,
            cel_match,
            cel_not_match,
            auth,
        })
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    fn has_cel(&self) -> bool {
        self.cel_match.is_some() || self.cel_not_match.is_some()
    }

    /// A request to `url` with the probe's transport settings (IP
    /// protocol, HTTP/2) and nothing else: the base of the probe's request
    /// and of an OAuth 2.0 token request.
    pub fn transport(&self, method: &str, url: &str) -> Request {
        let c = &self.config;
        let mut req = http::request(method, url);
        req.preferred_ip_protocol = Some(match c.preferred_ip_protocol {
            config::IpProtocol::Ip4 => IpProtocol::Ip4,
            config::IpProtocol::Ip6 => IpProtocol::Ip6,
        });
        req.ip_protocol_fallback = c.ip_protocol_fallback;
        req.enable_http2 = c.enable_http2;
        req
    }

    /// The request for `target`, with `authorization` as its
    /// `Authorization` header (`headers` cannot hold one).
    pub fn request(&self, target: &str, authorization: Option<&str>) -> Request {
        let c = &self.config;
        let mut req = self.transport(&c.method, target);
        req.headers = c
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(value) = authorization {
            req.headers.push(("Authorization".into(), value.into()));
        }
        if let Some(compression) = c.compression {
            req.decompress = true;
            if !c
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("accept-encoding"))
            {
                let coding = match compression {
                    Compression::Gzip => "gzip",
                    Compression::Deflate => "deflate",
                };
                req.headers.push(("Accept-Encoding".into(), coding.into()));
            }
        }
        req.body = c.body.as_ref().map(|b| b.as_bytes().to_vec());
        req.follow_redirects = c.follow_redirects;
        req.max_redirects = c.max_redirects;
        // One byte past the limit tells "at the limit" from "over it".
        req.max_body_bytes = c.body_size_limit.map(|l| l.saturating_add(1));
        req
    }

    /// The report of a run that sent no request (a secret missing, the
    /// token endpoint failing): the zeroes of a request that got no answer.
    pub fn not_sent(&self, message: String) -> Report {
        let mut out = Outcome::new();
        let none = PhaseTimings {
            resolve: 0.0,
            connect: 0.0,
            tls: 0.0,
            processing: 0.0,
            transfer: 0.0,
        };
        phases(&mut out, &none);
        self.unanswered(&mut out, 0);
        out.finish(false, Some(message))
    }

    /// The gauges of a request that got no answer.
    fn unanswered(&self, out: &mut Outcome, redirects: u32) {
        out.set("probe_http_status_code", 0.0)
            .set("probe_http_content_length", 0.0)
            .set("probe_http_uncompressed_body_length", 0.0)
            .set("probe_http_version", 0.0)
            .set("probe_http_redirects", f64::from(redirects))
            .set("probe_http_ssl", 0.0)
            .set("probe_failed_due_to_regex", 0.0);
        if self.has_cel() {
            out.set("probe_failed_due_to_cel", 0.0);
        }
    }

    /// Metrics and verdict of one exchange.
    pub fn evaluate(&self, result: Result<Response, HttpError>) -> Report {
        let mut out = Outcome::new();
        match result {
            Ok(resp) => self.evaluate_response(resp, out),
            Err(err) => {
                phases(&mut out, &err.timings);
                address(&mut out, err.remote_addr.as_deref(), err.ip_protocol);
                self.unanswered(&mut out, err.redirects);
                if let Some(tls) = &err.tls {
                    tls_facts(&mut out, tls);
                }
                let message = format!("{:?}: {}", err.kind, err.message);
                out.finish(false, Some(message))
            }
        }
    }

    fn evaluate_response(&self, resp: Response, mut out: Outcome) -> Report {
        let c = &self.config;
        phases(&mut out, &resp.timings);
        address(&mut out, Some(&resp.remote_addr), Some(resp.ip_protocol));
        let version = match resp.version {
            HttpVersion::Http10 => "HTTP/1.0",
            HttpVersion::Http11 => "HTTP/1.1",
            HttpVersion::Http2 => "HTTP/2.0",
        };
        let ssl = resp.final_url.starts_with("https:") && resp.tls.is_some();
        out.set("probe_http_status_code", f64::from(resp.status))
            .set(
                "probe_http_content_length",
                resp.content_length.map_or(-1.0, |l| l as f64),
            )
            .set(
                "probe_http_uncompressed_body_length",
                resp.body.len() as f64,
            )
            .set("probe_http_version", version_number(version).unwrap_or(0.0))
            .set("probe_http_redirects", f64::from(resp.redirects))
            .set("probe_http_ssl", if ssl { 1.0 } else { 0.0 });
        if let Some(lm) = resp.header_values("last-modified").next()
            && let Ok(t) = httpdate::parse_http_date(lm)
            && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
        {
            out.set(
                "probe_http_last_modified_timestamp_seconds",
                d.as_secs() as f64,
            );
        }
        if let Some(tls) = &resp.tls {
            tls_facts(&mut out, tls);
        }

        let mut failures: Vec<String> = Vec::new();
        let status_ok = if c.valid_status_codes.is_empty() {
            (200..300).contains(&resp.status)
        } else {
            c.valid_status_codes.contains(&resp.status)
        };
        if !status_ok {
            failures.push(format!("invalid HTTP response status code {}", resp.status));
        }
        if !c.valid_http_versions.is_empty() && !c.valid_http_versions.iter().any(|v| v == version)
        {
            failures.push(format!("invalid HTTP version {version}"));
        }
        if let Some(limit) = c.body_size_limit
            && (resp.body.len() as u64 > limit || resp.body_truncated)
        {
            failures.push(format!(
                "body is larger than body_size_limit ({limit} bytes)"
            ));
        } else if resp.body_truncated {
            failures.push("body is larger than the probe's limits.max_body".into());
        }
        let mut regex_failed = false;
        if status_ok {
            let body = String::from_utf8_lossy(&resp.body);
            for re in &self.body_match {
                if re.is_match(&body) {
                    regex_failed = true;
                    failures.push(format!("body matched regular expression {:?}", re.as_str()));
                }
            }
            for re in &self.body_not_match {
                if !re.is_match(&body) {
                    regex_failed = true;
                    failures.push(format!(
                        "body did not match regular expression {:?}",
                        re.as_str()
                    ));
                }
            }
            for (name, re) in &self.header_match {
                if resp.header_values(name).any(|v| re.is_match(v)) {
                    regex_failed = true;
                    failures.push(format!(
                        "header {name:?} matched regular expression {:?}",
                        re.as_str()
                    ));
                }
            }
            for (name, re, allow_missing) in &self.header_not_match {
                let mut values = resp.header_values(name).peekable();
                if values.peek().is_none() {
                    if !allow_missing {
                        regex_failed = true;
                        failures.push(format!("header {name:?} is missing"));
                    }
                } else if !values.any(|v| re.is_match(v)) {
                    regex_failed = true;
                    failures.push(format!(
                        "header {name:?} did not match regular expression {:?}",
                        re.as_str()
                    ));
                }
            }
        }
        out.set(
            "probe_failed_due_to_regex",
            if regex_failed { 1.0 } else { 0.0 },
        );
        // Like the regular expressions, evaluated once the status passed;
        // the gauge only when an expression is configured, as in
        // blackbox_exporter.
        if self.has_cel() {
            let cel_failures = if status_ok {
                self.cel_failures(&resp.body)
            } else {
                Vec::new()
            };
            out.set(
                "probe_failed_due_to_cel",
                if cel_failures.is_empty() { 0.0 } else { 1.0 },
            );
            failures.extend(cel_failures);
        }
        if c.fail_if_ssl && ssl {
            failures.push("final request was over SSL".into());
        }
        if c.fail_if_not_ssl && !ssl {
            failures.push("final request was not over SSL".into());
        }
        let success = failures.is_empty();
        out.finish(success, (!success).then(|| failures.join("; ")))
    }
}

impl Check {
    /// Why the CEL expressions fail `body`: none when they pass.
    fn cel_failures(&self, body: &[u8]) -> Vec<String> {
        let body = match json_cel::Body::parse(body) {
            Ok(b) => b,
            Err(e) => return vec![e],
        };
        let mut failures = Vec::new();
        if let Some(e) = &self.cel_match {
            match e.matches(&body) {
                Ok(true) => failures.push(format!("body matched CEL expression {:?}", e.source())),
                Ok(false) => {}
                Err(why) => failures.push(why),
            }
        }
        if let Some(e) = &self.cel_not_match {
            match e.matches(&body) {
                Ok(true) => {}
                Ok(false) => failures.push(format!(
                    "body did not match CEL expression {:?}",
                    e.source()
                )),
                Err(why) => failures.push(why),
            }
        }
        failures
    }
}

fn version_number(v: &str) -> Option<f64> {
    match v {
        "HTTP/1.0" => Some(1.0),
        "HTTP/1.1" => Some(1.1),
        "HTTP/2.0" | "HTTP/2" => Some(2.0),
        _ => None,
    }
}

fn phases(out: &mut Outcome, t: &http::PhaseTimings) {
    for (phase, v) in [
        ("resolve", t.resolve),
        ("connect", t.connect),
        ("tls", t.tls),
        ("processing", t.processing),
        ("transfer", t.transfer),
    ] {
        out.push("probe_http_duration_seconds", &[("phase", phase)], v);
    }
    blackbox::set_dns_lookup_time(out, t.resolve);
}

/// The address facts only once an address was reached: left out before,
/// as http-health has always done.
fn address(out: &mut Outcome, addr: Option<&str>, protocol: Option<IpProtocol>) {
    blackbox::set_address(out, addr, protocol, Unreached::Omit);
}

fn tls_facts(out: &mut Outcome, tls: &TlsInfo) {
    blackbox::set_tls(out, tls, TLS);
    if !tls.cipher.is_empty() {
        out.push("probe_tls_cipher_info", &[("cipher", &tls.cipher)], 1.0);
    }
    out.set(
        "probe_tls_certificate_verified",
        if tls.verified { 1.0 } else { 0.0 },
    );
}

#[cfg(test)]
mod tests;
