//! What each probe's target did lately: the last runs (result, duration,
//! message), uptime over the last hour and day, and the last failures
//! with their evidence (every host call of the run and the plugin's log
//! lines, secrets redacted). The status page, `/api/v1` and
//! `/probe?debug=true` read it; nothing here is exposed as series.
//!
//! Bounded by count per target and by bytes per failure, and accounted
//! engine-wide in self-metrics, so 100,000 targets cost a known amount.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::runtime::record::{LogLine, RunRecord, RunResult, TrapReason};

pub use crate::config::HistoryLimits;

/// One finished run, as history keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct RunBrief {
    /// Unix milliseconds.
    pub finished_at_ms: u64,
    pub duration_ms: f64,
    pub result: &'static str,
    /// Why it trapped, when it did.
    pub trap: Option<&'static str>,
    pub success: bool,
    /// Shared with the run before when it said the same.
    #[serde(serialize_with = "shared_text")]
    pub message: Option<Arc<str>>,
}

fn json_texts<S: serde::Serializer>(texts: &[Box<str>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(
        texts.iter().map(|t| {
            serde_json::from_str::<serde_json::Value>(t).unwrap_or(serde_json::Value::Null)
        }),
    )
}

fn shared_text<S: serde::Serializer>(text: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    match text {
        Some(t) => s.serialize_some(&**t),
        None => s.serialize_none(),
    }
}

/// One kept run, packed: 16 bytes where a [`RunBrief`] takes 80, for
/// 100,000 targets' worth of runs. Its message is an index into the
/// history's table of texts (a run's message is most often the one before
/// it said), not a pointer of its own.
#[derive(Debug, Clone, Copy)]
struct Kept {
    finished_at_ms: u64,
    /// Microseconds, saturating at 71 minutes.
    duration_us: u32,
    /// Index in [`RunResult::ALL`].
    result: u8,
    /// Index in [`TrapReason::ALL`] + 1; 0 for none.
    trap: u8,
    /// Index in [`History::messages`] + 1; 0 for none.
    message: u16,
}

impl Kept {
    fn of(brief: &RunBrief, record: &RunRecord, message: u16) -> Kept {
        Kept {
            finished_at_ms: brief.finished_at_ms,
            duration_us: u32::try_from(record.duration.as_micros()).unwrap_or(u32::MAX),
            result: u8::try_from(record.result.index()).unwrap_or(0),
            trap: record
                .trap
                .and_then(|t| TrapReason::ALL.iter().position(|x| *x == t))
                .map_or(0, |i| u8::try_from(i + 1).unwrap_or(0)),
            message,
        }
    }

    fn brief(&self, messages: &[Arc<str>]) -> RunBrief {
        let result = RunResult::ALL
            .get(self.result as usize)
            .copied()
            .unwrap_or(RunResult::Error);
        RunBrief {
            finished_at_ms: self.finished_at_ms,
            duration_ms: f64::from(self.duration_us) / 1000.0,
            result: result.as_str(),
            trap: (self.trap > 0)
                .then(|| TrapReason::ALL.get(self.trap as usize - 1))
                .flatten()
                .map(|t| t.as_str()),
            success: result == RunResult::Success,
            message: (self.message > 0)
                .then(|| messages.get(self.message as usize - 1).cloned())
                .flatten(),
        }
    }
}

/// A failed run and what it did.
#[derive(Debug, Serialize)]
pub struct Failure {
    pub run: RunBrief,
    /// Each host call with its answer, as a tape shows it (bytes cut to
    /// their first KiB, secrets and credentials redacted), kept as JSON
    /// text: a parsed tree takes five times the memory.
    #[serde(serialize_with = "json_texts")]
    calls: Vec<Box<str>>,
    /// Calls left out to stay within `evidence_bytes`.
    pub calls_left_out: usize,
    pub logs: Vec<LogLine>,
    #[serde(skip)]
    bytes: usize,
}

/// Runs and successes in one time bucket.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which bucket of time (Unix time / bucket length); 0: unused.
    slot: u32,
    runs: u16,
    ok: u16,
}

const FIVE_MINUTES: u64 = 300;
const HOUR: u64 = 3600;

/// One target's history.
#[derive(Debug, Default)]
pub struct History {
    recent: VecDeque<Kept>,
    /// The texts of the kept runs' messages, each once; compacted when it
    /// outgrows what the kept runs can refer to.
    messages: Vec<Arc<str>>,
    failures: VecDeque<Arc<Failure>>,
    /// Twelve five-minute buckets (the last hour), then 24 hourly ones.
    buckets: Option<Box<[Bucket; 36]>>,
    /// When the target last changed between up and down (Unix ms), and
    /// which it is.
    since_ms: Option<u64>,
    up: Option<bool>,
}

/// Engine-wide totals of every target's history, for self-metrics.
#[derive(Debug, Default)]
pub struct HistoryTotals {
    pub runs: AtomicU64,
    pub failures: AtomicU64,
    pub evidence_bytes: AtomicU64,
    /// Failures kept without their calls: the engine-wide bound was
    /// reached.
    pub evidence_dropped: AtomicU64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl History {
    /// Adds a finished run (and, when it failed, its evidence) within
    /// `limits`, keeping `totals` in step.
    pub fn push(&mut self, record: &RunRecord, limits: HistoryLimits, totals: &HistoryTotals) {
        let at = unix_ms(record.finished_at);
        let keep_runs = limits.runs > 0;
        let (message, index) = match record.message.as_deref() {
            Some(m) if keep_runs => {
                let (text, index) = self.message_index(m, limits.runs);
                (Some(text), index)
            }
            Some(m) => (Some(Arc::from(m)), 0),
            None => (None, 0),
        };
        let brief = RunBrief {
            finished_at_ms: at,
            duration_ms: record.duration.as_secs_f64() * 1000.0,
            result: record.result.as_str(),
            trap: record.trap.map(|t| t.as_str()),
            success: record.success,
            message,
        };
        if self.up != Some(record.success) {
            self.up = Some(record.success);
            self.since_ms = Some(at);
        }
        self.count(at / 1000, record.success);

        if !record.success && limits.failures > 0 {
            let room = limits
                .total_evidence_bytes
                .saturating_sub(totals.evidence_bytes.load(Ordering::Relaxed) as usize);
            let failure = Failure::new(brief.clone(), record, limits.evidence_bytes.min(room));
            if failure.calls_left_out > 0 && limits.evidence_bytes > room {
                totals.evidence_dropped.fetch_add(1, Ordering::Relaxed);
            }
            totals.failures.fetch_add(1, Ordering::Relaxed);
            totals
                .evidence_bytes
                .fetch_add(failure.bytes as u64, Ordering::Relaxed);
            self.failures.push_back(Arc::new(failure));
        }
        while self.failures.len() > limits.failures {
            if let Some(old) = self.failures.pop_front() {
                totals.failures.fetch_sub(1, Ordering::Relaxed);
                totals
                    .evidence_bytes
                    .fetch_sub(old.bytes as u64, Ordering::Relaxed);
            }
        }
        if limits.runs > 0 {
            if self.recent.capacity() == 0 {
                // Exactly the kept count: a grown deque would double it.
                self.recent.reserve_exact(limits.runs);
            }
            self.recent.push_back(Kept::of(&brief, record, index));
            totals.runs.fetch_add(1, Ordering::Relaxed);
        }
        while self.recent.len() > limits.runs {
            self.recent.pop_front();
            totals.runs.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Gives back what this history holds from `totals` (its target is
    /// gone).
    pub fn release(&mut self, totals: &HistoryTotals) {
        totals
            .runs
            .fetch_sub(self.recent.len() as u64, Ordering::Relaxed);
        totals
            .failures
            .fetch_sub(self.failures.len() as u64, Ordering::Relaxed);
        let bytes: usize = self.failures.iter().map(|f| f.bytes).sum();
        totals
            .evidence_bytes
            .fetch_sub(bytes as u64, Ordering::Relaxed);
        *self = History::default();
    }

    /// The shared text of message `m` and its index + 1 in `messages`:
    /// the same text is held once however many kept runs said it. The
    /// table is compacted to the texts the kept runs still use before it
    /// outgrows twice the kept count (and the index's range).
    fn message_index(&mut self, m: &str, runs: usize) -> (Arc<str>, u16) {
        if let Some(i) = self.messages.iter().rposition(|t| &**t == m) {
            return (self.messages[i].clone(), u16::try_from(i + 1).unwrap_or(0));
        }
        let bound = runs.saturating_mul(2).clamp(2, usize::from(u16::MAX) - 1);
        if self.messages.len() >= bound {
            self.compact_messages();
        }
        let text: Arc<str> = Arc::from(m);
        self.messages.push(text.clone());
        (text, u16::try_from(self.messages.len()).unwrap_or(0))
    }

    /// Drops the texts no kept run refers to, and renumbers the rest.
    fn compact_messages(&mut self) {
        let mut renumber = vec![0u16; self.messages.len()];
        let mut kept = Vec::new();
        for run in &mut self.recent {
            let Some(old) = (run.message as usize).checked_sub(1) else {
                continue;
            };
            let Some(text) = self.messages.get(old) else {
                run.message = 0;
                continue;
            };
            if renumber[old] == 0 {
                kept.push(text.clone());
                renumber[old] = u16::try_from(kept.len()).unwrap_or(0);
            }
            run.message = renumber[old];
        }
        self.messages = kept;
    }

    fn count(&mut self, now_s: u64, ok: bool) {
        let buckets = self
            .buckets
            .get_or_insert_with(|| Box::new([Bucket::default(); 36]));
        for (range, len, count) in [(0..12, FIVE_MINUTES, 12), (12..36, HOUR, 24)] {
            let slot = u32::try_from(now_s / len).unwrap_or(u32::MAX);
            let i = range.start + (slot as usize % count);
            let b = &mut buckets[i];
            if b.slot != slot {
                *b = Bucket {
                    slot,
                    runs: 0,
                    ok: 0,
                };
            }
            b.runs = b.runs.saturating_add(1);
            b.ok = b.ok.saturating_add(u16::from(ok));
        }
    }

    /// The share of successful runs over the last `window` (one hour or
    /// one day, to a bucket's precision), or `None` without runs in it.
    pub fn uptime(&self, window: Duration, now: SystemTime) -> Option<f64> {
        let buckets = self.buckets.as_ref()?;
        let now_s = unix_ms(now) / 1000;
        let (range, len) = if window <= Duration::from_secs(HOUR) {
            (0..12, FIVE_MINUTES)
        } else {
            (12..36, HOUR)
        };
        let span = (window.as_secs() / len).max(1);
        let newest = now_s / len;
        let (mut runs, mut ok) = (0u64, 0u64);
        for b in &buckets[range] {
            let slot = u64::from(b.slot);
            if b.runs > 0 && slot <= newest && newest - slot < span {
                runs += u64::from(b.runs);
                ok += u64::from(b.ok);
            }
        }
        (runs > 0).then(|| ok as f64 / runs as f64)
    }

    /// The kept runs, oldest first.
    pub fn runs(&self) -> impl DoubleEndedIterator<Item = RunBrief> + ExactSizeIterator + '_ {
        self.recent.iter().map(|k| k.brief(&self.messages))
    }

    /// The last kept run's duration and the ones before it, oldest first:
    /// `n` at most.
    pub fn durations_ms(&self, n: usize) -> Vec<f64> {
        self.recent
            .iter()
            .skip(self.recent.len().saturating_sub(n))
            .map(|k| f64::from(k.duration_us) / 1000.0)
            .collect()
    }

    /// The kept failures, oldest first.
    pub fn failures(&self) -> impl DoubleEndedIterator<Item = &Arc<Failure>> + ExactSizeIterator {
        self.failures.iter()
    }

    /// When the target last went up or down (Unix ms), and whether it is
    /// up now.
    pub fn state(&self) -> Option<(bool, u64)> {
        Some((self.up?, self.since_ms?))
    }
}

impl Failure {
    /// The calls, parsed.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        self.calls
            .iter()
            .map(|t| serde_json::from_str(t).unwrap_or(serde_json::Value::Null))
            .collect()
    }

    fn new(run: RunBrief, record: &RunRecord, max_bytes: usize) -> Failure {
        let logs = record.logs.clone();
        let mut bytes = logs.iter().map(|l| l.message.len() + 16).sum::<usize>()
            + run.message.as_deref().map_or(0, str::len);
        let mut calls = Vec::new();
        let mut left_out = 0;
        for call in &record.calls {
            let text = serde_json::to_string(call).unwrap_or_default();
            if bytes + text.len() > max_bytes {
                left_out += 1;
                continue;
            }
            bytes += text.len();
            calls.push(text.into_boxed_str());
        }
        Failure {
            run,
            calls,
            calls_left_out: left_out,
            logs,
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(success: bool, at: SystemTime, message: &str) -> RunRecord {
        RunRecord {
            result: if success {
                RunResult::Success
            } else {
                RunResult::Failure
            },
            trap: None,
            success,
            duration: Duration::from_millis(12),
            finished_at: at,
            message: (!message.is_empty()).then(|| message.to_string()),
            samples: Vec::new(),
            usage: Default::default(),
            logs: vec![LogLine {
                level: "info",
                message: "checked".into(),
            }],
            calls: vec![
                serde_json::json!({"call": "http-send", "result": {"Ok": {"status": 503}}}),
            ],
            optimized: true,
        }
    }

    #[test]
    fn runs_and_failures_are_bounded_and_accounted() {
        let totals = HistoryTotals::default();
        let limits = HistoryLimits {
            runs: 3,
            failures: 2,
            evidence_bytes: 1 << 20,
            ..HistoryLimits::default()
        };
        let mut h = History::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for i in 0..10u64 {
            h.push(
                &record(i % 2 == 0, t0 + Duration::from_secs(i), "down"),
                limits,
                &totals,
            );
        }
        assert_eq!(h.runs().len(), 3);
        assert_eq!(h.failures().len(), 2);
        assert_eq!(totals.runs.load(Ordering::Relaxed), 3);
        assert_eq!(totals.failures.load(Ordering::Relaxed), 2);
        assert!(totals.evidence_bytes.load(Ordering::Relaxed) > 0);
        // A repeated message is shared, not copied.
        let messages: Vec<Arc<str>> = h.runs().filter_map(|r| r.message).collect();
        assert!(Arc::ptr_eq(&messages[0], &messages[1]));
        let f = h.failures().last().map(|f| (f.calls.len(), f.logs.len()));
        assert_eq!(f, Some((1, 1)));
        h.release(&totals);
        assert_eq!(totals.runs.load(Ordering::Relaxed), 0);
        assert_eq!(totals.evidence_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_kept_run_is_sixteen_bytes_and_its_messages_stay_bounded() {
        assert_eq!(std::mem::size_of::<Kept>(), 16);
        let totals = HistoryTotals::default();
        let limits = HistoryLimits {
            runs: 3,
            ..HistoryLimits::default()
        };
        let mut h = History::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for i in 0..100u64 {
            let message = format!("down {i}");
            h.push(
                &record(false, t0 + Duration::from_secs(i), &message),
                limits,
                &totals,
            );
            assert!(h.messages.len() <= 6, "{} texts held", h.messages.len());
        }
        let said: Vec<String> = h
            .runs()
            .filter_map(|r| r.message.map(|m| m.to_string()))
            .collect();
        assert_eq!(said, ["down 97", "down 98", "down 99"]);
        // A run without a message between two with one.
        h.push(
            &record(true, t0 + Duration::from_secs(100), ""),
            limits,
            &totals,
        );
        h.push(
            &record(false, t0 + Duration::from_secs(101), "down 99"),
            limits,
            &totals,
        );
        let said: Vec<Option<String>> =
            h.runs().map(|r| r.message.map(|m| m.to_string())).collect();
        assert_eq!(said, [Some("down 99".into()), None, Some("down 99".into())]);
    }

    #[test]
    fn past_the_engine_wide_bound_failures_are_kept_without_their_calls() {
        let totals = HistoryTotals::default();
        let limits = HistoryLimits {
            total_evidence_bytes: 100,
            ..HistoryLimits::default()
        };
        let (mut a, mut b) = (History::default(), History::default());
        a.push(&record(false, SystemTime::now(), "down"), limits, &totals);
        b.push(&record(false, SystemTime::now(), "down"), limits, &totals);
        let calls = |h: &History| h.failures().map(|f| f.calls.len()).sum::<usize>();
        assert_eq!((calls(&a), calls(&b)), (1, 0));
        assert_eq!(totals.evidence_dropped.load(Ordering::Relaxed), 1);
        assert!(totals.evidence_bytes.load(Ordering::Relaxed) <= 150);
    }

    #[test]
    fn uptime_counts_the_window_and_state_says_since_when() {
        let totals = HistoryTotals::default();
        let mut h = History::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // Two hours ago: failing; the last hour: 3 of 4 up.
        for i in 0..4 {
            h.push(
                &record(false, t0 + Duration::from_secs(i), "x"),
                HistoryLimits::default(),
                &totals,
            );
        }
        let hour_later = t0 + Duration::from_secs(2 * 3600);
        for (i, ok) in [true, false, true, true].into_iter().enumerate() {
            h.push(
                &record(ok, hour_later + Duration::from_secs(i as u64 * 60), ""),
                HistoryLimits::default(),
                &totals,
            );
        }
        let now = hour_later + Duration::from_secs(300);
        assert_eq!(h.uptime(Duration::from_secs(3600), now), Some(0.75));
        assert_eq!(h.uptime(Duration::from_secs(86400), now), Some(3.0 / 8.0));
        let since = unix_ms(hour_later + Duration::from_secs(120));
        assert_eq!(h.state(), Some((true, since)));
    }

    #[test]
    fn evidence_past_its_byte_bound_leaves_calls_out_and_says_so() {
        let mut r = record(false, SystemTime::now(), "down");
        r.calls = (0..50)
            .map(|i| serde_json::json!({"call": "http-send", "n": i, "pad": "x".repeat(100)}))
            .collect();
        let f = Failure::new(
            RunBrief {
                finished_at_ms: 0,
                duration_ms: 1.0,
                result: "failure",
                trap: None,
                success: false,
                message: None,
            },
            &r,
            1000,
        );
        assert!(f.bytes <= 1000);
        assert!(f.calls_left_out > 0 && !f.calls.is_empty());
    }
}
