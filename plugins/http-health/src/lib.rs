//! http-health: blackbox_exporter's http prober as a wasmprobe plugin.
//!
//! Glue only: the request, the checks and the metrics live in [`check`].

pub mod check;
pub mod config;

use wasmprobe_sdk::http::RequestExt;
use wasmprobe_sdk::{Context, MetricFamily, Plugin, ProbeError, Report, plugin};

struct HttpHealth;

impl Plugin for HttpHealth {
    type Config = config::Config;
    const NAME: &'static str = "http-health";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn families() -> Vec<MetricFamily> {
        check::families()
    }

    fn run(ctx: &Context, config: config::Config) -> Result<Report, ProbeError> {
        let check = check::Check::new(config).map_err(ProbeError::InvalidConfig)?;
        let result = check.request(&ctx.target).send();
        Ok(check.evaluate(result))
    }
}

plugin!(HttpHealth);
