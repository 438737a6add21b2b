//! What every command that runs plugins sets up: the config, the engine,
//! the process's services and the probe runtime.

use std::sync::Arc;

use anyhow::Context;

use wasmprobe::app;
use wasmprobe::config::{self, Config};
use wasmprobe::exposition::Exposition;
use wasmprobe::hostcalls::Services;
use wasmprobe::hostcalls::icmp::IcmpService;
use wasmprobe::runtime::WasmEngine;
use wasmprobe::runtime::compiler_process::CompilerProcess;

use crate::{Exit, Status, exit};

pub(crate) fn load_config(path: &std::path::Path) -> Result<Config, Exit> {
    config::load(path).map_err(|e| Exit(Status::BadInput, e.into()))
}

/// The engine for `config`. `tiered` lets plugins start on the baseline
/// compiler (a long-running engine); a command that runs and exits compiles
/// optimized code at once, so that the cache it fills is the one kept.
pub(crate) fn engine_for(config: &Config, tiered: bool) -> Result<Arc<WasmEngine>, Exit> {
    let cache = match &config.engine.cache_dir {
        Some(d) => Some(
            std::path::absolute(d)
                .context("cannot resolve cache directory")
                .map_err(exit(Status::Environment))?,
        ),
        None => None,
    };
    let engine = WasmEngine::new(app::pool_size(config), cache.as_deref())
        .map_err(|e| Exit(Status::Environment, e.into()))?;
    if !tiered {
        return Ok(Arc::new(engine));
    }
    Ok(Arc::new(
        engine
            .tiered()
            .optimize_in_child(CompilerProcess::this_program()),
    ))
}

/// Finds the ICMP sockets this process may open, and says so.
/// The process-wide services capability units build grants from.
pub(crate) fn services(exposition: &Exposition) -> Services {
    let icmp = IcmpService::detect();
    tracing::info!(
        ipv4 = icmp.v4.as_str(),
        ipv6 = icmp.v6.as_str(),
        "ICMP sockets"
    );
    exposition.global.icmp_sockets_detected(icmp.v4, icmp.v6);
    Services::default().with(Arc::new(icmp))
}

pub(crate) fn probe_runtime(threads: usize) -> Result<tokio::runtime::Runtime, Exit> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("wasmprobe-probe")
        .enable_all()
        .build()
        .context("cannot start the probe runtime")
        .map_err(exit(Status::Environment))
}

/// Everything an on-demand command runs probes with: the config's probes
/// prepared (plugins compiled) on a one-thread runtime.
pub(crate) struct Prepared {
    pub(crate) engine: Arc<WasmEngine>,
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) exposition: Exposition,
    pub(crate) set: app::ProbeSet,
}

pub(crate) fn prepare(config: &Config) -> Result<Prepared, Exit> {
    let engine = engine_for(config, false)?;
    let rt = probe_runtime(1)?;
    let exposition = Exposition::new();
    let services = services(&exposition);
    let set = rt
        .block_on(app::prepare(config, &engine, &services, &exposition, None))
        .map_err(|d| Exit(Status::BadInput, anyhow::Error::new(d)))?;
    Ok(Prepared {
        engine,
        rt,
        exposition,
        set,
    })
}
