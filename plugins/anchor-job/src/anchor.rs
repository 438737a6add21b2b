//! What one anchoring run decides: whether the job is configured, which
//! batch it anchors, what the ledger said, and the metrics. Nothing here
//! calls the host; `lib.rs` does the calls and hands the answers in.
//!
//! The job degrades instead of crash-looping: a missing credential or
//! ledger is `anchor_configured 0` and a failed probe with a reason, a
//! failing ledger is a counted failure with a bounded reason, and the last
//! success stays visible for staleness alerts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmprobe_sdk::family::{FamilyExt, counter, gauge, histogram};
use wasmprobe_sdk::http::{self, HttpError, Request, Response};
use wasmprobe_sdk::{MetricFamily, Outcome, Report};

use crate::merkle::Hash;

/// Why an attempt failed: every value of `anchor_failures_total{reason}`.
pub const FAILURE_REASONS: &[&str] = &[
    "batch_unavailable",
    "empty_batch",
    "ledger_unavailable",
    "ledger_unreachable",
    "unauthorized",
    "ledger_error",
    "invalid_receipt",
];

/// Duration buckets, seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ledger {
    /// Offline: a deterministic receipt derived from the root.
    #[default]
    Mock,
    /// POST the root to `ledger_url` and validate the receipt it returns.
    Http,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Receipts generated per run when no `batch_url` is set.
    pub batch_size: u32,
    /// Fetch the batch instead: a JSON array of receipts (strings, or
    /// objects hashed as their JSON text).
    pub batch_url: Option<String>,
    pub ledger: Ledger,
    /// The HTTP ledger's anchoring endpoint.
    pub ledger_url: Option<String>,
    /// Name of the bearer token in the probe's `secrets` table.
    pub credential: String,
    /// Mock ledger: fail every Nth run (to exercise alerts).
    pub mock_fail_every: Option<u32>,
    /// Mock ledger: fail this share of runs, chosen by the root's hash.
    pub mock_failure_ratio: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            batch_size: 64,
            batch_url: None,
            ledger: Ledger::Mock,
            ledger_url: None,
            credential: "ledger_token".into(),
            mock_fail_every: None,
            mock_failure_ratio: 0.0,
        }
    }
}

pub fn families() -> Vec<MetricFamily> {
    vec![
        counter(
            "anchor_attempts_total",
            "Anchoring attempts (runs with a configured ledger).",
        ),
        counter(
            "anchor_success_total",
            "Batches anchored and their receipt validated.",
        ),
        counter("anchor_failures_total", "Failed attempts, by reason.").labels(&["reason"]),
        gauge(
            "anchor_last_success_timestamp_seconds",
            "When a batch was last anchored, Unix seconds.",
        )
        .unit("seconds"),
        gauge("anchor_batch_size", "Receipts in the last batch."),
        histogram(
            "anchor_duration_seconds",
            "Time to fetch, hash and anchor a batch.",
            DURATION_BUCKETS,
        )
        .unit("seconds"),
        gauge(
            "anchor_configured",
            "1 when the job has what it needs (ledger, credential), else 0.",
        ),
    ]
}

/// A ledger's receipt for a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub root: String,
    pub anchor_id: String,
    pub height: u64,
}

/// The mock ledger's receipt: derived from the root alone.
pub fn mock_receipt(root: &Hash, height: u64) -> Receipt {
    let mut h = Sha256::new();
    h.update(b"wasmprobe-mock-ledger");
    h.update(root);
    Receipt {
        root: hex::encode(root),
        anchor_id: hex::encode(h.finalize())[..32].to_string(),
        height,
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.mock_failure_ratio) {
            return Err("mock_failure_ratio must be 0 to 1".into());
        }
        if self.mock_fail_every == Some(0) {
            return Err("mock_fail_every must be at least 1".into());
        }
        if self.batch_size > 1_000_000 {
            return Err("batch_size must be at most 1000000".into());
        }
        Ok(())
    }

    /// Why the job cannot run, if it cannot.
    pub fn unconfigured(&self, credential: Option<&str>) -> Option<String> {
        match self.ledger {
            Ledger::Mock => None,
            Ledger::Http if self.ledger_url.is_none() => {
                Some("the http ledger needs `ledger_url`".into())
            }
            Ledger::Http if credential.is_none() => Some(format!(
                "no credential: the probe's `secrets.{}` is not set, or its variable or file is missing",
                self.credential
            )),
            Ledger::Http => None,
        }
    }

    /// Receipts made up for run `run` of `probe`.
    pub fn generate_batch(&self, probe: &str, run: u64) -> Vec<Vec<u8>> {
        (0..self.batch_size)
            .map(|i| format!("receipt/{probe}/{run}/{i}").into_bytes())
            .collect()
    }

    /// The mock ledger's answer for run `run`.
    pub fn mock_anchor(&self, root: &Hash, run: u64) -> Result<Receipt, &'static str> {
        let every = self
            .mock_fail_every
            .is_some_and(|k| run.is_multiple_of(u64::from(k)));
        let draw = u64::from_be_bytes([
            root[0], root[1], root[2], root[3], root[4], root[5], root[6], root[7],
        ]) as f64
            / u64::MAX as f64;
        if every || draw < self.mock_failure_ratio {
            return Err("ledger_unavailable");
        }
        Ok(mock_receipt(root, run))
    }

    /// The HTTP ledger request for a root.
    pub fn ledger_request(&self, root: &Hash, size: usize, token: &str) -> Option<Request> {
        let url = self.ledger_url.as_deref()?;
        let body = serde_json::json!({ "root": hex::encode(root), "size": size });
        let mut req = http::request("POST", url);
        req.headers = vec![
            ("content-type".into(), "application/json".into()),
            ("authorization".into(), format!("Bearer {token}")),
        ];
        req.body = Some(body.to_string().into_bytes());
        req.follow_redirects = false;
        req.preferred_ip_protocol = None;
        req.max_body_bytes = Some(64 << 10);
        Some(req)
    }
}

/// Reads a fetched batch: a JSON array of receipts.
pub fn parse_batch(result: Result<Response, HttpError>) -> Result<Vec<Vec<u8>>, String> {
    let resp = result.map_err(|e| format!("batch fetch failed: {}", e.message))?;
    if !(200..300).contains(&resp.status) {
        return Err(format!("batch fetch answered {}", resp.status));
    }
    let items: Vec<serde_json::Value> = serde_json::from_slice(&resp.body)
        .map_err(|e| format!("batch is not a JSON array: {e}"))?;
    Ok(items
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => s.into_bytes(),
            other => other.to_string().into_bytes(),
        })
        .collect())
}

/// Validates the HTTP ledger's answer for `root`.
pub fn parse_ledger(
    result: Result<Response, HttpError>,
    root: &Hash,
) -> Result<Receipt, (&'static str, String)> {
    let resp = result.map_err(|e| {
        (
            "ledger_unreachable",
            format!("ledger unreachable: {}", e.message),
        )
    })?;
    match resp.status {
        200..=299 => {}
        401 | 403 => {
            return Err((
                "unauthorized",
                format!("ledger refused the credential ({})", resp.status),
            ));
        }
        s => return Err(("ledger_error", format!("ledger answered {s}"))),
    }
    let receipt: Receipt = serde_json::from_slice(&resp.body)
        .map_err(|e| ("invalid_receipt", format!("receipt is not valid JSON: {e}")))?;
    if receipt.root != hex::encode(root) {
        return Err(("invalid_receipt", "receipt is for another root".into()));
    }
    if receipt.anchor_id.trim().is_empty() {
        return Err(("invalid_receipt", "receipt has no anchor_id".into()));
    }
    Ok(receipt)
}

/// How a run ended, and what it must report.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    Unconfigured(String),
    Anchored {
        batch: usize,
        receipt: Receipt,
    },
    Failed {
        batch: Option<usize>,
        reason: &'static str,
        message: String,
    },
}

/// The report of a run: `last_success` is the timestamp kept across runs
/// (already updated for a success), `seconds` how long the attempt took.
pub fn report(ended: &Ended, last_success: Option<f64>, seconds: f64) -> Report {
    let mut out = Outcome::new();
    if let Some(t) = last_success {
        out.set("anchor_last_success_timestamp_seconds", t);
    }
    let attempt = |out: &mut Outcome, failed: Option<&str>| {
        out.set("anchor_configured", 1.0)
            .add("anchor_attempts_total", 1.0)
            .add(
                "anchor_success_total",
                if failed.is_none() { 1.0 } else { 0.0 },
            )
            .observe("anchor_duration_seconds", seconds);
        for reason in FAILURE_REASONS {
            let inc = if failed == Some(*reason) { 1.0 } else { 0.0 };
            out.push("anchor_failures_total", &[("reason", reason)], inc);
        }
    };
    match ended {
        Ended::Unconfigured(why) => {
            out.set("anchor_configured", 0.0);
            out.finish(false, Some(format!("not configured: {why}")))
        }
        Ended::Anchored { batch, receipt } => {
            attempt(&mut out, None);
            out.set("anchor_batch_size", *batch as f64);
            let _ = receipt;
            out.finish(true, None)
        }
        Ended::Failed {
            batch,
            reason,
            message,
        } => {
            attempt(&mut out, Some(reason));
            if let Some(b) = batch {
                out.set("anchor_batch_size", *b as f64);
            }
            out.finish(false, Some(format!("{reason}: {message}")))
        }
    }
}

#[cfg(test)]
mod tests;
