//! Cron schedules turned into runs.
//!
//! One task per scheduled probe and target, on the probe runtime. Each waits for the
//! next cron time plus the probe's jitter offset, takes a slot of the global
//! concurrency bound, runs, and commits. A probe never overlaps itself: the
//! next start is computed after the run ends, and cron times that passed
//! meanwhile are counted as skipped. Lag is the time from the scheduled
//! instant to the run's start, including the wait for a slot.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::app::{App, Probe, TargetRun};
use crate::runtime::record::RunResult;

/// A stable offset in `[0, jitter)` for a probe, so probes that share a
/// schedule start spread out, and each keeps its own rhythm across runs.
pub fn jitter_offset(probe: &str, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    let span = jitter.as_nanos().max(1) as u64;
    Duration::from_nanos(fnv1a(probe) % span)
}

/// Stops the tasks of one schedule generation.
pub type Stop = watch::Receiver<bool>;

/// Starts one task per scheduled probe (per target of a probe with many)
/// of the app's current set.
pub fn start(app: &Arc<App>, stop: &Stop) -> Vec<tokio::task::JoinHandle<()>> {
    let set = app.set.load_full();
    let mut tasks = Vec::new();
    for probe in set.probes.values() {
        if probe.config.schedule.is_none() {
            continue;
        }
        for run in &probe.runs {
            let app = app.clone();
            let (probe, run) = (probe.clone(), run.clone());
            let stop = stop.clone();
            tasks.push(
                app.probe_runtime
                    .clone()
                    .spawn(probe_loop(app, probe, run, stop)),
            );
        }
    }
    let app = app.clone();
    let mut stop_beat = stop.clone();
    tasks.push(app.probe_runtime.clone().spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => app.beat(),
                _ = stop_beat.changed() => break,
            }
        }
    }));
    tasks
}

/// Waits until `at` (wall clock), or returns false when stopped first.
async fn sleep_until(at: DateTime<Utc>, stop: &mut Stop) -> bool {
    let wait = (at - Utc::now()).to_std().unwrap_or_default();
    tokio::select! {
        _ = tokio::time::sleep(wait) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}

async fn probe_loop(app: Arc<App>, probe: Arc<Probe>, run: Arc<TargetRun>, mut stop: Stop) {
    let Some(schedule) = probe.config.schedule.clone() else {
        return;
    };
    // Each target of a probe keeps a rhythm of its own.
    let spread = if run.ip.is_none() && (run.target.is_empty() || !probe.config.has_many_targets())
    {
        probe.name().to_string()
    } else {
        format!("{}\u{0}{}", probe.name(), run.key)
    };
    let offset =
        chrono::Duration::from_std(jitter_offset(&spread, probe.config.jitter)).unwrap_or_default();
    let mut after = Utc::now();
    let mut warnings = WarnGate::default();
    // With `failing_interval`: when the last run failed, the next one is
    // due that long after it ended (or at the next cron time, if sooner).
    let failing_every = probe
        .config
        .failing_interval
        .and_then(|d| chrono::Duration::from_std(d).ok());
    let mut failed_at: Option<DateTime<Utc>> = None;
    loop {
        let Some(next) = schedule.next_after(&after, probe.config.timezone) else {
            tracing::info!(probe = %probe.name(), "schedule has no further times");
            return;
        };
        let on_time = next + offset;
        let due = match (failed_at, failing_every) {
            (Some(end), Some(every)) => on_time.min(end + every),
            _ => on_time,
        };
        let fast = due < on_time;
        run.slot
            .set_failing_schedule(failed_at.is_some() && failing_every.is_some());
        if !sleep_until(due, &mut stop).await {
            return;
        }
        let permit = tokio::select! {
            p = app.run_slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let lag = (Utc::now() - due).to_std().unwrap_or_default();
        app.exposition.global.scheduled_run_started_late(lag);
        {
            // A run of the previous schedule generation may still be going.
            let _running = run.slot.run_lock.lock().await;
            let in_flight = app.exposition.global.run_started();
            // Boxed: the run's state lives on the heap only while it runs,
            // so an idle probe's task stays small (2.5 KiB saved each).
            let evidence = app.exposition.history_limits().failures > 0;
            let record = Box::pin(probe.run_once(&run, evidence)).await;
            drop(in_flight);
            drop(permit);
            failed_at = (!record.success).then(Utc::now);
            report(&probe, &run.key, &record, &mut warnings);
            app.exposition
                .commit(&run.slot, &probe.plugin.families, record);
        }

        // A run between cron times leaves the next cron time due, unless
        // it passed meanwhile.
        let now = Utc::now();
        if fast {
            if now >= on_time {
                after = next;
            }
            continue;
        }
        // Cron times that passed while this run went on were skipped: a
        // probe never runs twice at once.
        let skipped = std::iter::successors(Some(next), |t| {
            schedule.next_after(t, probe.config.timezone)
        })
        .skip(1)
        .take_while(|t| *t + offset <= now)
        .take(1000)
        .count();
        for _ in 0..skipped {
            app.exposition.count_skip(&run.slot);
        }
        after = if skipped > 0 { now - offset } else { next };
    }
}

/// Least time between two WARN lines of one probe that repeat themselves.
const REPEAT_WARN_EVERY: Duration = Duration::from_secs(60);

/// Holds back a probe's WARN lines that say again what the last one said,
/// so a plugin failing every second (on purpose or not) writes one line a
/// minute with the count of repeats, not one per run; a new result or
/// message is logged at once.
#[derive(Debug, Default)]
struct WarnGate {
    last: Option<(u64, std::time::Instant)>,
    held_back: u64,
}

impl WarnGate {
    /// Whether to log now, and how many repeats were held back before.
    fn admit(&mut self, what: &str) -> Option<u64> {
        let key = fnv1a(what);
        let now = std::time::Instant::now();
        match self.last {
            Some((k, at)) if k == key && now.duration_since(at) < REPEAT_WARN_EVERY => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some((key, now));
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

/// Logs a finished run: a failing probe is data (DEBUG), a misbehaving
/// plugin is a WARN (repeats held back by `gate`); neither is an error of
/// the host.
fn report(
    probe: &Probe,
    target: &str,
    record: &crate::runtime::record::RunRecord,
    gate: &mut WarnGate,
) {
    let name = probe.name();
    let ms = record.duration.as_secs_f64() * 1000.0;
    let message = record.message.as_deref().unwrap_or("");
    let result = record.result.as_str();
    let warn = matches!(
        record.result,
        RunResult::Error | RunResult::Timeout | RunResult::Rejected | RunResult::Trap
    );
    let repeats = if warn {
        match gate.admit(&format!("{result}\0{message}")) {
            Some(n) => n,
            None => return,
        }
    } else {
        0
    };
    match record.result {
        RunResult::Success => tracing::debug!(probe = %name, target, ms, "run succeeded"),
        RunResult::Failure => tracing::debug!(probe = %name, target, ms, message, "probe failed"),
        RunResult::Error | RunResult::Timeout | RunResult::Rejected => {
            tracing::warn!(probe = %name, target, result, ms, message, repeats, "run ended badly");
        }
        RunResult::Trap => tracing::warn!(
            probe = %name,
            target,
            reason = record.trap.map_or("other", |t| t.as_str()),
            ms,
            message,
            repeats,
            "plugin trapped"
        ),
    }
}

/// FNV-1a: stable across builds, unlike the std hasher's seed.
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_warning_is_held_back_and_counted() {
        let mut gate = WarnGate::default();
        assert_eq!(gate.admit("error\0boom"), Some(0));
        assert_eq!(gate.admit("error\0boom"), None);
        assert_eq!(gate.admit("error\0boom"), None);
        assert_eq!(gate.admit("trap\0other"), Some(2), "a new message at once");
        assert_eq!(gate.admit("trap\0other"), None);
        gate.last = gate
            .last
            .and_then(|(k, at)| Some((k, at.checked_sub(REPEAT_WARN_EVERY * 2)?)));
        assert_eq!(gate.admit("trap\0other"), Some(1), "and once a minute");
    }

    #[test]
    fn jitter_is_stable_and_bounded() {
        let j = Duration::from_secs(5);
        let a = jitter_offset("api", j);
        assert_eq!(a, jitter_offset("api", j));
        assert!(a < j);
        assert_ne!(jitter_offset("api", j), jitter_offset("portal", j));
        assert_eq!(jitter_offset("api", Duration::ZERO), Duration::ZERO);
    }
}
