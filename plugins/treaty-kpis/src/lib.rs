//! treaty-kpis: measures a partner service against its supply agreement.
//!
//! Glue only: the requests, the classification and the KPIs live in [`kpi`].

pub mod kpi;

use wasmprobe_sdk::{Context, MetricFamily, Plugin, ProbeError, Report, plugin};

struct TreatyKpis;

impl Plugin for TreatyKpis {
    type Config = kpi::Config;
    const NAME: &'static str = "treaty-kpis";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn families() -> Vec<MetricFamily> {
        kpi::families()
    }

    fn run(ctx: &Context, config: kpi::Config) -> Result<Report, ProbeError> {
        let check = kpi::Check::new(config).map_err(ProbeError::InvalidConfig)?;
        let (requests, concurrency) = check.requests(&ctx.target);
        let results = wasmprobe_sdk::http::send_batch(&requests, concurrency);
        Ok(check.evaluate(&results))
    }
}

plugin!(TreatyKpis);
