//! The partner's KPIs from a batch of exchanges: which requests were
//! filled, which dropped and why, how long each took, and whether each
//! response's provenance verifies. Nothing here calls the host.
//!
//! Names follow Prometheus conventions; the field reports' names map as
//! `treaty_rtt_ms` → `treaty_rtt_seconds` (histogram), `treaty_fill_rate`
//! (percent) → `treaty_fill_rate` (ratio 0..1), `treaty_dropped_requests`
//! → `treaty_dropped_requests_total{reason}`, `treaty_provenance_coverage`
//! (percent) → ratio 0..1.

use std::collections::BTreeMap;

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use schemars::JsonSchema;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use wasmprobe_sdk::family::{FamilyExt, counter, gauge, histogram};
use wasmprobe_sdk::http::{self, ErrorKind, HttpError, Request, Response};
use wasmprobe_sdk::{MetricFamily, Outcome, Report};

/// RTT buckets, seconds.
pub const RTT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0,
];

/// Why a request counts as dropped.
pub const DROP_REASONS: &[&str] = &["timeout", "transport", "status", "unfilled", "invalid_body"];

/// How responses prove where they come from: an Ed25519 signature over the
/// body, or (simpler) a SHA-256 digest of the body.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The partner's Ed25519 public key, base64 (32 bytes).
    pub ed25519_public_key: Option<String>,
    /// Header holding the base64 signature over the body.
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    /// Header holding the hex SHA-256 of the body (instead of a signature).
    pub digest_header: Option<String>,
}

fn default_signature_header() -> String {
    "x-treaty-signature".into()
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The partner endpoint; the probe's target when absent.
    pub url: Option<String>,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    /// Requests per run.
    pub requests: u32,
    /// Requests in flight at once.
    pub concurrency: u32,
    /// Milliseconds before a request counts as dropped (`timeout`).
    pub timeout_ms: u64,
    /// JSON pointer to a field of the response body that says whether the
    /// request was filled (e.g. `/filled`); absent: every 2xx is filled.
    pub filled_pointer: Option<String>,
    /// The value that field has when filled (default `true`).
    pub filled_value: Option<serde_json::Value>,
    pub provenance: Option<Provenance>,
    /// The probe succeeds when the fill rate is at least this...
    pub min_fill_rate: f64,
    /// ...and the provenance coverage at least this.
    pub min_provenance_coverage: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: None,
            method: "GET".into(),
            headers: BTreeMap::new(),
            body: None,
            requests: 20,
            concurrency: 4,
            timeout_ms: 2000,
            filled_pointer: None,
            filled_value: None,
            provenance: None,
            min_fill_rate: 0.0,
            min_provenance_coverage: 0.0,
        }
    }
}

pub fn families() -> Vec<MetricFamily> {
    vec![
        counter("treaty_requests_total", "Requests sent to the partner."),
        counter("treaty_filled_total", "Requests the partner filled."),
        counter(
            "treaty_dropped_requests_total",
            "Requests not filled, by reason: timeout, transport, status, unfilled, invalid_body.",
        )
        .labels(&["reason"]),
        counter(
            "treaty_provenance_verified_total",
            "Responses whose signature or digest verified.",
        ),
        gauge(
            "treaty_fill_rate",
            "Share of the last run's requests that were filled (0 to 1).",
        ),
        gauge(
            "treaty_drop_rate",
            "Share of the last run's requests that were dropped (0 to 1).",
        ),
        gauge(
            "treaty_provenance_coverage",
            "Share of the last run's responses whose provenance verified (0 to 1).",
        ),
        histogram(
            "treaty_rtt_seconds",
            "Round trip of every request, seconds.",
            RTT_BUCKETS,
        )
        .unit("seconds"),
    ]
}

enum Verifier {
    None,
    Signature { key: VerifyingKey, header: String },
    Digest { header: String },
}

/// A validated config.
pub struct Check {
    config: Config,
    verifier: Verifier,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How one request went.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    pub rtt: f64,
    /// `None` when filled, else the drop reason.
    pub dropped: Option<&'static str>,
    /// `None` when there was no 2xx response to verify.
    pub verified: Option<bool>,
}

fn total(t: &http::PhaseTimings) -> f64 {
    t.resolve + t.connect + t.tls + t.processing + t.transfer
}

impl Check {
    pub fn new(config: Config) -> Result<Check, String> {
        if config.requests == 0 || config.requests > 1000 {
            return Err("requests must be 1 to 1000".into());
        }
        let verifier = match &config.provenance {
            None => Verifier::None,
            Some(p) => match (&p.ed25519_public_key, &p.digest_header) {
                (Some(key), None) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(key.trim())
                        .map_err(|e| format!("provenance.ed25519_public_key is not base64: {e}"))?;
                    let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
                        "provenance.ed25519_public_key must be 32 bytes".to_string()
                    })?;
                    let key = VerifyingKey::from_bytes(&bytes).map_err(|e| {
                        format!("provenance.ed25519_public_key is not a valid key: {e}")
                    })?;
                    Verifier::Signature {
                        key,
                        header: p.signature_header.clone(),
                    }
                }
                (None, Some(header)) => Verifier::Digest {
                    header: header.clone(),
                },
                _ => {
                    return Err(
                        "provenance needs exactly one of ed25519_public_key or digest_header"
                            .into(),
                    );
                }
            },
        };
        Ok(Check { config, verifier })
    }

    /// The batch for one run and its concurrency.
    pub fn requests(&self, target: &str) -> (Vec<Request>, u32) {
        let c = &self.config;
        let url = c.url.as_deref().unwrap_or(target);
        let mut req = http::request(&c.method, url);
        req.headers = c
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        req.body = c.body.as_ref().map(|b| b.as_bytes().to_vec());
        req.timeout_ms = Some(c.timeout_ms);
        req.follow_redirects = false;
        req.preferred_ip_protocol = None;
        req.max_body_bytes = Some(1 << 20);
        (vec![req; c.requests as usize], c.concurrency.max(1))
    }

    fn verify(&self, resp: &Response) -> bool {
        let header = |name: &str| resp.header_values(name).next().map(str::trim);
        match &self.verifier {
            Verifier::None => false,
            Verifier::Digest { header: h } => header(h)
                .is_some_and(|d| d.eq_ignore_ascii_case(&hex::encode(Sha256::digest(&resp.body)))),
            Verifier::Signature { key, header: h } => header(h)
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .and_then(|s| Signature::from_slice(&s).ok())
                .is_some_and(|sig| key.verify_strict(&resp.body, &sig).is_ok()),
        }
    }

    /// Classifies one exchange.
    pub fn classify(&self, result: &Result<Response, HttpError>) -> Exchange {
        let resp = match result {
            Err(e) => {
                return Exchange {
                    rtt: total(&e.timings),
                    dropped: Some(if e.kind == ErrorKind::Timeout {
                        "timeout"
                    } else {
                        "transport"
                    }),
                    verified: None,
                };
            }
            Ok(r) => r,
        };
        let rtt = total(&resp.timings);
        if !(200..300).contains(&resp.status) {
            return Exchange {
                rtt,
                dropped: Some("status"),
                verified: None,
            };
        }
        let verified = match self.verifier {
            Verifier::None => None,
            _ => Some(self.verify(resp)),
        };
        let dropped = match &self.config.filled_pointer {
            None => None,
            Some(pointer) => match serde_json::from_slice::<serde_json::Value>(&resp.body) {
                Err(_) => Some("invalid_body"),
                Ok(body) => {
                    let want = self
                        .config
                        .filled_value
                        .clone()
                        .unwrap_or(serde_json::Value::Bool(true));
                    (body.pointer(pointer) != Some(&want)).then_some("unfilled")
                }
            },
        };
        Exchange {
            rtt,
            dropped,
            verified,
        }
    }

    /// Metrics and verdict of a batch.
    pub fn evaluate(&self, results: &[Result<Response, HttpError>]) -> Report {
        let outcomes: Vec<Exchange> = results.iter().map(|r| self.classify(r)).collect();
        let n = outcomes.len() as f64;
        let filled = outcomes.iter().filter(|o| o.dropped.is_none()).count() as f64;
        let responses = outcomes.iter().filter(|o| o.verified.is_some()).count() as f64;
        let verified = outcomes.iter().filter(|o| o.verified == Some(true)).count() as f64;
        let fill_rate = if n > 0.0 { filled / n } else { 0.0 };
        let coverage = if responses > 0.0 {
            verified / responses
        } else {
            0.0
        };

        let mut out = Outcome::new();
        out.add("treaty_requests_total", n)
            .add("treaty_filled_total", filled)
            .set("treaty_fill_rate", fill_rate)
            .set(
                "treaty_drop_rate",
                if n > 0.0 { (n - filled) / n } else { 0.0 },
            );
        for reason in DROP_REASONS {
            let count = outcomes
                .iter()
                .filter(|o| o.dropped == Some(*reason))
                .count() as f64;
            out.push(
                "treaty_dropped_requests_total",
                &[("reason", reason)],
                count,
            );
        }
        if !matches!(self.verifier, Verifier::None) {
            out.add("treaty_provenance_verified_total", verified)
                .set("treaty_provenance_coverage", coverage);
        }
        for o in &outcomes {
            out.observe("treaty_rtt_seconds", o.rtt);
        }

        let mut failures = Vec::new();
        if n == 0.0 {
            failures.push("no request was sent".to_string());
        }
        if fill_rate < self.config.min_fill_rate {
            failures.push(format!(
                "fill rate {fill_rate:.3} is below {}",
                self.config.min_fill_rate
            ));
        }
        if !matches!(self.verifier, Verifier::None)
            && coverage < self.config.min_provenance_coverage
        {
            failures.push(format!(
                "provenance coverage {coverage:.3} is below {}",
                self.config.min_provenance_coverage
            ));
        }
        let success = failures.is_empty();
        out.finish(success, (!success).then(|| failures.join("; ")))
    }
}

#[cfg(test)]
mod tests;
