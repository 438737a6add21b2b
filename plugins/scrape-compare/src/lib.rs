//! scrape-compare: checks what other exporters say. It scrapes one or more
//! Prometheus endpoints in one batch and fails when an exposition does not
//! parse, a series the operator relies on is missing, out of range or
//! stale, or replicas that should agree do not (report B's 14x pod drift).
//! Report A's hand-written sidecar existed to turn a portal's health into
//! `portal_up`; with this plugin a probe checks such a series where the
//! service already exports it.
//!
//! Glue only: the selectors, the exposition reader, the comparison and the
//! verdict live in modules that never call the host.

pub mod check;
pub mod compare;
pub mod config;
pub mod exposition;
pub mod selector;

use std::time::{SystemTime, UNIX_EPOCH};

use wasmprobe_sdk::{Context, MetricFamily, Plugin, ProbeError, Report, plugin};

struct ScrapeCompare;

impl Plugin for ScrapeCompare {
    type Config = config::Config;
    const NAME: &'static str = "scrape-compare";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn families() -> Vec<MetricFamily> {
        check::families()
    }

    fn run(ctx: &Context, config: config::Config) -> Result<Report, ProbeError> {
        let check = check::Check::new(config, &ctx.target).map_err(ProbeError::InvalidConfig)?;
        let (requests, concurrency) = check.requests();
        let results = wasmprobe_sdk::http::send_batch(&requests, concurrency);
        // WASI's wall clock, read once the answers are in, so a timestamp
        // an exporter just wrote is never in the future.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64());
        Ok(check.evaluate(&results, now))
    }
}

plugin!(ScrapeCompare);
