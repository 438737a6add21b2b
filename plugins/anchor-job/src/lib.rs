//! anchor-job: anchors the Merkle root of a batch of receipts to a ledger
//! on every run, the job report B's scheduler ran as scripts.
//!
//! Glue only: the host calls (state, secrets, http) are made here; every
//! decision is in [`anchor`], the hashing in [`merkle`].

pub mod anchor;
pub mod merkle;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anchor::{Ended, Ledger};
use wasmprobe_sdk::http::RequestExt;
use wasmprobe_sdk::{Context, MetricFamily, Plugin, ProbeError, Report, plugin, state};

struct AnchorJob;

impl Plugin for AnchorJob {
    type Config = anchor::Config;
    const NAME: &'static str = "anchor-job";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn families() -> Vec<MetricFamily> {
        anchor::families()
    }

    fn run(ctx: &Context, config: anchor::Config) -> Result<Report, ProbeError> {
        config.validate().map_err(ProbeError::InvalidConfig)?;
        let mut last_success: Option<f64> = state::get_json("last_success");
        let token = match config.ledger {
            Ledger::Http => wasmprobe_sdk::secrets::get(&config.credential),
            Ledger::Mock => None,
        };
        if let Some(why) = config.unconfigured(token.as_deref()) {
            return Ok(anchor::report(&Ended::Unconfigured(why), last_success, 0.0));
        }
        let run: u64 = state::get_json("runs").unwrap_or(0) + 1;
        let _ = state::set_json("runs", &run);

        let started = Instant::now();
        let ended = attempt(ctx, &config, run, token.as_deref());
        if matches!(ended, Ended::Anchored { .. }) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            last_success = Some(now);
            let _ = state::set_json("last_success", &now);
        }
        Ok(anchor::report(
            &ended,
            last_success,
            started.elapsed().as_secs_f64(),
        ))
    }
}

fn attempt(ctx: &Context, config: &anchor::Config, run: u64, token: Option<&str>) -> Ended {
    let batch = match &config.batch_url {
        Some(url) => match anchor::parse_batch(wasmprobe_sdk::http::get(url).send()) {
            Ok(b) => b,
            Err(message) => {
                return Ended::Failed {
                    batch: None,
                    reason: "batch_unavailable",
                    message,
                };
            }
        },
        None => config.generate_batch(&ctx.probe, run),
    };
    let Some(root) = merkle::root(&batch) else {
        return Ended::Failed {
            batch: Some(0),
            reason: "empty_batch",
            message: "the batch holds no receipts".into(),
        };
    };
    let size = batch.len();
    let receipt = match config.ledger {
        Ledger::Mock => config.mock_anchor(&root, run).map_err(|reason| {
            (
                reason,
                "the mock ledger failed this run (failure injection)".to_string(),
            )
        }),
        Ledger::Http => match config.ledger_request(&root, size, token.unwrap_or_default()) {
            Some(req) => anchor::parse_ledger(req.send(), &root),
            None => Err(("ledger_error", "no ledger_url".to_string())),
        },
    };
    match receipt {
        Ok(receipt) => Ended::Anchored {
            batch: size,
            receipt,
        },
        Err((reason, message)) => Ended::Failed {
            batch: Some(size),
            reason,
            message,
        },
    }
}

plugin!(AnchorJob);
