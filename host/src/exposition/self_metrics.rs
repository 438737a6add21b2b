//! The host's own families: per-probe outcome families that dashboards
//! built for blackbox_exporter expect (`probe_success`,
//! `probe_duration_seconds`) and the engine's `wasmprobe_*` self-metrics.
//! All of them are registered in one place, first, so their ids are fixed.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::encode::{HistogramState, push_histogram, push_sample};
use super::family::{FamilyDef, FamilyId, FamilyTable, Kind};
use super::series::Rejection;
use super::{LastRun, unix_seconds};
use crate::hostcalls::icmp::SocketMode;
use crate::runtime::outcome::{RunResult, TrapReason};

/// Buckets of the schedule-lag histogram, in seconds.
pub(crate) const LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Ids of the host's families.
#[derive(Debug, Clone)]
pub struct HostFamilies {
    pub success: FamilyId,
    pub duration: FamilyId,
    pub runs: FamilyId,
    pub traps: FamilyId,
    pub rejected: FamilyId,
    pub skipped: FamilyId,
    pub last_run: FamilyId,
    pub series: FamilyId,
    pub build_info: FamilyId,
    pub start_time: FamilyId,
    pub lag: FamilyId,
    pub in_flight: FamilyId,
    pub probes: FamilyId,
    pub plugins: FamilyId,
    pub plugin_load_failures: FamilyId,
    pub reload_ok: FamilyId,
    pub reload_time: FamilyId,
    pub ondemand: FamilyId,
    pub ondemand_busy: FamilyId,
    pub icmp_mode: FamilyId,
    pub package: FamilyId,
    lag_def: FamilyDef,
}

fn def(name: &str, kind: Kind, help: &str, labels: &[&str]) -> FamilyDef {
    FamilyDef {
        name: name.to_string(),
        help: help.to_string(),
        kind,
        unit: None,
        labels: labels.iter().map(|s| s.to_string()).collect(),
        buckets: Vec::new(),
    }
}

impl HostFamilies {
    /// Registers every host family; must run on an empty table.
    pub fn register(table: &FamilyTable) -> HostFamilies {
        let reg = |d: FamilyDef| table.register(d, "host").unwrap_or(FamilyId::MAX);
        use Kind::*;
        let lag_def = FamilyDef {
            unit: Some("seconds".into()),
            buckets: LAG_BUCKETS.to_vec(),
            ..def(
                "wasmprobe_schedule_lag_seconds",
                Histogram,
                "Delay between a run's scheduled time (with jitter) and its start, including waiting for a free run slot.",
                &[],
            )
        };
        HostFamilies {
            success: reg(def(
                "probe_success",
                Gauge,
                "Whether the probe's last run succeeded.",
                &[],
            )),
            duration: reg(FamilyDef {
                unit: Some("seconds".into()),
                ..def(
                    "probe_duration_seconds",
                    Gauge,
                    "How long the probe's last run took, in seconds.",
                    &[],
                )
            }),
            runs: reg(def(
                "wasmprobe_probe_runs_total",
                Counter,
                "Finished runs of the probe, by result.",
                &["result"],
            )),
            traps: reg(def(
                "wasmprobe_probe_traps_total",
                Counter,
                "Runs of the probe that trapped, by reason.",
                &["reason"],
            )),
            rejected: reg(def(
                "wasmprobe_probe_samples_rejected_total",
                Counter,
                "Samples the probe's plugin returned that the host dropped, by reason.",
                &["reason"],
            )),
            skipped: reg(def(
                "wasmprobe_probe_runs_skipped_total",
                Counter,
                "Scheduled starts skipped because the previous run of the probe had not finished.",
                &[],
            )),
            last_run: reg(FamilyDef {
                unit: Some("seconds".into()),
                ..def(
                    "wasmprobe_probe_last_run_timestamp_seconds",
                    Gauge,
                    "When the probe's last run finished, in Unix seconds.",
                    &[],
                )
            }),
            series: reg(def(
                "wasmprobe_probe_series",
                Gauge,
                "Series the probe's plugin currently holds in the exposition.",
                &[],
            )),
            build_info: reg(def(
                "wasmprobe_build_info",
                Gauge,
                "Build of the running engine; always 1.",
                &["version", "wasmtime"],
            )),
            start_time: reg(FamilyDef {
                unit: Some("seconds".into()),
                ..def(
                    "wasmprobe_start_time_seconds",
                    Gauge,
                    "When the engine started, in Unix seconds.",
                    &[],
                )
            }),
            lag: reg(lag_def.clone()),
            in_flight: reg(def(
                "wasmprobe_runs_in_flight",
                Gauge,
                "Probe runs executing now.",
                &[],
            )),
            probes: reg(def(
                "wasmprobe_probes",
                Gauge,
                "Probes configured, by whether they run on a schedule.",
                &["scheduled"],
            )),
            plugins: reg(def(
                "wasmprobe_plugins_loaded",
                Gauge,
                "Plugins compiled and loaded.",
                &[],
            )),
            plugin_load_failures: reg(def(
                "wasmprobe_plugin_load_failures_total",
                Counter,
                "Plugins that failed to load, by plugin.",
                &["plugin"],
            )),
            reload_ok: reg(def(
                "wasmprobe_config_last_reload_successful",
                Gauge,
                "Whether the last config load succeeded.",
                &[],
            )),
            reload_time: reg(FamilyDef {
                unit: Some("seconds".into()),
                ..def(
                    "wasmprobe_config_last_reload_success_timestamp_seconds",
                    Gauge,
                    "When the config last loaded successfully, in Unix seconds.",
                    &[],
                )
            }),
            ondemand: reg(def(
                "wasmprobe_ondemand_runs_total",
                Counter,
                "Runs requested through /probe, by result.",
                &["result"],
            )),
            ondemand_busy: reg(def(
                "wasmprobe_ondemand_rejected_total",
                Counter,
                "Requests to /probe refused because too many were in flight.",
                &[],
            )),
            package: reg(def(
                "wasmprobe_package_loaded",
                Gauge,
                "Probe packages the config includes: 1 when loaded, 0 when refused (the log says why).",
                &["package"],
            )),
            icmp_mode: reg(def(
                "wasmprobe_icmp_socket_mode",
                Gauge,
                "The kind of ICMP socket the engine got, per address family: 1 for the mode in use.",
                &["family", "mode"],
            )),
            lag_def,
        }
    }

    /// `probe_success` and `probe_duration_seconds` of one outcome.
    pub fn render_outcome(
        &self,
        labels: &[(String, String)],
        success: bool,
        duration: Duration,
        out: &mut BTreeMap<FamilyId, String>,
    ) {
        let l = || labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        push_sample(
            out.entry(self.success).or_default(),
            "probe_success",
            "",
            l(),
            None,
            if success { 1.0 } else { 0.0 },
        );
        push_sample(
            out.entry(self.duration).or_default(),
            "probe_duration_seconds",
            "",
            l(),
            None,
            duration.as_secs_f64(),
        );
    }

    /// Every host family of one probe.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn render_probe(
        &self,
        labels: &[(String, String)],
        last: Option<&LastRun>,
        runs: &[u64],
        traps: &[u64],
        rejected: &[u64],
        skipped: u64,
        held: usize,
        out: &mut BTreeMap<FamilyId, String>,
    ) {
        let l = || labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        if let Some(last) = last {
            self.render_outcome(labels, last.success, last.duration, out);
            push_sample(
                out.entry(self.last_run).or_default(),
                "wasmprobe_probe_last_run_timestamp_seconds",
                "",
                l(),
                None,
                unix_seconds(last.finished_at),
            );
        }
        for (r, n) in RunResult::ALL.iter().zip(runs) {
            // Success and failure always appear so `rate()` has a zero to
            // start from; rarer results appear once they happen.
            if *n > 0 || matches!(r, RunResult::Success | RunResult::Failure) {
                push_sample(
                    out.entry(self.runs).or_default(),
                    "wasmprobe_probe_runs_total",
                    "",
                    l(),
                    Some(("result", r.as_str())),
                    *n as f64,
                );
            }
        }
        for (t, n) in TrapReason::ALL.iter().zip(traps) {
            if *n > 0 {
                push_sample(
                    out.entry(self.traps).or_default(),
                    "wasmprobe_probe_traps_total",
                    "",
                    l(),
                    Some(("reason", t.as_str())),
                    *n as f64,
                );
            }
        }
        for (r, n) in Rejection::ALL.iter().zip(rejected) {
            if *n > 0 {
                push_sample(
                    out.entry(self.rejected).or_default(),
                    "wasmprobe_probe_samples_rejected_total",
                    "",
                    l(),
                    Some(("reason", r.as_str())),
                    *n as f64,
                );
            }
        }
        if skipped > 0 {
            push_sample(
                out.entry(self.skipped).or_default(),
                "wasmprobe_probe_runs_skipped_total",
                "",
                l(),
                None,
                skipped as f64,
            );
        }
        push_sample(
            out.entry(self.series).or_default(),
            "wasmprobe_probe_series",
            "",
            l(),
            None,
            held as f64,
        );
    }
}

/// Engine-wide self-metrics, updated by the scheduler, loader and server.
#[derive(Debug)]
pub struct GlobalMetrics {
    started: SystemTime,
    lag: Mutex<HistogramState>,
    pub in_flight: AtomicI64,
    pub probes_scheduled: AtomicU64,
    pub probes_ondemand: AtomicU64,
    pub plugins_loaded: AtomicU64,
    load_failures: Mutex<BTreeMap<String, u64>>,
    /// 1 or 0; -1 before the first load.
    pub reload_ok: AtomicI64,
    /// Unix milliseconds of the last successful load.
    pub reload_time_ms: AtomicU64,
    ondemand: [AtomicU64; RunResult::ALL.len()],
    pub ondemand_busy: AtomicU64,
    /// ICMP socket modes for IPv4 and IPv6, once detected.
    icmp_modes: Mutex<Option<[SocketMode; 2]>>,
    /// Packages of the running config: name, loaded.
    packages: Mutex<Vec<(String, bool)>>,
    /// `--shard INDEX/COUNT`, a label on every engine-wide series.
    shard: std::sync::OnceLock<String>,
}

impl Default for GlobalMetrics {
    fn default() -> Self {
        GlobalMetrics {
            started: SystemTime::now(),
            lag: Mutex::new(HistogramState::new(LAG_BUCKETS.len())),
            in_flight: AtomicI64::new(0),
            probes_scheduled: AtomicU64::new(0),
            probes_ondemand: AtomicU64::new(0),
            plugins_loaded: AtomicU64::new(0),
            load_failures: Mutex::new(BTreeMap::new()),
            reload_ok: AtomicI64::new(-1),
            reload_time_ms: AtomicU64::new(0),
            ondemand: Default::default(),
            ondemand_busy: AtomicU64::new(0),
            icmp_modes: Mutex::new(None),
            packages: Mutex::new(Vec::new()),
            shard: std::sync::OnceLock::new(),
        }
    }
}

impl GlobalMetrics {
    pub fn observe_lag(&self, lag: Duration) {
        let mut h = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        h.observe(LAG_BUCKETS, lag.as_secs_f64());
    }

    pub fn plugin_load_failed(&self, plugin: &str) {
        let mut m = self.load_failures.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(plugin.to_string()).or_default() += 1;
    }

    /// Labels the engine-wide series with this replica's shard.
    pub fn set_shard(&self, shard: String) {
        let _ = self.shard.set(shard);
    }

    pub fn set_packages(&self, packages: Vec<(String, bool)>) {
        *self.packages.lock().unwrap_or_else(|e| e.into_inner()) = packages;
    }

    pub fn set_icmp_modes(&self, v4: SocketMode, v6: SocketMode) {
        *self.icmp_modes.lock().unwrap_or_else(|e| e.into_inner()) = Some([v4, v6]);
    }

    pub fn ondemand_run(&self, result: RunResult) {
        self.ondemand[result.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Records a config load's outcome.
    pub fn config_loaded(&self, ok: bool) {
        self.reload_ok.store(i64::from(ok), Ordering::Relaxed);
        if ok {
            let ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            self.reload_time_ms.store(ms, Ordering::Relaxed);
        }
    }

    pub(super) fn render(&self, host: &HostFamilies, out: &mut BTreeMap<FamilyId, String>) {
        let shard: Vec<(&str, &str)> = self
            .shard
            .get()
            .map(|s| vec![("shard", s.as_str())])
            .unwrap_or_default();
        let base = || shard.iter().copied();
        let mut put = |id: FamilyId, name: &str, extra: Option<(&str, &str)>, v: f64| {
            push_sample(out.entry(id).or_default(), name, "", base(), extra, v);
        };
        put(
            host.start_time,
            "wasmprobe_start_time_seconds",
            None,
            unix_seconds(self.started),
        );
        put(
            host.in_flight,
            "wasmprobe_runs_in_flight",
            None,
            self.in_flight.load(Ordering::Relaxed).max(0) as f64,
        );
        put(
            host.probes,
            "wasmprobe_probes",
            Some(("scheduled", "true")),
            self.probes_scheduled.load(Ordering::Relaxed) as f64,
        );
        put(
            host.probes,
            "wasmprobe_probes",
            Some(("scheduled", "false")),
            self.probes_ondemand.load(Ordering::Relaxed) as f64,
        );
        put(
            host.plugins,
            "wasmprobe_plugins_loaded",
            None,
            self.plugins_loaded.load(Ordering::Relaxed) as f64,
        );
        let ok = self.reload_ok.load(Ordering::Relaxed);
        if ok >= 0 {
            put(
                host.reload_ok,
                "wasmprobe_config_last_reload_successful",
                None,
                ok as f64,
            );
            put(
                host.reload_time,
                "wasmprobe_config_last_reload_success_timestamp_seconds",
                None,
                self.reload_time_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            );
        }
        for (r, n) in RunResult::ALL.iter().zip(&self.ondemand) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                put(
                    host.ondemand,
                    "wasmprobe_ondemand_runs_total",
                    Some(("result", r.as_str())),
                    n as f64,
                );
            }
        }
        put(
            host.ondemand_busy,
            "wasmprobe_ondemand_rejected_total",
            None,
            self.ondemand_busy.load(Ordering::Relaxed) as f64,
        );
        {
            let failures = self.load_failures.lock().unwrap_or_else(|e| e.into_inner());
            for (plugin, n) in failures.iter() {
                put(
                    host.plugin_load_failures,
                    "wasmprobe_plugin_load_failures_total",
                    Some(("plugin", plugin)),
                    *n as f64,
                );
            }
        }
        {
            let packages = self.packages.lock().unwrap_or_else(|e| e.into_inner());
            for (name, loaded) in packages.iter() {
                push_sample(
                    out.entry(host.package).or_default(),
                    "wasmprobe_package_loaded",
                    "",
                    base().chain([("package", name.as_str())]),
                    None,
                    if *loaded { 1.0 } else { 0.0 },
                );
            }
        }
        let modes = *self.icmp_modes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(modes) = modes {
            for (family, got) in ["ipv4", "ipv6"].into_iter().zip(modes) {
                for mode in SocketMode::ALL {
                    push_sample(
                        out.entry(host.icmp_mode).or_default(),
                        "wasmprobe_icmp_socket_mode",
                        "",
                        base().chain([("family", family), ("mode", mode.as_str())]),
                        None,
                        if mode == got { 1.0 } else { 0.0 },
                    );
                }
            }
        }
        push_sample(
            out.entry(host.build_info).or_default(),
            "wasmprobe_build_info",
            "",
            base().chain([
                ("version", env!("CARGO_PKG_VERSION")),
                ("wasmtime", crate::runtime::WASMTIME_VERSION),
            ]),
            None,
            1.0,
        );
        let lag = self.lag.lock().unwrap_or_else(|e| e.into_inner()).clone();
        push_histogram(
            out.entry(host.lag).or_default(),
            &host.lag_def,
            &shard,
            &lag,
        );
    }
}
