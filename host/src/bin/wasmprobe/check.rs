//! `wasmprobe check`: validate a config and its plugins, run nothing.
//! `wasmprobe compile` is the same check, saying what each plugin's
//! compile (or load from the cache) took: loading a plugin fills the
//! engine's compile cache, so a later start finds it compiled.

use std::process::ExitCode;

use wasmprobe::app;
use wasmprobe::config::{self, Diagnostics};
use wasmprobe::exposition::Exposition;

use crate::setup::{engine_for, probe_runtime, services};
use crate::{Exit, Status};

pub(crate) fn check(path: &std::path::Path, compile: bool) -> Result<ExitCode, Exit> {
    let (config, mut problems) =
        config::load_partial(path).map_err(|e| Exit(Status::BadInput, e.into()))?;
    let engine = engine_for(&config, false)?;
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
    if compile {
        match &config.engine.cache_dir {
            Some(dir) => println!("compile cache: {}", dir.display()),
            None => println!("compile cache: none (engine.cache_dir is unset): nothing is kept"),
        }
        for (name, loaded) in &set.plugins {
            println!(
                "{name}: {} ms (sha256 {})",
                loaded.plugin.compile_time.as_millis(),
                &loaded.plugin.sha256[..16]
            );
        }
    }
    // Discovered targets are someone else's data: the ones left out are
    // reported, not an error.
    for probe in set.probes.values() {
        let c = &probe.config;
        if c.has_many_targets() {
            println!("{}: {} targets", c.name, probe.runs.len());
        }
        for refused in &c.refused_targets {
            println!(
                "{}: target {:?} from {} refused: {}",
                c.name, refused.address, refused.source, refused.reason
            );
        }
    }
    println!(
        "{}: ok ({} probes, {} plugins, {} packages)",
        path.display(),
        set.probes.len(),
        set.plugins.len(),
        config.packages.len()
    );
    Ok(Status::Ok.into())
}
