//! Metric state and its encoding: the host owns every family.
//!
//! Each probe has a [`ProbeSlot`]. When a run ends, its samples are
//! validated against the plugin's declared families and applied to the
//! probe's state; its counters and histograms are rendered to sample lines,
//! its gauges kept as numbers ([`Gauges`]), and both are published with the
//! probe's counts in one atomic pointer swap. A scrape only loads those
//! pointers, copies the lines and writes each probe's gauges and host lines
//! under each family header, so it never waits on a running probe and never
//! holds a lock a run needs.
//!
//! Invariants: every family appears once, with one TYPE; label values and
//! HELP are escaped here; plugins cannot emit host families or set host
//! labels; a probe's series count never exceeds its plugin's budget.

pub mod encode;
pub mod family;
mod gauges;
mod process;
mod scrape;
mod self_metrics;
pub mod series;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

pub use encode::Format;
pub use family::{FamilyDef, FamilyId, FamilyTable, Kind};
pub use gauges::Gauges;
pub use scrape::Scrape;
pub use self_metrics::{GlobalMetrics, HostFamilies, RunInFlight};
pub use series::{Chunks, PluginFamilies, ProbeSeries, Staged};

use crate::config::ProbeName;
use crate::history::{History, HistoryLimits};
use crate::runtime::record::{RunRecord, RunResult, TrapReason};

/// Series all probes of one plugin may hold together.
#[derive(Debug)]
pub struct SeriesBudget {
    limit: AtomicUsize,
    used: AtomicUsize,
}

impl SeriesBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(SeriesBudget {
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// A reload may change the limit; series already held stay held.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Moves a probe's holding from `old` to `new` series, unless that
    /// would exceed the limit.
    fn exchange(&self, old: usize, new: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let next = used.saturating_sub(old) + new;
                (new <= old || next <= self.limit()).then_some(next)
            })
            .is_ok()
    }
}

/// What the last run of a probe did, for the status page.
#[derive(Debug, Clone)]
pub struct LastRun {
    pub result: RunResult,
    pub trap: Option<TrapReason>,
    pub success: bool,
    pub duration: Duration,
    pub finished_at: SystemTime,
    pub message: Option<String>,
}

/// A probe's published state: its plugin's lines, and the host's counts
/// from which a scrape writes the host's lines of the probe. Those are a
/// dozen long lines per probe (620 bytes of text at one label) and most of
/// a probe's memory at 100,000 probes when held as text; as numbers they
/// are a third of that.
#[derive(Debug, Default)]
pub struct Rendered {
    /// The plugin's counters and histograms.
    chunks: Chunks,
    /// The last run's gauges, shared with the slot's state.
    gauges: Gauges,
    pub last: Option<LastRun>,
    counts: self_metrics::ProbeCounts,
    /// The probe's host labels, shared with its slot.
    labels: Arc<[(String, String)]>,
    /// False until the slot first publishes: a probe that never ran, was
    /// never skipped and kept no series has no host lines yet.
    published: bool,
}

/// What a slot shows before it first publishes, shared by every such slot.
static UNPUBLISHED: std::sync::LazyLock<Arc<Rendered>> =
    std::sync::LazyLock::new(|| Arc::new(Rendered::default()));

/// A change to a probe in the making: its series, under the slot's lock,
/// and the rest as last published. The slot keeps only the series; its
/// gauges, counts and last run live once, in what it published (held in
/// both places they were some 300 bytes more per probe), and every change
/// starts from there under the lock, so none is lost.
struct SlotState<'a> {
    /// Counters and histograms; gauges are held only in their compact
    /// form (`gauges`), the one the scrape reads: a probe's state is
    /// mostly gauges, and holding them both ways cost 1.3 KiB per probe.
    series: std::sync::MutexGuard<'a, ProbeSeries>,
    gauges: Gauges,
    counts: self_metrics::ProbeCounts,
    last: Option<LastRun>,
}

/// One configured probe's place in the exposition.
#[derive(Debug)]
pub struct ProbeSlot {
    pub name: ProbeName,
    /// The run this slot is for: its target, and its address under
    /// `fan_out` (`TargetRun::key`); empty for a probe's only run.
    pub key: String,
    host_labels: Arc<[(String, String)]>,
    budget: Arc<SeriesBudget>,
    /// Counters and histograms; changes to the published state are made
    /// under this lock.
    state: Mutex<ProbeSeries>,
    rendered: ArcSwap<Rendered>,
    /// Held for the length of a scheduled run: a probe never runs twice at
    /// once, even across a reload that restarts its schedule.
    pub run_lock: tokio::sync::Mutex<()>,
    /// The target's recent runs and failures with their evidence.
    pub history: Mutex<History>,
    /// Whether the probe's `failing_interval` is the schedule in use.
    failing_schedule: std::sync::atomic::AtomicBool,
}

impl ProbeSlot {
    /// Starts a change to the probe (see [`SlotState`]).
    fn change(&self) -> SlotState<'_> {
        let series = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let published = self.rendered.load();
        SlotState {
            series,
            gauges: published.gauges.clone(),
            counts: published.counts.clone(),
            last: published.last.clone(),
        }
    }

    /// Says whether the failing schedule is the one in use now.
    pub fn set_failing_schedule(&self, on: bool) {
        self.failing_schedule.store(on, Ordering::Relaxed);
    }

    pub fn on_failing_schedule(&self) -> bool {
        self.failing_schedule.load(Ordering::Relaxed)
    }

    /// The history, read under its lock.
    pub fn with_history<R>(&self, f: impl FnOnce(&History) -> R) -> R {
        f(&self.history.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn last(&self) -> Option<LastRun> {
        self.rendered.load().last.clone()
    }

    pub fn series(&self) -> usize {
        self.rendered.load().counts.held
    }

    pub fn host_labels(&self) -> &[(String, String)] {
        &self.host_labels
    }

    /// Whether a reloaded probe can keep this slot (and its counters).
    pub fn reusable_for(
        &self,
        host_labels: &[(String, String)],
        budget: &Arc<SeriesBudget>,
    ) -> bool {
        *self.host_labels == *host_labels && Arc::ptr_eq(&self.budget, budget)
    }
}

/// The whole exposition: family table, probe slots, global self-metrics.
#[derive(Debug)]
pub struct Exposition {
    families: FamilyTable,
    pub host: HostFamilies,
    pub global: GlobalMetrics,
    history_limits: RwLock<HistoryLimits>,
    /// By probe, then target.
    slots: RwLock<BTreeMap<(ProbeName, String), Arc<ProbeSlot>>>,
}

impl Default for Exposition {
    fn default() -> Self {
        Self::new()
    }
}

impl Exposition {
    pub fn new() -> Self {
        let families = FamilyTable::default();
        let host = HostFamilies::register(&families);
        Exposition {
            families,
            host,
            global: GlobalMetrics::default(),
            history_limits: RwLock::new(HistoryLimits::default()),
            slots: RwLock::new(BTreeMap::new()),
        }
    }

    pub fn families(&self) -> &FamilyTable {
        &self.families
    }

    /// Creates an empty slot for a probe, not yet exposed: a config being
    /// prepared must not show until it is installed.
    pub fn detached_slot(
        &self,
        name: ProbeName,
        key: &str,
        host_labels: Vec<(String, String)>,
        budget: Arc<SeriesBudget>,
    ) -> ProbeSlot {
        ProbeSlot {
            name,
            key: key.to_string(),
            host_labels: host_labels.into(),
            budget,
            state: Mutex::new(ProbeSeries::default()),
            rendered: ArcSwap::new(UNPUBLISHED.clone()),
            run_lock: tokio::sync::Mutex::new(()),
            history: Mutex::new(History::default()),
            failing_schedule: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Exposes a slot, replacing any slot of the same probe and target.
    pub fn attach(&self, slot: Arc<ProbeSlot>) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let key = (slot.name.clone(), slot.key.clone());
        if let Some(old) = slots.insert(key, slot.clone())
            && !Arc::ptr_eq(&old, &slot)
        {
            self.release(&old);
        }
    }

    /// Removes a probe's target (a probe of one target: the probe): its
    /// series disappear from the next scrape.
    pub fn remove_slot(&self, name: &ProbeName, key: &str) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slots.remove(&(name.clone(), key.to_string())) {
            self.release(&old);
        }
    }

    /// Gives back what a slot no longer exposed held: its series budget and
    /// its share of the history totals.
    fn release(&self, slot: &ProbeSlot) {
        {
            // Under the lock: no change publishes in between.
            let _series = slot.state.lock().unwrap_or_else(|e| e.into_inner());
            slot.budget.exchange(slot.rendered.load().counts.held, 0);
        }
        slot.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(&self.global.history);
    }

    /// How much history each target keeps from now on.
    pub fn set_history_limits(&self, limits: HistoryLimits) {
        *self
            .history_limits
            .write()
            .unwrap_or_else(|e| e.into_inner()) = limits;
    }

    pub fn history_limits(&self) -> HistoryLimits {
        *self
            .history_limits
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn slots(&self) -> Vec<Arc<ProbeSlot>> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots.values().cloned().collect()
    }

    /// Validates a finished run's samples against its plugin's
    /// `families`, applies them to its probe and publishes the probe's
    /// lines. Returns the result as finally counted (a run over its budget
    /// becomes `rejected`).
    pub fn commit(
        &self,
        slot: &ProbeSlot,
        families: &PluginFamilies,
        mut record: RunRecord,
    ) -> RunResult {
        slot.history.lock().unwrap_or_else(|e| e.into_inner()).push(
            &record,
            self.history_limits(),
            &self.global.history,
        );
        let table = self.families.snapshot();
        let mut st = slot.change();
        if record.samples.is_empty() {
            self.drop_gauges(slot, &mut st, &table);
        } else {
            let staged = Staged::new(families, std::mem::take(&mut record.samples));
            for (reason, n) in &staged.rejected {
                st.counts.count_rejected(*reason, *n);
            }
            if !staged.examples.is_empty() {
                // The counter says how many and why; the log says which.
                let named: Vec<String> = staged
                    .examples
                    .iter()
                    .map(|(name, why)| format!("{name} ({})", why.as_str()))
                    .collect();
                tracing::debug!(
                    probe = %slot.name,
                    target = %slot.key,
                    rejected = staged.rejected_total(),
                    samples = named.join(", "),
                    "samples rejected"
                );
            }
            let mut next = st.series.with(&staged, &table);
            let held = next.series(&table);
            if slot.budget.exchange(st.counts.held, held) {
                st.gauges = next.gauges();
                next.clear_gauges();
                *st.series = next;
                st.counts.held = held;
            } else {
                record.result = RunResult::Rejected;
                record.success = false;
                record.message = Some(format!(
                    "run would hold {held} series; plugin series budget is {} ({} in use)",
                    slot.budget.limit(),
                    slot.budget.used()
                ));
                self.drop_gauges(slot, &mut st, &table);
            }
        }
        st.counts.add_usage(&record.usage);
        st.counts.runs[record.result.index()] += 1;
        if let Some(t) = record.trap {
            st.counts.count_trap(t);
        }
        st.last = Some(LastRun {
            result: record.result,
            trap: record.trap,
            success: record.success,
            duration: record.duration,
            finished_at: record.finished_at,
            message: record.message,
        });
        self.publish(slot, st, &table);
        record.result
    }

    fn drop_gauges(&self, slot: &ProbeSlot, st: &mut SlotState<'_>, table: &[Arc<FamilyDef>]) {
        st.gauges = Gauges::default();
        let held = st.series.series(table);
        slot.budget.exchange(st.counts.held, held);
        st.counts.held = held;
    }

    /// Keeps a surviving probe's series of families its (possibly new)
    /// plugin still declares, and drops the rest.
    pub fn retain_families(&self, slot: &ProbeSlot, families: &PluginFamilies) {
        let table = self.families.snapshot();
        let mut st = slot.change();
        st.series.retain(|id| families.contains(id));
        st.gauges = st.gauges.retain(|id| families.contains(id));
        let held = st.series.series(&table) + st.gauges.lines();
        slot.budget.exchange(st.counts.held, held);
        st.counts.held = held;
        self.publish(slot, st, &table);
    }

    /// Counts a scheduled start skipped because the previous run was still
    /// going.
    pub fn count_skip(&self, slot: &ProbeSlot) {
        let table = self.families.snapshot();
        let mut st = slot.change();
        st.counts.count_skip();
        self.publish(slot, st, &table);
    }

    fn publish(&self, slot: &ProbeSlot, st: SlotState<'_>, table: &[Arc<FamilyDef>]) {
        let mut chunks = BTreeMap::new();
        st.series.render(table, &slot.host_labels, &mut chunks);
        slot.rendered.store(Arc::new(Rendered {
            chunks: Chunks::new(chunks),
            gauges: st.gauges,
            last: st.last,
            counts: st.counts,
            labels: slot.host_labels.clone(),
            published: true,
        }));
    }

    /// A scrape of the whole exposition in one format, as it is now: a
    /// run that ends while it is written out shows in the next scrape.
    pub fn scrape(&self, format: Format) -> Scrape {
        let table = self.families.snapshot();
        let rendered = self
            .slots()
            .iter()
            .map(|s| s.rendered.load_full())
            .collect();
        let mut global = BTreeMap::new();
        self.global.render(&self.host, &mut global);
        Scrape::new(format, table, rendered, global, self.host.clone())
    }

    /// The whole exposition in one format, as one text.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::new();
        self.scrape(format).fill(&mut out, usize::MAX);
        out
    }

    /// The exposition of one run alone, as `/probe` returns it: the run's
    /// own series plus `probe_success` and `probe_duration_seconds`.
    pub fn encode_single(
        &self,
        host_labels: &[(String, String)],
        record: &RunRecord,
        staged: Option<&Staged>,
        format: Format,
    ) -> String {
        let table = self.families.snapshot();
        let mut chunks = BTreeMap::new();
        self.host
            .render_probe_result(host_labels, record.success, record.duration, &mut chunks);
        if let Some(staged) = staged {
            ProbeSeries::default()
                .with(staged, &table)
                .render(&table, host_labels, &mut chunks);
        }
        let mut out = String::new();
        for (id, chunk) in &chunks {
            if let Some(def) = table.get(*id as usize) {
                encode::push_header(&mut out, def, format);
                out.push_str(chunk);
            }
        }
        encode::push_trailer(&mut out, format);
        out
    }
}

/// Seconds since the Unix epoch, as a float.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests;
