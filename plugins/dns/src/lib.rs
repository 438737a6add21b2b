//! dns: blackbox_exporter's dns prober as a wasmprobe plugin: one query to
//! the server named by the target, its rcode and records checked.
//!
//! Glue only: the query, the checks and the metrics live in [`check`].

pub mod check;
pub mod config;
mod rr;

use wasmprobe_sdk::{Context, MetricFamily, Plugin, ProbeError, Report, plugin};

struct Dns;

impl Plugin for Dns {
    type Config = config::Config;
    const NAME: &'static str = "dns";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn families() -> Vec<MetricFamily> {
        check::families()
    }

    fn run(ctx: &Context, config: config::Config) -> Result<Report, ProbeError> {
        let check = check::Check::new(config).map_err(ProbeError::InvalidConfig)?;
        let result = wasmprobe_sdk::dns::query(&check.request(&ctx.target));
        Ok(check.evaluate(result))
    }
}

plugin!(Dns);
