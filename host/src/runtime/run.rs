//! One run of one probe: a fresh store, the plugin's `run()`, and a
//! bounded account of how it ended.
//!
//! The deadline is one async timeout around instantiation and the call.
//! Epoch interruption makes a computing plugin yield at every tick, so the
//! timeout ends a spinning plugin exactly as it ends one waiting in a host
//! call: the future is dropped with the store, and only this run is lost.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use wasmtime::{Store, Trap};

use super::cpu::{CpuSpent, measured};
use super::plugin::Plugin;
use super::record::{RunRecord, RunResult, Sample, TrapReason};
use super::store::{Grants, RunState};
use crate::bindings::wasmprobe::plugin::types::{ProbeContext, ProbeError, Report};
use crate::config::Limits;
use crate::hostcalls::secrets::{Revealed, redact};
use crate::hostcalls::state::ProbeState;
use crate::hostcalls::tape::Tape;
use crate::hostcalls::{RunScope, Usage};

/// Longest head start host calls take on the run's deadline.
const HOST_CALL_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

/// What a run needs besides the plugin.
#[derive(Debug)]
pub struct RunSpec<'a> {
    pub probe: &'a str,
    pub target: &'a str,
    /// The probe's config as JSON text.
    pub config: &'a str,
    pub limits: Limits,
    pub grants: &'a Grants,
    /// `None` for runs whose state must not persist (on-demand runs).
    pub state: Option<&'a ProbeState>,
    /// Record or replay the run's host calls.
    pub tape: Option<Arc<Tape>>,
    /// `/probe?hostname=`: the name its requests to the target's host
    /// present.
    pub hostname: Option<&'a str>,
}

/// Runs the plugin once and accounts for the outcome: what the plugin
/// said, redacted and within the run's output limits; validating it
/// against the plugin's families is the exposition's business.
pub async fn run(plugin: &Plugin, spec: RunSpec<'_>) -> RunRecord {
    let started = Instant::now();
    let deadline = started + spec.limits.timeout;
    // Host calls give up a little before the run's deadline, so the plugin
    // still gets to report the failure (with its timings) itself.
    let margin = (spec.limits.timeout / 10).min(HOST_CALL_MARGIN);
    let virtual_host = spec.hostname.and_then(|name| {
        let url = url::Url::parse(spec.target).ok()?;
        Some(crate::hostcalls::VirtualHost {
            target_host: url.host_str()?.trim_matches(['[', ']']).to_string(),
            name: name.to_string(),
        })
    });
    let scope = RunScope {
        virtual_host,
        probe: Arc::from(spec.probe),
        deadline: deadline - margin,
        limits: spec.limits,
        revealed: Revealed::default(),
        tape: spec.tape.clone(),
        state: spec.state.cloned(),
        usage: Arc::new(Usage::new(&spec.limits)),
    };
    let usage = scope.usage.clone();
    let data = RunState::new(scope, spec.grants);
    // The code as it is now: a swap to optimized code while this run goes
    // leaves it on the code (and engine) it started with.
    let code = plugin.code.load_full();
    let mut store = Store::new(&code.engine, data);
    store.limiter(|s| &mut s.limiter);
    // A plugin that computes yields to the probe runtime at every epoch
    // tick, so spinning plugins cannot starve other probes of worker
    // threads; the timeout below ends it at its deadline.
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);

    let ctx = ProbeContext {
        probe: spec.probe.to_string(),
        target: spec.target.to_string(),
        config: spec.config.to_string(),
        deadline_ms: u64::try_from(spec.limits.timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let call = async {
        let instance = code
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| (true, e))?;
        instance
            .wasmprobe_plugin_plugin()
            .call_run(&mut store, &ctx)
            .await
            .map_err(|e| (false, e))
    };
    let cpu = CpuSpent::default();
    let outcome = tokio::time::timeout_at(
        tokio::time::Instant::from_std(deadline),
        measured(call, &cpu),
    )
    .await;
    let duration = started.elapsed();
    let usage = usage.counts(store.data().limiter.peak as u64, cpu.get());
    let logs = std::mem::take(&mut store.data_mut().log.sink.lines);
    // Evidence is made (redacted, cut, as text) only for a run that did
    // not succeed: the one the history keeps it for.
    let evidence = |success: bool| -> Vec<serde_json::Value> {
        if success {
            return Vec::new();
        }
        spec.tape
            .as_deref()
            .filter(|t| !t.replaying())
            .map(Tape::evidence)
            .unwrap_or_default()
    };
    let record = |result, trap, success, message: Option<String>, samples| RunRecord {
        result,
        trap,
        success,
        duration,
        finished_at: SystemTime::now(),
        message,
        samples,
        usage: usage.clone(),
        logs: logs.clone(),
        calls: evidence(success),
        optimized: code.optimized,
    };

    let outcome = match outcome {
        Err(_) => {
            return record(
                RunResult::Timeout,
                None,
                false,
                Some(format!("no result within {:?}", spec.limits.timeout)),
                Vec::new(),
            );
        }
        Ok(Err((instantiating, err))) => {
            let limit_hit = store.data().limiter.hit;
            if instantiating && !limit_hit {
                return record(
                    RunResult::Error,
                    None,
                    false,
                    Some(first_lines(&format!("cannot instantiate plugin: {err:#}"))),
                    Vec::new(),
                );
            }
            let (result, trap) = classify(&err, limit_hit);
            // The root cause names the trap; the wasm backtrace around it
            // is for plugin authors running `wasmprobe probe`.
            let cause = err.root_cause().to_string();
            let message = match trap {
                Some(TrapReason::MemoryLimit) => format!(
                    "trapped after reaching its memory limit ({} bytes): {cause}",
                    spec.limits.memory
                ),
                _ if result == RunResult::Timeout => {
                    format!("no result within {:?}", spec.limits.timeout)
                }
                _ => cause,
            };
            // The error chain with the wasm backtrace (at most 20 frames),
            // not `{:?}`: with RUST_BACKTRACE set that would symbolise a
            // native backtrace per trap (hundreds of MiB for a hostile
            // plugin that traps on purpose).
            tracing::debug!(probe = spec.probe, error = format!("{err:#}"), "run failed");
            return record(result, trap, false, Some(first_lines(&message)), Vec::new());
        }
        Ok(Ok(o)) => o,
    };

    let data = store.into_data();
    let revealed = data.scope.revealed.values();
    data.state.save();
    let redacted = |m: &str| plugin_said(&revealed, m);
    match outcome {
        Err(ProbeError::InvalidConfig(m)) => record(
            RunResult::Error,
            None,
            false,
            Some(format!("plugin refused its config: {}", redacted(&m))),
            Vec::new(),
        ),
        Err(ProbeError::Internal(m)) => record(
            RunResult::Error,
            None,
            false,
            Some(redacted(&m)),
            Vec::new(),
        ),
        Ok(report) => accept(report, &spec.limits, &revealed, record),
    }
}

fn accept(
    report: Report,
    limits: &Limits,
    revealed: &[String],
    record: impl Fn(RunResult, Option<TrapReason>, bool, Option<String>, Vec<Sample>) -> RunRecord,
) -> RunRecord {
    let count = report.samples.len();
    if count > limits.max_series {
        return record(
            RunResult::Rejected,
            None,
            false,
            Some(format!(
                "returned {count} samples; limits.max_series is {}",
                limits.max_series
            )),
            Vec::new(),
        );
    }
    let samples: Vec<Sample> = report
        .samples
        .into_iter()
        .map(|s| Sample {
            name: s.name,
            labels: s
                .labels
                .into_iter()
                .map(|l| {
                    let value = if revealed.is_empty() {
                        l.value
                    } else {
                        redact(revealed, &l.value)
                    };
                    (l.name, value)
                })
                .collect(),
            value: s.value,
        })
        .collect();
    let size: usize = samples.iter().map(Sample::size).sum();
    if size as u64 > limits.max_output {
        return record(
            RunResult::Rejected,
            None,
            false,
            Some(format!(
                "returned {size} bytes of samples; limits.max_output is {} bytes",
                limits.max_output
            )),
            Vec::new(),
        );
    }
    let result = if report.success {
        RunResult::Success
    } else {
        RunResult::Failure
    };
    let message = report.message.map(|m| plugin_said(revealed, &m));
    record(result, None, report.success, message, samples)
}

/// Maps a run's error to its result and trap reason.
fn classify(err: &wasmtime::Error, limit_hit: bool) -> (RunResult, Option<TrapReason>) {
    let Some(trap) = err.downcast_ref::<Trap>() else {
        // Not a wasm trap: a host call failed hard, or instantiation did.
        if limit_hit {
            return (RunResult::Trap, Some(TrapReason::MemoryLimit));
        }
        return (RunResult::Trap, Some(TrapReason::HostCall));
    };
    if limit_hit {
        return (RunResult::Trap, Some(TrapReason::MemoryLimit));
    }
    let reason = match trap {
        Trap::Interrupt => return (RunResult::Timeout, None),
        Trap::StackOverflow => TrapReason::StackOverflow,
        Trap::UnreachableCodeReached => TrapReason::Unreachable,
        Trap::MemoryOutOfBounds | Trap::TableOutOfBounds | Trap::HeapMisaligned => {
            TrapReason::OutOfBounds
        }
        Trap::IntegerOverflow | Trap::IntegerDivisionByZero | Trap::BadConversionToInteger => {
            TrapReason::Arithmetic
        }
        Trap::IndirectCallToNull | Trap::BadSignature => TrapReason::BadCall,
        _ => TrapReason::Other,
    };
    (RunResult::Trap, Some(reason))
}

/// Longest message a run keeps, in bytes.
const MAX_MESSAGE: usize = 2048;

/// A message cut to a few lines, for logs and the status page.
fn first_lines(s: &str) -> String {
    let mut out: String = s.lines().take(12).collect::<Vec<_>>().join("\n");
    out.truncate(floor_char_boundary(&out, MAX_MESSAGE));
    out
}

/// A message the plugin wrote, as the run keeps it: redacted, then cut.
/// Only the part that can reach the kept message is searched, so a
/// megabyte-long message costs no more than a short one, and a secret
/// across the cut cannot leave its first bytes behind.
fn plugin_said(revealed: &[String], message: &str) -> String {
    let longest = revealed.iter().map(String::len).max().unwrap_or(0);
    let window = &message[..floor_char_boundary(message, MAX_MESSAGE.saturating_add(longest))];
    first_lines(&redact(revealed, window))
}

/// The largest char boundary of `s` at or below `at`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut end = at.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_message_is_redacted_then_cut() {
        let secret = "hunter2-long-secret".to_string();
        let huge = format!("{}{secret}{}", "é".repeat(1023), "x".repeat(5 << 20));
        let kept = plugin_said(std::slice::from_ref(&secret), &huge);
        assert!(kept.len() <= MAX_MESSAGE, "{}", kept.len());
        assert!(!kept.contains("hunter"), "no prefix of the secret is kept");
        let lines = (0..100).map(|i| format!("line {i}")).collect::<Vec<_>>();
        assert_eq!(plugin_said(&[], &lines.join("\n")).lines().count(), 12);
    }

    #[test]
    fn traps_are_classified() {
        let e = wasmtime::Error::new(Trap::StackOverflow);
        assert_eq!(
            classify(&e, false),
            (RunResult::Trap, Some(TrapReason::StackOverflow))
        );
        let e = wasmtime::Error::new(Trap::Interrupt);
        assert_eq!(classify(&e, false), (RunResult::Timeout, None));
        let e = wasmtime::Error::new(Trap::UnreachableCodeReached);
        assert_eq!(
            classify(&e, true),
            (RunResult::Trap, Some(TrapReason::MemoryLimit))
        );
        let e = wasmtime::Error::msg("host exploded");
        assert_eq!(
            classify(&e, false),
            (RunResult::Trap, Some(TrapReason::HostCall))
        );
    }
}
