//! `wasmprobe probe`: one on-demand run, printed, optionally recorded or
//! replayed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use wasmprobe::exposition::Format;
use wasmprobe::hostcalls::tape::Tape;

use crate::setup::{Prepared, load_config, prepare};
use crate::{Exit, Status, exit};

/// `wasmprobe probe --record` / `--replay`.
pub(crate) enum TapeMode {
    Record(PathBuf),
    Replay(PathBuf),
}

pub(crate) fn probe_once(
    path: &std::path::Path,
    name: &str,
    target: Option<&str>,
    openmetrics: bool,
    tape_mode: Option<TapeMode>,
) -> Result<ExitCode, Exit> {
    let (tape, recorded_target) = match &tape_mode {
        None => (None, None),
        Some(TapeMode::Record(_)) => (Some(Arc::new(Tape::recorder())), None),
        Some(TapeMode::Replay(file)) => {
            let (tape, recording) =
                Tape::player(file).map_err(|e| Exit(Status::BadInput, e.into()))?;
            if recording.probe != name {
                tracing::warn!(
                    recorded = recording.probe,
                    probe = name,
                    "replaying a recording made with another probe"
                );
            }
            (Some(Arc::new(tape)), Some(recording.target))
        }
    };
    let target = target.or(recorded_target.as_deref());
    let mut config = load_config(path)?;
    let known: Vec<String> = config.probes.keys().map(ToString::to_string).collect();
    config.probes.retain(|k, _| k.as_str() == name);
    if config.probes.is_empty() {
        return Err(Exit(
            Status::BadInput,
            anyhow::anyhow!(
                "no probe {name:?} in {} (known: {})",
                path.display(),
                known.join(", ")
            ),
        ));
    }
    // The engine is held to the end: its ticker ends runs at their
    // deadlines.
    let Prepared {
        engine: _engine,
        rt,
        exposition,
        set,
    } = prepare(&config)?;
    let probe = set
        .probes
        .values()
        .next()
        .cloned()
        .context("probe was not prepared")
        .map_err(exit(Status::BadInput))?;
    let target = probe
        .on_demand_target(target)
        .map_err(|e| Exit(Status::BadInput, e.into()))?;
    let format = if openmetrics {
        Format::OpenMetrics
    } else {
        Format::Classic
    };
    let done = rt.block_on(probe.run_on_demand(
        &exposition,
        &target,
        wasmprobe::app::OnDemandRun {
            tape: tape.clone(),
            format,
            ..Default::default()
        },
    ));
    let mut tape_problems = Vec::new();
    match (&tape_mode, &tape) {
        (Some(TapeMode::Record(file)), Some(tape)) => {
            let n = tape
                .save(file, name, &target)
                .map_err(|e| Exit(Status::Environment, e.into()))?;
            eprintln!("recorded {n} call(s) to {}", file.display());
        }
        (Some(TapeMode::Replay(file)), Some(tape)) => {
            tape_problems = tape.problems();
            for p in &tape_problems {
                eprintln!("replay of {}: {p}", file.display());
            }
        }
        _ => {}
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(done.text.as_bytes());
        let _ = out.flush();
    }
    let (record, rejected) = (done.record, done.rejected);
    for sample in &done.rejected_samples {
        eprintln!("rejected sample {sample}");
    }
    eprintln!(
        "probe {name}: {}{} in {:.1} ms{}{}",
        record.result.as_str(),
        record
            .trap
            .map(|t| format!(" ({})", t.as_str()))
            .unwrap_or_default(),
        record.duration.as_secs_f64() * 1000.0,
        if rejected > 0 {
            format!(", {rejected} samples rejected")
        } else {
            String::new()
        },
        record.message.map(|m| format!(": {m}")).unwrap_or_default(),
    );
    Ok(if record.success && tape_problems.is_empty() {
        Status::Ok.into()
    } else {
        Status::ProbeFailed.into()
    })
}
