//! icmp: ping a host through the host's ICMP capability.
//!
//! Glue only: the request, the statistics and the verdict live in [`check`].

pub mod check;

use wasmprobe_sdk::{Context, MetricFamily, Plugin, ProbeError, Report, plugin};

struct Icmp;

impl Plugin for Icmp {
    type Config = check::Config;
    const NAME: &'static str = "icmp";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn families() -> Vec<MetricFamily> {
        check::families()
    }

    fn run(ctx: &Context, config: check::Config) -> Result<Report, ProbeError> {
        config.validate().map_err(ProbeError::InvalidConfig)?;
        let result = wasmprobe_sdk::icmp::echo(&config.request(&ctx.target));
        Ok(config.evaluate(result))
    }
}

plugin!(Icmp);
