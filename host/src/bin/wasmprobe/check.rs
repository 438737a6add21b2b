//! `wasmprobe check`: validate a config and its plugins, run nothing.

use std::process::ExitCode;

use wasmprobe::app;
use wasmprobe::config::{self, Diagnostics};
use wasmprobe::exposition::Exposition;

use crate::setup::{engine_for, probe_runtime, services};
use crate::{Exit, Status};

pub(crate) fn check(path: &std::path::Path) -> Result<ExitCode, Exit> {
    let (config, mut problems) =
        config::load_partial(path).map_err(|e| Exit(Status::BadInput, e.into()))?;
    let engine = engine_for(&config)?;
    let rt = probe_runtime(1)?;
    let exposition = Exposition::new();
    let services = services(&exposition);
    let prepared = rt.block_on(app::prepare(&config, &engine, &services, &exposition, None));
    for package in &config.packages {
        if let Some(refused) = &package.refused {
            problems.extend(refused.0.iter().cloned());
        }
    }
    let set = match prepared {
        Ok(set) if problems.is_empty() => set,
        Ok(_) => return Err(Exit(Status::BadInput, Diagnostics(problems).into())),
        Err(more) => {
            problems.extend(more.0);
            problems.sort_by_key(|d| (d.location.line, d.location.column));
            return Err(Exit(Status::BadInput, Diagnostics(problems).into()));
        }
    };
    println!(
        "{}: ok ({} probes, {} plugins, {} packages)",
        path.display(),
        set.probes.len(),
        set.plugins.len(),
        config.packages.len()
    );
    Ok(Status::Ok.into())
}
