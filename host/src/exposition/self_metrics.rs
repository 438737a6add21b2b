//! The host's own families: the per-probe result families that dashboards
//! built for blackbox_exporter expect (`probe_success`,
//! `probe_duration_seconds`), the engine's `wasmprobe_*` self-metrics and
//! the `process_*` families of the Go exporters.
//!
//! Every family is declared once, in [`host_families!`]: name, type, unit,
//! HELP and label names. Rendering names a [`HostFamily`] and gives label
//! values in the declared order, so a sample cannot drift from its header.
//! They are registered first, on an empty table, so their ids are fixed.
//!
//! [`GlobalMetrics`] holds the engine-wide state behind private fields;
//! the scheduler, loader, reloader and server report what happened through
//! its event methods, and only [`GlobalMetrics::render`] reads it.
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::encode::{HistogramState, push_histogram, push_sample};
use super::family::{FamilyDef, FamilyId, FamilyTable, Kind};
use super::process::ProcessStats;
use super::series::Rejection;
use super::{LastRun, unix_seconds};
use crate::hostcalls::icmp::SocketMode;
use crate::hostcalls::{RefusalReason, UsageCounts};
use crate::runtime::record::{RunResult, TrapReason};

/// Buckets of the schedule-lag histogram, in seconds.
pub(crate) const LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A family's declaration, as written once in [`host_families!`].
#[derive(Debug, Clone, Copy)]
struct Spec {
    name: &'static str,
    kind: Kind,
    unit: Option<&'static str>,
    labels: &'static [&'static str],
    buckets: &'static [f64],
    help: &'static str,
}

/// Declares every host family once and generates [`HostFamily`] with its
/// [`Spec`]. The order is the order of the exposition.
macro_rules! host_families {
    (@unit) => { None };
    (@unit $unit:literal) => { Some($unit) };
    (@buckets) => { &[] };
    (@buckets $buckets:expr) => { $buckets };
    ($(
        $variant:ident: $name:literal, $kind:ident
        $(, unit = $unit:literal)?
        $(, labels = [$($label:literal),*])?
        $(, buckets = $buckets:expr)?
        , $help:literal;
    )*) => {
        /// One of the host's families.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum HostFamily { $($variant),* }

        impl HostFamily {
            /// Every host family, in registration order.
            const ALL: &[HostFamily] = &[$(HostFamily::$variant),*];

            fn spec(self) -> Spec {
                match self {
                    $(HostFamily::$variant => Spec {
                        name: $name,
                        kind: Kind::$kind,
                        unit: host_families!(@unit $($unit)?),
                        labels: &[$($($label),*)?],
                        buckets: host_families!(@buckets $($buckets)?),
                        help: $help,
                    }),*
                }
            }
        }
    };
}

host_families! {
    Success: "probe_success", Gauge,
        "Whether the probe's last run succeeded.";
    Duration: "probe_duration_seconds", Gauge, unit = "seconds",
        "How long the probe's last run took, in seconds.";
    Runs: "wasmprobe_probe_runs_total", Counter, labels = ["result"],
        "Finished runs of the probe, by result.";
    Traps: "wasmprobe_probe_traps_total", Counter, labels = ["reason"],
        "Runs of the probe that trapped, by reason.";
    Rejected: "wasmprobe_probe_samples_rejected_total", Counter, labels = ["reason"],
        "Samples the probe's plugin returned that the host dropped, by reason.";
    Skipped: "wasmprobe_probe_runs_skipped_total", Counter,
        "Scheduled starts skipped because the previous run of the probe had not finished.";
    LastRun: "wasmprobe_probe_last_run_timestamp_seconds", Gauge, unit = "seconds",
        "When the probe's last run finished, in Unix seconds.";
    Series: "wasmprobe_probe_series", Gauge,
        "Series the probe's plugin currently holds in the exposition.";
    HostCalls: "wasmprobe_probe_host_calls_total", Counter, labels = ["capability"],
        "Host calls the probe's runs made, by capability.";
    NetworkBytes: "wasmprobe_probe_network_bytes_total", Counter, unit = "bytes", labels = ["direction"],
        "Bytes the probe's runs sent and received through host calls (HTTP URL, headers and body as received; ICMP payloads).";
    IcmpPackets: "wasmprobe_probe_icmp_packets_total", Counter, labels = ["direction"],
        "ICMP echo packets the probe's runs sent and received.";
    MemoryPeak: "wasmprobe_probe_memory_peak_bytes", Gauge, unit = "bytes",
        "Largest linear memory the probe's last run reached, in bytes.";
    Cpu: "wasmprobe_probe_cpu_seconds_total", Counter, unit = "seconds",
        "CPU time the probe's runs took (plugin code and host calls), in seconds.";
    Refusals: "wasmprobe_probe_refusals_total", Counter, labels = ["reason"],
        "Host calls of the probe's runs refused before anything left: by the allow-list, or by a spent run budget (max_requests, max_transfer, max_packets).";
    BuildInfo: "wasmprobe_build_info", Gauge, labels = ["version", "wasmtime", "revision"],
        "Build of the running engine; always 1.";
    StartTime: "wasmprobe_start_time_seconds", Gauge, unit = "seconds",
        "When the engine started, in Unix seconds.";
    Lag: "wasmprobe_schedule_lag_seconds", Histogram, unit = "seconds", buckets = LAG_BUCKETS,
        "Delay between a run's scheduled time (with jitter) and its start, including waiting for a free run slot.";
    InFlight: "wasmprobe_runs_in_flight", Gauge,
        "Probe runs executing now.";
    Probes: "wasmprobe_probes", Gauge, labels = ["scheduled"],
        "Probes configured, by whether they run on a schedule.";
    Plugins: "wasmprobe_plugins_loaded", Gauge,
        "Plugins compiled and loaded.";
    PluginLoadFailures: "wasmprobe_plugin_load_failures_total", Counter, labels = ["plugin"],
        "Plugins that failed to load, by plugin.";
    ReloadOk: "wasmprobe_config_last_reload_successful", Gauge,
        "Whether the last config load succeeded.";
    ReloadTime: "wasmprobe_config_last_reload_success_timestamp_seconds", Gauge, unit = "seconds",
        "When the config last loaded successfully, in Unix seconds.";
    Ondemand: "wasmprobe_ondemand_runs_total", Counter, labels = ["result"],
        "Runs requested through /probe, by result.";
    OndemandBusy: "wasmprobe_ondemand_rejected_total", Counter,
        "Requests to /probe refused because too many were in flight.";
    Targets: "wasmprobe_probe_targets", Gauge, labels = ["probe"],
        "Targets a probe with `targets` or `file_sd` checks (those this replica owns).";
    TargetsRefused: "wasmprobe_probe_targets_refused", Gauge, labels = ["probe"],
        "Targets a probe's `file_sd` files list that are not probed (outside its allow-list, or a group with a label the engine writes); the log says why.";
    HttpSdFailures: "wasmprobe_http_sd_refresh_failures_total", Counter, labels = ["probe"],
        "Refreshes of a probe's http_sd URL that failed (its last good list is kept).";
    HttpSdUp: "wasmprobe_http_sd_up", Gauge, labels = ["probe"],
        "Whether the probe's http_sd URL answered its last refresh with a good list.";
    HistoryRuns: "wasmprobe_history_runs", Gauge,
        "Runs the status page's history keeps, over every probe and target.";
    HistoryFailures: "wasmprobe_history_failures", Gauge,
        "Failed runs kept with their evidence, over every probe and target.";
    HistoryBytes: "wasmprobe_history_evidence_bytes", Gauge, unit = "bytes",
        "Bytes of evidence (host calls, log lines) the kept failures hold.";
    Package: "wasmprobe_package_loaded", Gauge, labels = ["package"],
        "Probe packages the config includes: 1 when loaded, 0 when refused (the log says why).";
    IcmpMode: "wasmprobe_icmp_socket_mode", Gauge, labels = ["family", "mode"],
        "The kind of ICMP socket the engine got, per address family: 1 for the mode in use.";
    PoolWarmSlots: "wasmprobe_pool_warm_slots", Gauge,
        "Linear-memory slots of the instance pool that earlier runs or plugin loads used and no run uses now, kept for the next run of the same plugin.";
    PoolWarmResident: "wasmprobe_pool_warm_resident_bytes", Gauge, unit = "bytes",
        "Bytes the pool's idle slots (memories and tables) keep resident, so that the next run in them skips page faults.";
    // Names, types and HELP as Go's client_golang process collector
    // writes them.
    ProcessCpu: "process_cpu_seconds_total", Counter, unit = "seconds",
        "Total user and system CPU time spent in seconds.";
    ProcessResident: "process_resident_memory_bytes", Gauge, unit = "bytes",
        "Resident memory size in bytes.";
    ProcessVirtual: "process_virtual_memory_bytes", Gauge, unit = "bytes",
        "Virtual memory size in bytes.";
    ProcessOpenFds: "process_open_fds", Gauge,
        "Number of open file descriptors.";
    ProcessMaxFds: "process_max_fds", Gauge,
        "Maximum number of open file descriptors.";
    ProcessStart: "process_start_time_seconds", Gauge, unit = "seconds",
        "Start time of the process since unix epoch in seconds.";
}

impl HostFamily {
    /// The families of each probe's host lines ([`HostFamilies::render_probe_family`]).
    const PER_PROBE: [HostFamily; 14] = [
        HostFamily::Success,
        HostFamily::Duration,
        HostFamily::LastRun,
        HostFamily::Runs,
        HostFamily::Traps,
        HostFamily::Rejected,
        HostFamily::Skipped,
        HostFamily::Series,
        HostFamily::HostCalls,
        HostFamily::NetworkBytes,
        HostFamily::MemoryPeak,
        HostFamily::Cpu,
        HostFamily::Refusals,
        HostFamily::IcmpPackets,
    ];

    fn def(self) -> FamilyDef {
        let s = self.spec();
        FamilyDef {
            name: s.name.to_string(),
            help: s.help.to_string(),
            kind: s.kind,
            unit: s.unit.map(str::to_string),
            labels: s.labels.iter().map(|l| l.to_string()).collect(),
            buckets: s.buckets.to_vec(),
        }
    }
}

/// Ids of the host's families in the exposition's table.
#[derive(Debug, Clone)]
pub struct HostFamilies {
    ids: Vec<FamilyId>,
    lag_def: FamilyDef,
}

impl HostFamilies {
    /// Registers every host family; must run on an empty table.
    pub fn register(table: &FamilyTable) -> HostFamilies {
        let ids = HostFamily::ALL
            .iter()
            .map(|f| table.register(f.def(), "host").unwrap_or(FamilyId::MAX))
            .collect();
        HostFamilies {
            ids,
            lag_def: HostFamily::Lag.def(),
        }
    }

    fn id(&self, family: HostFamily) -> FamilyId {
        self.ids
            .get(family as usize)
            .copied()
            .unwrap_or(FamilyId::MAX)
    }

    /// Writes one sample of `family`: `base` labels first, then `values`
    /// for the family's declared labels, in declared order.
    fn put<'a>(
        &self,
        out: &mut impl Sink,
        family: HostFamily,
        base: impl IntoIterator<Item = (&'a str, &'a str)>,
        values: &[&'a str],
        value: f64,
    ) {
        let Some(text) = out.lines(self.id(family)) else {
            return;
        };
        let spec = family.spec();
        debug_assert_eq!(spec.labels.len(), values.len(), "{}", spec.name);
        push_sample(
            text,
            spec.name,
            "",
            base.into_iter()
                .chain(spec.labels.iter().copied().zip(values.iter().copied())),
            None,
            value,
        );
    }

    /// `probe_success` and `probe_duration_seconds` of one outcome.
    pub(super) fn render_probe_result(
        &self,
        labels: &[(String, String)],
        success: bool,
        duration: Duration,
        out: &mut impl Sink,
    ) {
        let l = || labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let success = if success { 1.0 } else { 0.0 };
        self.put(out, HostFamily::Success, l(), &[], success);
        self.put(out, HostFamily::Duration, l(), &[], duration.as_secs_f64());
    }

    /// The host family of a probe's lines with id `id`, if it is one.
    pub(super) fn probe_family(&self, id: FamilyId) -> Option<HostFamily> {
        HostFamily::PER_PROBE
            .into_iter()
            .find(|f| self.id(*f) == id)
    }

    /// One host family's lines of one probe: a scrape writes each family
    /// of every probe in turn.
    pub(super) fn render_probe_family(
        &self,
        family: HostFamily,
        labels: &[(String, String)],
        last: Option<&LastRun>,
        counts: &ProbeCounts,
        out: &mut impl Sink,
    ) {
        use HostFamily as F;
        let l = || labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let rare = counts.rare.as_deref().unwrap_or(&NO_RARE_COUNTS);
        let usage = &counts.usage;
        match (family, last) {
            (F::Success, Some(last)) => {
                let success = if last.success { 1.0 } else { 0.0 };
                self.put(out, family, l(), &[], success);
            }
            (F::Duration, Some(last)) => {
                self.put(out, family, l(), &[], last.duration.as_secs_f64());
            }
            (F::LastRun, Some(last)) => {
                self.put(out, family, l(), &[], unix_seconds(last.finished_at));
            }
            (F::Runs, _) => {
                for (r, n) in RunResult::ALL.iter().zip(&counts.runs) {
                    // Success and failure always appear so `rate()` has a
                    // zero to start from; rarer results appear once they
                    // happen.
                    if *n > 0 || matches!(r, RunResult::Success | RunResult::Failure) {
                        self.put(out, family, l(), &[r.as_str()], *n as f64);
                    }
                }
            }
            (F::Traps, _) => {
                for (t, n) in TrapReason::ALL.iter().zip(&rare.traps) {
                    if *n > 0 {
                        self.put(out, family, l(), &[t.as_str()], *n as f64);
                    }
                }
            }
            (F::Rejected, _) => {
                for (r, n) in Rejection::ALL.iter().zip(&rare.rejected) {
                    if *n > 0 {
                        self.put(out, family, l(), &[r.as_str()], *n as f64);
                    }
                }
            }
            (F::Skipped, _) if rare.skipped > 0 => {
                self.put(out, family, l(), &[], rare.skipped as f64);
            }
            (F::Series, _) => self.put(out, family, l(), &[], counts.held as f64),
            (F::HostCalls, _) => {
                for (capability, n) in &usage.calls {
                    self.put(out, family, l(), &[capability], *n as f64);
                }
            }
            (F::NetworkBytes, Some(_)) => {
                for (direction, n) in [("sent", usage.bytes[0]), ("received", usage.bytes[1])] {
                    self.put(out, family, l(), &[direction], n as f64);
                }
            }
            (F::MemoryPeak, Some(_)) => {
                self.put(out, family, l(), &[], usage.memory_peak as f64);
            }
            (F::Cpu, Some(_)) => self.put(out, family, l(), &[], usage.cpu_seconds),
            (F::Refusals, _) => {
                for (reason, n) in RefusalReason::ALL.iter().zip(rare.refusals) {
                    if n > 0 {
                        self.put(out, family, l(), &[reason.as_str()], n as f64);
                    }
                }
            }
            (F::IcmpPackets, _) if rare.packets.iter().any(|n| *n > 0) => {
                for (direction, n) in [("sent", rare.packets[0]), ("received", rare.packets[1])] {
                    self.put(out, family, l(), &[direction], n as f64);
                }
            }
            _ => {}
        }
    }
}

/// Where host lines go: each family's own text (`BTreeMap`: a probe's
/// `/probe` answer, the engine's globals), one family's lines alone
/// ([`OneFamily`]: a scrape writing that family), or nowhere
/// ([`Presence`]: which families have lines).
pub(super) trait Sink {
    /// The text to write a line of family `id` to; `None` skips it.
    fn lines(&mut self, id: FamilyId) -> Option<&mut String>;
}

impl Sink for BTreeMap<FamilyId, String> {
    fn lines(&mut self, id: FamilyId) -> Option<&mut String> {
        Some(self.entry(id).or_default())
    }
}

/// Takes the lines of one family, into `out`.
pub(super) struct OneFamily<'a> {
    pub id: FamilyId,
    pub out: &'a mut String,
}

impl Sink for OneFamily<'_> {
    fn lines(&mut self, id: FamilyId) -> Option<&mut String> {
        (id == self.id).then_some(&mut *self.out)
    }
}

/// Marks the families that have a line, writing nothing.
pub(super) struct Presence<'a>(pub &'a mut [bool]);

impl Sink for Presence<'_> {
    fn lines(&mut self, id: FamilyId) -> Option<&mut String> {
        if let Some(seen) = self.0.get_mut(id as usize) {
            *seen = true;
        }
        None
    }
}

/// A probe's counts that its host lines show, summed over its life: kept
/// as numbers, and written as lines only by a scrape.
#[derive(Debug, Default, Clone)]
pub(crate) struct ProbeCounts {
    pub(crate) runs: [u64; RunResult::ALL.len()],
    /// Series the probe holds.
    pub(crate) held: usize,
    usage: ProbeUsage,
    /// Counts most probes keep at zero all their life: boxed when first
    /// needed, 8 bytes until then where inline they take 160, in the slot
    /// and in each published copy.
    rare: Option<Box<RareCounts>>,
}

/// Traps, rejected samples, skipped starts, refused calls, ICMP packets.
#[derive(Debug, Default, Clone)]
struct RareCounts {
    traps: [u64; TrapReason::ALL.len()],
    rejected: [u64; Rejection::ALL.len()],
    skipped: u64,
    refusals: [u64; RefusalReason::ALL.len()],
    /// Sent, received.
    packets: [u64; 2],
}

static NO_RARE_COUNTS: RareCounts = RareCounts {
    traps: [0; TrapReason::ALL.len()],
    rejected: [0; Rejection::ALL.len()],
    skipped: 0,
    refusals: [0; RefusalReason::ALL.len()],
    packets: [0; 2],
};

impl ProbeCounts {
    fn rare(&mut self) -> &mut RareCounts {
        self.rare.get_or_insert_with(Box::default)
    }

    pub(crate) fn count_trap(&mut self, trap: TrapReason) {
        self.rare().traps[trap.index()] += 1;
    }

    pub(crate) fn count_rejected(&mut self, reason: Rejection, n: u64) {
        if n > 0 {
            self.rare().rejected[reason as usize] += n;
        }
    }

    pub(crate) fn count_skip(&mut self) {
        self.rare().skipped += 1;
    }

    /// Adds what a run used.
    pub(crate) fn add_usage(&mut self, run: &UsageCounts) {
        self.usage.add(run);
        let packets = [run.packets_sent, run.packets_received];
        if packets.iter().chain(&run.refusals).any(|n| *n > 0) {
            let rare = self.rare();
            for (sum, n) in rare.packets.iter_mut().zip(packets) {
                *sum += n;
            }
            for (sum, n) in rare.refusals.iter_mut().zip(run.refusals) {
                *sum += n;
            }
        }
    }
}

/// What a probe's runs have used, summed over its life (the memory peak
/// is its last run's).
#[derive(Debug, Default, Clone)]
pub(crate) struct ProbeUsage {
    /// Host calls by capability, sorted by name: a vector of the one to
    /// three capabilities a plugin calls takes 24 bytes each, where a
    /// `BTreeMap` takes a 280-byte node per probe.
    calls: Vec<(&'static str, u64)>,
    /// Sent, received.
    bytes: [u64; 2],
    memory_peak: u64,
    cpu_seconds: f64,
}

impl ProbeUsage {
    fn add(&mut self, run: &UsageCounts) {
        for (capability, n) in &run.calls {
            match self.calls.binary_search_by(|(c, _)| c.cmp(capability)) {
                Ok(i) => self.calls[i].1 += n,
                Err(i) => {
                    self.calls.insert(i, (capability, *n));
                    self.calls.shrink_to_fit();
                }
            }
        }
        self.bytes[0] += run.bytes_sent;
        self.bytes[1] += run.bytes_received;
        self.memory_peak = run.memory_peak;
        self.cpu_seconds += run.cpu_seconds;
    }
}

/// Whether a probe runs on a schedule: the `scheduled` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheduling {
    Scheduled,
    OnDemand,
}

impl Scheduling {
    const ALL: [Scheduling; 2] = [Scheduling::Scheduled, Scheduling::OnDemand];

    fn as_str(self) -> &'static str {
        match self {
            Scheduling::Scheduled => "true",
            Scheduling::OnDemand => "false",
        }
    }
}

/// An address family: the `family` label of the ICMP socket mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    const ALL: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];

    fn as_str(self) -> &'static str {
        match self {
            IpFamily::V4 => "ipv4",
            IpFamily::V6 => "ipv6",
        }
    }
}

/// The commit the binary was built from (see `host/build.rs`).
const REVISION: &str = env!("WASMPROBE_REVISION");

/// Engine-wide self-metrics. The scheduler, loader, reloader and server
/// report events through the methods below; the fields stay private so
/// each value has one writer and one meaning.
#[derive(Debug)]
pub struct GlobalMetrics {
    started: SystemTime,
    lag: Mutex<HistogramState>,
    in_flight: AtomicI64,
    /// Probes of the installed set, by [`Scheduling`].
    probes: [AtomicU64; Scheduling::ALL.len()],
    plugins_loaded: AtomicU64,
    load_failures: Mutex<BTreeMap<String, u64>>,
    /// 1 or 0; -1 before the first load.
    reload_ok: AtomicI64,
    /// Unix milliseconds of the last successful load.
    reload_time_ms: AtomicU64,
    ondemand: [AtomicU64; RunResult::ALL.len()],
    ondemand_busy: AtomicU64,
    /// ICMP socket modes by [`IpFamily`], once detected.
    icmp_modes: Mutex<Option<[SocketMode; IpFamily::ALL.len()]>>,
    /// Packages of the running config: name, loaded.
    packages: Mutex<Vec<(String, bool)>>,
    /// Probes with many targets: name, targets probed, targets refused.
    targets: Mutex<Vec<(String, u64, u64)>>,
    /// Probes with `http_sd`: name and URL.
    http_sd: Mutex<Vec<(String, String)>>,
    /// What every target's history holds.
    pub history: crate::history::HistoryTotals,
    /// `--shard INDEX/COUNT`, a label on every engine-wide series.
    shard: std::sync::OnceLock<String>,
    /// The engine's instance pool, read at each scrape.
    pool: std::sync::OnceLock<PoolHandle>,
}

/// [`wasmtime::PoolingAllocatorMetrics`], which has no `Debug`.
struct PoolHandle(wasmtime::PoolingAllocatorMetrics);

impl std::fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolHandle").finish_non_exhaustive()
    }
}

impl Default for GlobalMetrics {
    fn default() -> Self {
        GlobalMetrics {
            started: SystemTime::now(),
            lag: Mutex::new(HistogramState::new(LAG_BUCKETS.len())),
            in_flight: AtomicI64::new(0),
            probes: Default::default(),
            plugins_loaded: AtomicU64::new(0),
            load_failures: Mutex::new(BTreeMap::new()),
            reload_ok: AtomicI64::new(-1),
            reload_time_ms: AtomicU64::new(0),
            ondemand: Default::default(),
            ondemand_busy: AtomicU64::new(0),
            icmp_modes: Mutex::new(None),
            packages: Mutex::new(Vec::new()),
            targets: Mutex::new(Vec::new()),
            http_sd: Mutex::new(Vec::new()),
            history: Default::default(),
            shard: std::sync::OnceLock::new(),
            pool: std::sync::OnceLock::new(),
        }
    }
}

/// A scheduled run counted in `wasmprobe_runs_in_flight` until dropped, so
/// a run cancelled mid-way is uncounted too.
#[must_use = "the run counts as in flight only while this lives"]
#[derive(Debug)]
pub struct RunInFlight<'a>(&'a AtomicI64);

impl Drop for RunInFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl GlobalMetrics {
    /// A scheduled run got its run slot `lag` after its due time.
    pub fn scheduled_run_started_late(&self, lag: Duration) {
        let mut h = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        h.observe(LAG_BUCKETS, lag.as_secs_f64());
    }

    /// A scheduled run starts executing; it is in flight until the guard
    /// is dropped.
    pub fn run_started(&self) -> RunInFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        RunInFlight(&self.in_flight)
    }

    /// Scheduled runs executing now, for the shutdown drain.
    pub fn runs_in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed).max(0) as u64
    }

    /// Runs since the engine started: scheduled ones as they get their run
    /// slot (the schedule-lag histogram counts each), `/probe` ones as they
    /// finish (refused requests ran nothing). How busy the engine is, for
    /// [`crate::heap::Pacer`].
    pub fn runs_total(&self) -> u64 {
        let scheduled = self.lag.lock().unwrap_or_else(|e| e.into_inner()).count();
        scheduled
            + self
                .ondemand
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .sum::<u64>()
    }

    /// A probe set was installed: its probe counts and plugins replace the
    /// previous set's.
    pub fn probes_installed(&self, scheduled: u64, ondemand: u64, plugins: u64) {
        self.probes[Scheduling::Scheduled as usize].store(scheduled, Ordering::Relaxed);
        self.probes[Scheduling::OnDemand as usize].store(ondemand, Ordering::Relaxed);
        self.plugins_loaded.store(plugins, Ordering::Relaxed);
    }

    /// A plugin failed to compile or describe itself.
    pub fn plugin_load_failed(&self, plugin: &str) {
        let mut m = self.load_failures.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(plugin.to_string()).or_default() += 1;
    }

    /// This replica owns one shard; every engine-wide series says which.
    /// Only the first call counts.
    pub fn shard_assigned(&self, shard: String) {
        let _ = self.shard.set(shard);
    }

    /// A config was read: its packages, each loaded or refused.
    pub fn packages_included(&self, packages: Vec<(String, bool)>) {
        *self.packages.lock().unwrap_or_else(|e| e.into_inner()) = packages;
    }

    /// A config was installed: its probes with many targets, each with
    /// how many targets it probes and how many it refused.
    pub fn targets_installed(&self, targets: Vec<(String, u64, u64)>) {
        *self.targets.lock().unwrap_or_else(|e| e.into_inner()) = targets;
    }

    /// A config was installed: its probes with an `http_sd` URL.
    pub fn http_sd_installed(&self, sources: Vec<(String, String)>) {
        *self.http_sd.lock().unwrap_or_else(|e| e.into_inner()) = sources;
    }

    /// The engine's instance pool, reported at every scrape from then on
    /// (an engine without a pool reports nothing).
    pub fn pool_installed(&self, pool: Option<wasmtime::PoolingAllocatorMetrics>) {
        if let Some(pool) = pool {
            let _ = self.pool.set(PoolHandle(pool));
        }
    }

    /// The ICMP sockets the process may open were detected.
    pub fn icmp_sockets_detected(&self, v4: SocketMode, v6: SocketMode) {
        *self.icmp_modes.lock().unwrap_or_else(|e| e.into_inner()) = Some([v4, v6]);
    }

    /// A `/probe` request was refused because too many were in flight.
    pub fn ondemand_refused_busy(&self) {
        self.ondemand_busy.fetch_add(1, Ordering::Relaxed);
    }

    /// A `/probe` run finished with `result`.
    pub fn ondemand_run_finished(&self, result: RunResult) {
        self.ondemand[result.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A config (the first, or a reload, changed or not) loaded at `at`.
    pub fn reload_succeeded(&self, at: SystemTime) {
        self.reload_ok.store(1, Ordering::Relaxed);
        let ms = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.reload_time_ms.store(ms, Ordering::Relaxed);
    }

    /// A reload was refused; the running config stays and so does the
    /// time of the last success.
    pub fn reload_failed(&self) {
        self.reload_ok.store(0, Ordering::Relaxed);
    }

    pub(super) fn render(&self, host: &HostFamilies, out: &mut BTreeMap<FamilyId, String>) {
        use HostFamily as F;
        let shard: Vec<(&str, &str)> = self
            .shard
            .get()
            .map(|s| vec![("shard", s.as_str())])
            .unwrap_or_default();
        let base = || shard.iter().copied();
        let mut put = |family: HostFamily, values: &[&str], v: f64| {
            host.put(out, family, base(), values, v);
        };
        put(F::StartTime, &[], unix_seconds(self.started));
        put(F::InFlight, &[], self.runs_in_flight() as f64);
        for s in Scheduling::ALL {
            let n = self.probes[s as usize].load(Ordering::Relaxed);
            put(F::Probes, &[s.as_str()], n as f64);
        }
        put(
            F::Plugins,
            &[],
            self.plugins_loaded.load(Ordering::Relaxed) as f64,
        );
        let ok = self.reload_ok.load(Ordering::Relaxed);
        if ok >= 0 {
            put(F::ReloadOk, &[], ok as f64);
            let ms = self.reload_time_ms.load(Ordering::Relaxed);
            put(F::ReloadTime, &[], ms as f64 / 1000.0);
        }
        for (r, n) in RunResult::ALL.iter().zip(&self.ondemand) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                put(F::Ondemand, &[r.as_str()], n as f64);
            }
        }
        put(
            F::OndemandBusy,
            &[],
            self.ondemand_busy.load(Ordering::Relaxed) as f64,
        );
        {
            let failures = self.load_failures.lock().unwrap_or_else(|e| e.into_inner());
            for (plugin, n) in failures.iter() {
                put(F::PluginLoadFailures, &[plugin.as_str()], *n as f64);
            }
        }
        {
            let packages = self.packages.lock().unwrap_or_else(|e| e.into_inner());
            for (name, loaded) in packages.iter() {
                put(
                    F::Package,
                    &[name.as_str()],
                    if *loaded { 1.0 } else { 0.0 },
                );
            }
        }
        put(
            F::HistoryRuns,
            &[],
            self.history.runs.load(Ordering::Relaxed) as f64,
        );
        put(
            F::HistoryFailures,
            &[],
            self.history.failures.load(Ordering::Relaxed) as f64,
        );
        put(
            F::HistoryBytes,
            &[],
            self.history.evidence_bytes.load(Ordering::Relaxed) as f64,
        );
        {
            let targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
            for (probe, probed, refused) in targets.iter() {
                put(F::Targets, &[probe.as_str()], *probed as f64);
                put(F::TargetsRefused, &[probe.as_str()], *refused as f64);
            }
        }
        {
            let sources = self.http_sd.lock().unwrap_or_else(|e| e.into_inner());
            for (probe, url) in sources.iter() {
                let state = crate::config::targets::http_sd_state(url);
                put(F::HttpSdFailures, &[probe.as_str()], state.failures as f64);
                put(
                    F::HttpSdUp,
                    &[probe.as_str()],
                    if state.last_error.is_none() && state.groups.is_some() {
                        1.0
                    } else {
                        0.0
                    },
                );
            }
        }
        let modes = *self.icmp_modes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(modes) = modes {
            for (family, got) in IpFamily::ALL.into_iter().zip(modes) {
                for mode in SocketMode::ALL {
                    let v = if mode == got { 1.0 } else { 0.0 };
                    put(F::IcmpMode, &[family.as_str(), mode.as_str()], v);
                }
            }
        }
        if let Some(PoolHandle(pool)) = self.pool.get() {
            put(
                F::PoolWarmSlots,
                &[],
                f64::from(pool.unused_warm_memories()),
            );
            let resident = pool.unused_memory_bytes_resident() + pool.unused_table_bytes_resident();
            put(F::PoolWarmResident, &[], resident as f64);
        }
        put(
            F::BuildInfo,
            &[
                env!("CARGO_PKG_VERSION"),
                crate::runtime::WASMTIME_VERSION,
                REVISION,
            ],
            1.0,
        );
        let p = ProcessStats::read();
        for (family, value) in [
            (F::ProcessCpu, p.cpu_seconds),
            (F::ProcessResident, p.resident_bytes),
            (F::ProcessVirtual, p.virtual_bytes),
            (F::ProcessOpenFds, p.open_fds),
            (F::ProcessMaxFds, p.max_fds),
            (F::ProcessStart, p.start_time),
        ] {
            // A value /proc did not give is left out, never written as 0.
            if let Some(v) = value {
                put(family, &[], v);
            }
        }
        let lag = self.lag.lock().unwrap_or_else(|e| e.into_inner()).clone();
        push_histogram(
            out.entry(host.id(F::Lag)).or_default(),
            &host.lag_def,
            &shard,
            &lag,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_registered_in_declared_order() {
        let table = FamilyTable::default();
        let host = HostFamilies::register(&table);
        for (i, f) in HostFamily::ALL.iter().enumerate() {
            assert_eq!(host.id(*f) as usize, i, "{f:?}");
            let def = table.get(host.id(*f));
            assert_eq!(def.as_deref(), Some(&f.def()), "{f:?}");
        }
    }

    #[test]
    fn declared_units_match_names() {
        for f in HostFamily::ALL {
            let def = f.def();
            if let Some(unit) = &def.unit {
                assert!(def.base_name().ends_with(&format!("_{unit}")), "{f:?}");
            }
            if def.kind == Kind::Counter {
                assert!(def.name.ends_with("_total"), "{f:?}");
            }
        }
    }

    #[test]
    fn every_label_the_engine_writes_is_reserved_for_configs_and_packages() {
        for f in HostFamily::ALL {
            for label in f.spec().labels {
                assert!(
                    crate::names::ENGINE_LABELS.contains(label),
                    "{f:?} writes {label:?}, which names::ENGINE_LABELS does not reserve"
                );
            }
        }
        assert!(crate::names::ENGINE_LABELS.contains(&"shard"));
    }
}
