//! grpc: blackbox_exporter's grpc prober as a wasmprobe plugin: one
//! `grpc.health.v1.Health/Check` call to the target, over h2c or TLS.
//!
//! Glue only: the request, the reading of the answer and the metrics live
//! in [`check`], [`rpc`] and [`wire`], none of which calls the host.

pub mod check;
pub mod config;
pub mod rpc;
pub mod wire;

use wasmprobe_sdk::http::RequestExt;
use wasmprobe_sdk::{Context, MetricFamily, Plugin, ProbeError, Report, plugin};

struct Grpc;

impl Plugin for Grpc {
    type Config = config::Config;
    const NAME: &'static str = "grpc";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn families() -> Vec<MetricFamily> {
        check::families()
    }

    fn run(ctx: &Context, config: config::Config) -> Result<Report, ProbeError> {
        let check = check::Check::new(config).map_err(ProbeError::InvalidConfig)?;
        let req = match check.request(&ctx.target) {
            Ok(req) => req,
            Err(message) => return Ok(check::refused(message)),
        };
        Ok(check.evaluate(req.send()))
    }
}

plugin!(Grpc);
