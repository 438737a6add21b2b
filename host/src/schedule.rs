//! Cron schedules turned into runs.
//!
//! One driver task per schedule generation holds every scheduled probe and
//! target in a heap ordered by when each is due next. When the earliest is
//! due, the driver takes a slot of the global concurrency bound and spawns
//! the run as a task of its own; when the run has committed, the task works
//! out the next due time and hands the entry back. An idle probe is thus a
//! small heap entry, not a parked task with its own timer (at 100,000
//! probes that difference is tens of MiB).
//!
//! A probe never overlaps itself: the next start is computed after the run
//! ends, and cron times that passed meanwhile are counted as skipped. Lag
//! is the time from the scheduled instant to the run's start, including
//! the wait for a slot. Entries due at once start in due order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, TryAcquireError, mpsc, watch};

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

/// Stops the runs of one schedule generation.
pub type Stop = watch::Receiver<bool>;

/// Starts scheduling every scheduled probe (every target of a probe with
/// many) of the app's current set, until `stop` changes.
pub fn start(app: &Arc<App>, stop: &Stop) {
    let set = app.set.load_full();
    let mut due = BinaryHeap::new();
    for probe in set.probes.values() {
        if probe.config.schedule.is_none() {
            continue;
        }
        for run in &probe.runs {
            if let Some(entry) = Entry::new(probe.clone(), run.clone()) {
                due.push(entry);
            }
        }
    }
    app.probe_runtime
        .clone()
        .spawn(drive(app.clone(), due, stop.clone()));
    let app = app.clone();
    let mut stop_beat = stop.clone();
    app.probe_runtime.clone().spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut pacer = crate::heap::Pacer::new(app.exposition.global.runs_total());
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    app.beat();
                    pacer.beat(app.exposition.global.runs_total());
                }
                _ = stop_beat.changed() => break,
            }
        }
    });
}

/// One scheduled probe and target, between its runs: the heap holds it
/// while it waits, and its run's task while it runs.
struct Entry {
    probe: Arc<Probe>,
    run: Arc<TargetRun>,
    /// The jitter offset added to every cron time.
    offset: chrono::Duration,
    /// The next cron time is the first after this.
    after: DateTime<Utc>,
    /// When the last run ended, if it failed.
    failed_at: Option<DateTime<Utc>>,
    warnings: WarnGate,
    /// The cron time planned next, and when the run is due for it.
    next: DateTime<Utc>,
    due: DateTime<Utc>,
}

impl Entry {
    /// The probe and target with their first start planned, or `None`
    /// when the schedule has no time left.
    fn new(probe: Arc<Probe>, run: Arc<TargetRun>) -> Option<Box<Entry>> {
        // Each target of a probe keeps a rhythm of its own.
        let spread =
            if run.ip.is_none() && (run.target.is_empty() || !probe.config.has_many_targets()) {
                probe.name().to_string()
            } else {
                format!("{}\u{0}{}", probe.name(), run.key)
            };
        let offset = chrono::Duration::from_std(jitter_offset(&spread, probe.config.jitter))
            .unwrap_or_default();
        let now = Utc::now();
        let mut entry = Box::new(Entry {
            probe,
            run,
            offset,
            after: now,
            failed_at: None,
            warnings: WarnGate::default(),
            next: now,
            due: now,
        });
        entry.plan().then_some(entry)
    }

    /// How long after a failed run the next is due (`failing_interval`).
    fn failing_every(&self) -> Option<chrono::Duration> {
        self.probe
            .config
            .failing_interval
            .and_then(|d| chrono::Duration::from_std(d).ok())
    }

    /// Plans the next start: the next cron time plus the offset, or, while
    /// the probe fails and has a `failing_interval`, that long after the
    /// failed run ended if that is sooner. False when the schedule has no
    /// further times.
    fn plan(&mut self) -> bool {
        let Some(schedule) = self.probe.config.schedule.as_ref() else {
            return false;
        };
        let Some(next) = schedule.next_after(&self.after, self.probe.config.timezone) else {
            tracing::info!(probe = %self.probe.name(), "schedule has no further times");
            return false;
        };
        let failing_every = self.failing_every();
        let on_time = next + self.offset;
        self.next = next;
        self.due = match (self.failed_at, failing_every) {
            (Some(end), Some(every)) => on_time.min(end + every),
            _ => on_time,
        };
        self.run
            .slot
            .set_failing_schedule(self.failed_at.is_some() && failing_every.is_some());
        true
    }

    /// Runs the probe once, commits the run and plans the next start.
    /// False when the schedule has no further times.
    async fn run(&mut self, app: &App, permit: OwnedSemaphorePermit) -> bool {
        let on_time = self.next + self.offset;
        let fast = self.due < on_time;
        {
            // A run of the previous schedule generation may still be going.
            let _running = self.run.slot.run_lock.lock().await;
            let in_flight = app.exposition.global.run_started();
            // Boxed: the run's state lives on the heap only while it runs.
            let evidence = app.exposition.history_limits().failures > 0;
            let record = Box::pin(self.probe.run_once(&self.run, evidence)).await;
            drop(in_flight);
            drop(permit);
            self.failed_at = (!record.success).then(Utc::now);
            report(&self.probe, &self.run.key, &record, &mut self.warnings);
            app.exposition
                .commit(&self.run.slot, &self.probe.plugin.families, record);
        }

        // A run between cron times leaves the next cron time due, unless
        // it passed meanwhile.
        let now = Utc::now();
        if fast {
            if now >= on_time {
                self.after = self.next;
            }
            return self.plan();
        }
        // Cron times that passed while this run went on were skipped: a
        // probe never runs twice at once.
        let skipped = self.probe.config.schedule.as_ref().map_or(0, |schedule| {
            std::iter::successors(Some(self.next), |t| {
                schedule.next_after(t, self.probe.config.timezone)
            })
            .skip(1)
            .take_while(|t| *t + self.offset <= now)
            .take(1000)
            .count()
        });
        for _ in 0..skipped {
            app.exposition.count_skip(&self.run.slot);
        }
        self.after = if skipped > 0 {
            now - self.offset
        } else {
            self.next
        };
        self.plan()
    }
}

/// Orders the heap by due time, earliest on top.
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other.due.cmp(&self.due)
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}

impl Eq for Entry {}

/// Starts each entry when it is due, until `stop` changes. Runs already
/// going then finish and commit; their entries are dropped.
async fn drive(app: Arc<App>, mut due: BinaryHeap<Box<Entry>>, mut stop: Stop) {
    let (back, mut returned) = mpsc::unbounded_channel::<Box<Entry>>();
    loop {
        if *stop.borrow() {
            return;
        }
        while let Ok(entry) = returned.try_recv() {
            due.push(entry);
        }
        let now = Utc::now();
        let wait = match due.peek() {
            Some(first) if first.due <= now => None,
            Some(first) => Some((first.due - now).to_std().unwrap_or_default()),
            // Nothing scheduled until a run hands its entry back.
            None => Some(Duration::MAX),
        };
        let Some(wait) = wait else {
            let Some(mut entry) = due.pop() else {
                continue;
            };
            let permit = match app.run_slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(TryAcquireError::Closed) => return,
                Err(TryAcquireError::NoPermits) => tokio::select! {
                    p = app.run_slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                    _ = stop.changed() => return,
                },
            };
            let lag = (Utc::now() - entry.due).to_std().unwrap_or_default();
            app.exposition.global.scheduled_run_started_late(lag);
            let (app, back) = (app.clone(), back.clone());
            app.probe_runtime.clone().spawn(async move {
                if entry.run(&app, permit).await {
                    // The driver is gone once the generation stopped.
                    let _ = back.send(entry);
                }
            });
            continue;
        };
        tokio::select! {
            _ = stop.changed() => return,
            Some(entry) = returned.recv() => due.push(entry),
            _ = sleep(wait) => {}
        }
    }
}

/// Sleeps `wait`, or for ever when it is too long for the timer.
async fn sleep(wait: Duration) {
    match tokio::time::Instant::now().checked_add(wait) {
        Some(at) if wait < Duration::from_secs(86_400 * 365) => tokio::time::sleep_until(at).await,
        _ => std::future::pending().await,
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
