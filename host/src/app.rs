//! The running engine: a loaded config (plugins compiled, grants built,
//! probe slots created) and the shared handles the scheduler and the server
//! use.
//!
//! [`prepare`] turns a validated [`Config`] into a [`ProbeSet`], collecting
//! every problem that needs the plugins (a plugin that does not load, a
//! probe config its plugin's schema refuses, a TLS anchor rustls refuses)
//! as diagnostics with the config location they belong to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;

use crate::config::{Config, Diagnostic, Diagnostics, PluginName, ProbeConfig, ProbeName};
use crate::exposition::{
    Exposition, FamilyDef, Format, PluginFamilies, ProbeSlot, SeriesBudget, Staged,
};
use crate::hostcalls::state::ProbeState;
use crate::hostcalls::tape::Tape;
use crate::hostcalls::{LoadScope, Services};
use crate::runtime::engine::PoolSize;
use crate::runtime::record::RunRecord;
use crate::runtime::run::{self, RunSpec};
use crate::runtime::store::Grants;
use crate::runtime::{Plugin, PluginError, WasmEngine};

/// A plugin with its place in the exposition.
#[derive(Debug)]
pub struct LoadedPlugin {
    pub plugin: Plugin,
    pub families: PluginFamilies,
    pub budget: Arc<SeriesBudget>,
    /// The budget's limit under this config, applied on install.
    pub budget_limit: usize,
    /// The package whose budget this plugin shares.
    pub group: Option<String>,
}

/// The series budget a plugin spends: its own, or its package's (shared by
/// the package's plugins); kept across reloads so held series stay counted.
fn budget_for(
    groups: &mut BTreeMap<String, Arc<SeriesBudget>>,
    previous: Option<&ProbeSet>,
    name: &PluginName,
    source: &crate::config::PluginSource,
) -> Arc<SeriesBudget> {
    let old = |pred: &dyn Fn(&LoadedPlugin) -> bool| {
        previous.and_then(|p| {
            p.plugins
                .values()
                .find(|l| pred(l))
                .map(|l| l.budget.clone())
        })
    };
    match &source.budget_group {
        Some(group) => groups
            .entry(group.clone())
            .or_insert_with(|| {
                old(&|l| l.group.as_deref() == Some(group))
                    .unwrap_or_else(|| SeriesBudget::new(source.series_budget))
            })
            .clone(),
        None => previous.and_then(|p| p.plugins.get(name)).map_or_else(
            || SeriesBudget::new(source.series_budget),
            |p| p.budget.clone(),
        ),
    }
}

/// A probe ready to run.
#[derive(Debug)]
pub struct Probe {
    /// Shared with the running config: 100,000 probes hold one copy.
    pub config: Arc<ProbeConfig>,
    pub plugin: Arc<LoadedPlugin>,
    /// The config table as JSON text, serialised once.
    pub config_json: String,
    pub grants: Grants,
    /// `probe` and the config's labels: what an on-demand run's series
    /// carry.
    pub labels: Vec<(String, String)>,
    /// What the scheduler runs: one per target of a probe with many, else
    /// one (its `target`, or none).
    pub runs: Vec<Arc<TargetRun>>,
}

/// One target of a probe as the scheduler runs it, with its own series
/// and its own state store (a plugin's state is per target).
#[derive(Debug)]
pub struct TargetRun {
    /// What the plugin is handed; empty for a probe without a target.
    pub target: String,
    /// The one address of the target's name this run reaches (`fan_out`).
    pub ip: Option<std::net::IpAddr>,
    /// The target, and the address when there is one: what tells the
    /// probe's runs (and their series) apart.
    pub key: String,
    pub slot: Arc<ProbeSlot>,
    pub state: ProbeState,
    /// The probe's grants with the allow-list pinned to `ip`.
    pub grants: Option<Grants>,
}

impl Probe {
    pub fn name(&self) -> &ProbeName {
        &self.config.name
    }

    /// Runs the probe once against one of its targets and returns how it
    /// went, its state kept; the caller decides whether it is committed.
    ///
    /// With `evidence`, its host calls are recorded (bodies cut to their
    /// first KiB) for the history to keep if it fails.
    pub async fn run_once(&self, run: &TargetRun, evidence: bool) -> RunRecord {
        let tape = evidence.then(|| Arc::new(Tape::evidence_recorder()));
        let spec = RunSpec {
            probe: self.config.name.as_str(),
            target: &run.target,
            config: &self.config_json,
            limits: self.config.limits,
            grants: run.grants.as_ref().unwrap_or(&self.grants),
            state: Some(&run.state),
            tape,
            hostname: None,
        };
        run::run(&self.plugin.plugin, spec).await
    }

    /// The target of a `/probe` run: as [`Probe::on_demand_target`], for a
    /// probe open to `/probe` only.
    pub fn endpoint_target(&self, requested: Option<&str>) -> Result<String, OnDemandError> {
        if !self.config.on_demand {
            return Err(OnDemandError::NotOnDemand(self.config.name.to_string()));
        }
        self.on_demand_target(requested)
    }

    /// The target of an on-demand run: the one asked for, else the
    /// configured one, and only inside the probe's allow-list.
    pub fn on_demand_target(&self, requested: Option<&str>) -> Result<String, OnDemandError> {
        let target = match requested.filter(|t| !t.is_empty()) {
            Some(t) => t,
            // A probe with many targets: its first.
            None => self
                .config
                .target
                .as_deref()
                .or(self.config.targets.first().map(|t| t.address.as_str()))
                .filter(|t| !t.is_empty())
                .ok_or_else(|| OnDemandError::NoTarget(self.config.name.to_string()))?,
        };
        self.config
            .allow
            .check_target(target)
            .map_err(|denied| OnDemandError::Denied(self.config.name.to_string(), denied))?;
        Ok(target.to_string())
    }

    /// One run that touches neither the probe's state nor its series, and
    /// its own exposition: what `/probe` answers and `wasmprobe probe`
    /// prints.
    pub async fn run_on_demand(
        &self,
        exposition: &Exposition,
        target: &str,
        how: OnDemandRun<'_>,
    ) -> OnDemand {
        let format = how.format;
        let mut record = self
            .run_taped(target, None, how.tape, how.timeout, how.hostname)
            .await;
        let samples = record.samples.clone();
        let staged = Staged::new(&self.plugin.families, std::mem::take(&mut record.samples));
        let text = exposition.encode_single(&self.labels, &record, Some(&staged), format);
        OnDemand {
            rejected: staged.rejected_total(),
            rejected_samples: staged
                .examples
                .iter()
                .map(|(name, why)| format!("{name} ({})", why.as_str()))
                .collect(),
            record,
            samples,
            text,
        }
    }

    /// [`Probe::run_once`] with its network calls recorded or replayed.
    async fn run_taped(
        &self,
        target: &str,
        state: Option<&ProbeState>,
        tape: Option<Arc<Tape>>,
        timeout: Option<std::time::Duration>,
        hostname: Option<&str>,
    ) -> RunRecord {
        let mut limits = self.config.limits;
        if let Some(t) = timeout {
            limits.timeout = limits.timeout.min(t);
        }
        let spec = RunSpec {
            probe: self.config.name.as_str(),
            target,
            config: &self.config_json,
            limits,
            grants: &self.grants,
            state,
            tape,
            hostname,
        };
        run::run(&self.plugin.plugin, spec).await
    }
}

/// How an on-demand run goes: recorded or replayed, in which format, under
/// which scrape timeout, for which virtual host.
#[derive(Debug, Default)]
pub struct OnDemandRun<'a> {
    pub tape: Option<Arc<Tape>>,
    pub format: Format,
    /// Prometheus's scrape timeout less the offset, when it sent one.
    pub timeout: Option<std::time::Duration>,
    /// `/probe?hostname=`: the name requests to the target's host present
    /// (`Host` and the TLS server name).
    pub hostname: Option<&'a str>,
}

/// Why an on-demand run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OnDemandError {
    #[error("probe {0:?} has no configured target: give one (`--target`, or `target=` on /probe)")]
    NoTarget(String),
    #[error("probe {0:?}: {1}")]
    Denied(String, crate::egress::Denied),
    #[error(
        "probe {0:?} belongs to a package whose probes are not open to /probe (the operator grants `on_demand` in [packages.grants])"
    )]
    NotOnDemand(String),
}

/// One on-demand run and its own exposition.
#[derive(Debug)]
pub struct OnDemand {
    pub record: RunRecord,
    /// The samples the plugin reported, as it reported them (rejected
    /// ones included), for `wasmprobe test` to compare.
    pub samples: Vec<crate::runtime::record::Sample>,
    /// The run's series plus `probe_success` and `probe_duration_seconds`.
    pub text: String,
    /// Samples the exposition dropped (unknown family, bad labels, ...).
    pub rejected: u64,
    /// The first of them, as `name (reason)`.
    pub rejected_samples: Vec<String>,
}

/// Every probe and plugin of one loaded config.
#[derive(Debug, Default)]
pub struct ProbeSet {
    pub probes: BTreeMap<ProbeName, Arc<Probe>>,
    pub plugins: BTreeMap<PluginName, Arc<LoadedPlugin>>,
    /// `[server] default_module`: what `/probe` runs without `module`.
    pub default_module: Option<ProbeName>,
}

/// Pool slots for a config: scheduled runs, on-demand runs, and loads.
pub fn pool_size(config: &Config) -> PoolSize {
    let instances = config.engine.max_concurrent_runs + config.server.probe_concurrency + 4;
    PoolSize {
        instances: u32::try_from(instances).unwrap_or(u32::MAX),
        max_memory: config.engine.max_memory,
    }
}

/// Loads every plugin the config's probes use and builds each probe.
/// With `previous`, the set being replaced: a probe that keeps its name,
/// plugin and labels keeps its slot (counter totals, histograms) and its
/// state store, and a plugin keeps its series budget.
pub async fn prepare(
    config: &Config,
    engine: &Arc<WasmEngine>,
    services: &Services,
    exposition: &Exposition,
    previous: Option<&ProbeSet>,
) -> Result<ProbeSet, Diagnostics> {
    let _start_first = engine.hold_optimizing();
    let (plugins, failed) = load_plugins(config, engine, exposition, previous).await;
    let mut errors: Vec<Diagnostic> = Vec::new();
    let mut probes = BTreeMap::new();
    let mut load = LoadScope::new(services);
    let addresses = fan_out_addresses(config.probes.values().map(|p| &**p)).await;
    for probe in config.probes.values() {
        if let Some(message) = failed.get(&probe.plugin) {
            errors.push(Diagnostic {
                location: probe.plugin_location.clone(),
                message: message.clone(),
            });
            continue;
        }
        let Some(plugin) = plugins.get(&probe.plugin) else {
            continue;
        };
        match prepare_probe(probe, plugin, &mut load, exposition, previous, &addresses) {
            Ok(ready) => {
                probes.insert(probe.name.clone(), Arc::new(ready));
            }
            Err(problems) => errors.extend(problems),
        }
    }

    if errors.is_empty() {
        Ok(ProbeSet {
            probes,
            plugins,
            default_module: config.server.default_module.clone(),
        })
    } else {
        errors.sort_by(|a, b| {
            (&a.location.file, a.location.line, a.location.column).cmp(&(
                &b.location.file,
                b.location.line,
                b.location.column,
            ))
        });
        errors.dedup();
        Err(Diagnostics(errors))
    }
}

/// Loads each plugin the config's probes use, once: compiled, described,
/// its declared families validated and registered. Plugins that fail are
/// returned with their error, for the probes that name them.
async fn load_plugins(
    config: &Config,
    engine: &Arc<WasmEngine>,
    exposition: &Exposition,
    previous: Option<&ProbeSet>,
) -> (
    BTreeMap<PluginName, Arc<LoadedPlugin>>,
    BTreeMap<PluginName, String>,
) {
    let mut plugins: BTreeMap<PluginName, Arc<LoadedPlugin>> = BTreeMap::new();
    let mut failed: BTreeMap<PluginName, String> = BTreeMap::new();
    let mut groups: BTreeMap<String, Arc<SeriesBudget>> = BTreeMap::new();
    // The operator's plugins declare their families first: a package
    // cannot squat a family name (a bundled plugin's, say) by loading
    // earlier; its conflicting declaration is the one left out.
    let is_package = |p: &&ProbeConfig| {
        config
            .plugins
            .get(&p.plugin)
            .is_some_and(|s| s.budget_group.is_some())
    };
    let (operators, packages): (Vec<&ProbeConfig>, Vec<&ProbeConfig>) = config
        .probes
        .values()
        .map(|p| &**p)
        .partition(|p| !is_package(p));
    // Each plugin once, in that order.
    let mut wanted: Vec<(&PluginName, &crate::config::PluginSource)> = Vec::new();
    for probe in operators.into_iter().chain(packages) {
        let name = &probe.plugin;
        if wanted.iter().any(|(n, _)| *n == name) {
            continue;
        }
        if let Some(source) = config.plugins.get(name) {
            wanted.push((name, source));
        }
    }
    // Compiled side by side, as many at once as there are cores (a first
    // start compiles every plugin; each compile is one thread's work);
    // then declared in the order above.
    let mut loads = load_all(engine, &wanted).await;
    for (i, (name, source)) in wanted.iter().copied().enumerate() {
        let loaded = loads
            .get_mut(i)
            .and_then(Option::take)
            .unwrap_or_else(|| {
                Err(PluginError::Compile {
                    plugin: name.to_string(),
                    path: source.path.clone(),
                    message: "the compile task ended without a result".into(),
                })
            })
            .and_then(|plugin| {
                let declared =
                    FamilyDef::declared(plugin.info.families.clone()).map_err(|message| {
                        PluginError::Declaration {
                            plugin: name.to_string(),
                            message,
                        }
                    })?;
                Ok((plugin, declared))
            });
        match loaded {
            Ok((plugin, declared)) => {
                tracing::info!(
                    plugin = %name,
                    version = %plugin.info.version,
                    sha256 = %&plugin.sha256[..16],
                    compile_ms = plugin.compile_time.as_millis() as u64,
                    "plugin loaded"
                );
                let families = register_families(exposition, &plugin, declared);
                plugins.insert(
                    name.clone(),
                    Arc::new(LoadedPlugin {
                        plugin,
                        families,
                        budget: budget_for(&mut groups, previous, name, source),
                        budget_limit: source.series_budget,
                        group: source.budget_group.clone(),
                    }),
                );
            }
            Err(e) => {
                exposition.global.plugin_load_failed(name.as_str());
                failed.insert(name.clone(), e.to_string());
            }
        }
    }
    (plugins, failed)
}

/// Loads every plugin of `wanted` concurrently, at most one per core at
/// a time; results in `wanted`'s order.
async fn load_all(
    engine: &Arc<WasmEngine>,
    wanted: &[(&PluginName, &crate::config::PluginSource)],
) -> Vec<Option<Result<Plugin, PluginError>>> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let permits = Arc::new(Semaphore::new(cores));
    let mut tasks = tokio::task::JoinSet::new();
    // Largest first: the big compiles start at once and the small ones fill
    // the gaps, so the last one ends sooner (a first start: 480 -> 370 ms).
    let mut order: Vec<usize> = (0..wanted.len()).collect();
    order.sort_by_cached_key(|i| {
        std::cmp::Reverse(std::fs::metadata(&wanted[*i].1.path).map_or(0, |m| m.len()))
    });
    for i in order {
        let (name, source) = wanted[i];
        let (engine, permits) = (engine.clone(), permits.clone());
        let (name, path, pinned) = ((*name).clone(), source.path.clone(), source.sha256.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.ok();
            (
                i,
                Plugin::load(&engine, &name, &path, pinned.as_deref()).await,
            )
        });
    }
    let mut results: Vec<Option<Result<Plugin, PluginError>>> =
        wanted.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, result)) = joined
            && let Some(slot) = results.get_mut(i)
        {
            *slot = Some(result);
        }
    }
    results
}

/// One probe ready to run, or every reason it cannot: its config refused
/// by the plugin's schema, a label its plugin's families also declare, a
/// grant a unit cannot build. A probe that survives a reload keeps its
/// slot and state.
fn prepare_probe(
    probe: &Arc<ProbeConfig>,
    plugin: &Arc<LoadedPlugin>,
    load: &mut LoadScope<'_>,
    exposition: &Exposition,
    previous: Option<&ProbeSet>,
    addresses: &Addresses,
) -> Result<Probe, Vec<Diagnostic>> {
    let schema_errors = plugin.plugin.validate_config(&probe.config);
    if !schema_errors.is_empty() {
        return Err(schema_errors
            .into_iter()
            .map(|(pointer, e)| Diagnostic {
                location: probe.config_location_of(&pointer).clone(),
                message: format!("plugin {:?} refuses this value: {e}", probe.plugin.as_str()),
            })
            .collect());
    }
    // A probe label also declared by one of its plugin's families would
    // give that family's series two labels of one name: Prometheus drops
    // such a scrape whole.
    let clashes: Vec<Diagnostic> = probe
        .labels
        .iter()
        .filter_map(|(label, _)| {
            let family = plugin.families.declaring_label(label.as_str())?;
            Some(Diagnostic {
                location: probe.location.clone(),
                message: format!(
                    "label {:?} is also a label of family {family:?} of plugin {:?}: rename the probe's label",
                    label.as_str(),
                    probe.plugin.as_str()
                ),
            })
        })
        .collect();
    if !clashes.is_empty() {
        return Err(clashes);
    }
    let imports = |name: &str| plugin.plugin.imports(name);
    let grants = Grants::build(probe, load, imports).map_err(|problems| {
        problems
            .into_iter()
            .map(|message| Diagnostic {
                location: probe.location.clone(),
                message,
            })
            .collect::<Vec<_>>()
    })?;
    if probe.has_many_targets()
        && let Some(family) = plugin.families.declaring_label("target")
    {
        return Err(vec![Diagnostic {
            location: probe.location.clone(),
            message: format!(
                "family {family:?} of plugin {:?} has a `target` label of its own, so its probes take one `target`, not `targets` or `file_sd`",
                probe.plugin.as_str()
            ),
        }]);
    }
    let labels = host_labels(probe);
    let old = previous.and_then(|p| p.probes.get(&probe.name));
    let mut runs = Vec::new();
    let mut problems = Vec::new();
    for (target, extra) in run_targets(probe) {
        // With `fan_out`, one run per address of the target's name.
        let ips: Vec<Option<std::net::IpAddr>> =
            match addresses.get(&(probe.name.clone(), target.clone())) {
                Some(ips) if !ips.is_empty() => ips.iter().copied().map(Some).collect(),
                _ => vec![None],
            };
        for ip in ips {
            let mut host_labels = labels.clone();
            host_labels.extend(extra.iter().cloned());
            let key = match ip {
                Some(ip) => {
                    host_labels.push(("ip".to_string(), ip.to_string()));
                    format!("{target} {ip}")
                }
                None => target.clone(),
            };
            let grants = match ip.and_then(|ip| Some((target_host(&target)?, ip))) {
                Some((host, ip)) => {
                    let mut pinned = (**probe).clone();
                    pinned.allow = pinned.allow.pinned(host, ip);
                    match Grants::build(&pinned, load, imports) {
                        Ok(g) => Some(g),
                        Err(e) => {
                            problems.extend(e);
                            continue;
                        }
                    }
                }
                None => None,
            };
            // A target that stays, with the same labels and budget, keeps
            // its series (counter totals, histograms) and its state.
            let survivor = old
                .and_then(|o| o.runs.iter().find(|r| r.key == key))
                .filter(|r| r.slot.reusable_for(&host_labels, &plugin.budget));
            runs.push(Arc::new(match survivor {
                Some(r) => TargetRun {
                    target: target.clone(),
                    ip,
                    key,
                    slot: r.slot.clone(),
                    state: r.state.clone(),
                    grants,
                },
                None => TargetRun {
                    slot: Arc::new(exposition.detached_slot(
                        probe.name.clone(),
                        &key,
                        host_labels,
                        plugin.budget.clone(),
                    )),
                    target: target.clone(),
                    ip,
                    key,
                    state: ProbeState::default(),
                    grants,
                },
            }));
        }
    }
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|message| Diagnostic {
                location: probe.location.clone(),
                message,
            })
            .collect());
    }
    Ok(Probe {
        config: probe.clone(),
        plugin: plugin.clone(),
        config_json: probe.config.to_string(),
        grants,
        labels,
        runs,
    })
}

/// The addresses of each fanned-out target's name, by probe and target.
pub type Addresses = BTreeMap<(ProbeName, String), Vec<std::net::IpAddr>>;

/// The host a target names: a URL's, or a bare `HOST[:PORT]`'s.
fn target_host(target: &str) -> Option<crate::egress::DestHost> {
    if let Ok(url) = url::Url::parse(target)
        && url.has_host()
    {
        return crate::egress::Destination::from_url(&url)
            .ok()
            .map(|d| d.host);
    }
    let bare = target.trim();
    let host = match bare.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() && !h.is_empty() => h,
        _ => bare,
    };
    Some(crate::egress::DestHost::parse(
        host.trim_matches(['[', ']']),
    ))
}

/// Resolves the name of every target of the probes with `fan_out` (an
/// address is its own one address). A name that does not resolve gets one
/// run that reports it.
pub async fn fan_out_addresses<'a>(probes: impl Iterator<Item = &'a ProbeConfig>) -> Addresses {
    let mut out = Addresses::new();
    for probe in probes.filter(|p| p.fan_out) {
        let targets: Vec<String> = run_targets(probe).map(|(t, _)| t).collect();
        for target in targets {
            let Some(host) = target_host(&target) else {
                continue;
            };
            let ips = match &host {
                crate::egress::DestHost::Ip(ip) => vec![*ip],
                crate::egress::DestHost::Name(name) => {
                    match tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        tokio::net::lookup_host((name.as_str(), 0)),
                    )
                    .await
                    {
                        Ok(Ok(found)) => {
                            let mut ips: Vec<std::net::IpAddr> = Vec::new();
                            for a in found {
                                let ip = a.ip().to_canonical();
                                if !ips.contains(&ip) {
                                    ips.push(ip);
                                }
                            }
                            ips.sort();
                            ips
                        }
                        _ => Vec::new(),
                    }
                }
            };
            out.insert((probe.name.clone(), target), ips);
        }
    }
    out
}

/// A target and the labels its series carry after the probe's.
type LabelledTarget = (String, Vec<(String, String)>);

/// The targets a probe's schedule runs, each with the labels its series
/// carry after the probe's: `target` and its discovery labels for a probe
/// with many, nothing for one with a single target (or none).
fn run_targets(probe: &ProbeConfig) -> Box<dyn Iterator<Item = LabelledTarget> + '_> {
    if !probe.has_many_targets() {
        let target = probe.config_target();
        return Box::new(std::iter::once((target, Vec::new())));
    }
    Box::new(probe.targets.iter().map(|t| {
        let labels = std::iter::once(("target".to_string(), t.address.clone()))
            .chain(
                t.labels
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.clone())),
            )
            .collect();
        (t.address.clone(), labels)
    }))
}

/// `probe` first, then the config's labels.
fn host_labels(probe: &ProbeConfig) -> Vec<(String, String)> {
    std::iter::once(("probe".to_string(), probe.name.to_string()))
        .chain(
            probe
                .labels
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.clone())),
        )
        .collect()
}

/// Registers a plugin's families; one that conflicts with a family another
/// plugin declared first is left out (its samples are then dropped as
/// `unknown_family`) and logged.
fn register_families(
    exposition: &Exposition,
    plugin: &Plugin,
    declared: Vec<FamilyDef>,
) -> PluginFamilies {
    let mut families = PluginFamilies::default();
    for def in declared {
        match exposition.families().register(def, plugin.name.as_str()) {
            Ok(id) => {
                if let Some(registered) = exposition.families().get(id) {
                    families.insert(id, registered);
                }
            }
            Err(e) => tracing::warn!(plugin = %plugin.name, error = %e, "metric family left out"),
        }
    }
    families
}

/// State shared by the scheduler and the server.
#[derive(Debug)]
pub struct App {
    pub engine: Arc<WasmEngine>,
    pub exposition: Arc<Exposition>,
    pub set: arc_swap::ArcSwap<ProbeSet>,
    /// Scheduled runs in flight, across probes.
    pub run_slots: Arc<Semaphore>,
    /// On-demand `/probe` runs in flight.
    pub ondemand_slots: Arc<Semaphore>,
    /// Where probe runs execute: never the server's runtime.
    pub probe_runtime: tokio::runtime::Handle,
    pub ready: AtomicBool,
    heartbeat_ms: AtomicU64,
}

/// The scheduler is considered stuck when its heartbeat is older than this.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl App {
    pub fn new(
        config: &Config,
        engine: Arc<WasmEngine>,
        exposition: Arc<Exposition>,
        probe_runtime: tokio::runtime::Handle,
    ) -> Arc<App> {
        Arc::new(App {
            engine,
            exposition,
            set: arc_swap::ArcSwap::from_pointee(ProbeSet::default()),
            run_slots: Arc::new(Semaphore::new(config.engine.max_concurrent_runs)),
            ondemand_slots: Arc::new(Semaphore::new(config.server.probe_concurrency)),
            probe_runtime,
            ready: AtomicBool::new(false),
            heartbeat_ms: AtomicU64::new(now_ms()),
        })
    }

    /// Makes a prepared set the live one: its probes appear in the
    /// exposition and the previous set's disappear.
    pub fn install(&self, set: ProbeSet) {
        let old = self.set.load_full();
        for probe in old.probes.values() {
            let kept = set.probes.get(probe.name());
            for run in &probe.runs {
                if !kept.is_some_and(|k| k.runs.iter().any(|r| r.key == run.key)) {
                    self.exposition.remove_slot(probe.name(), &run.key);
                }
            }
        }
        for plugin in set.plugins.values() {
            plugin.budget.set_limit(plugin.budget_limit);
        }
        for probe in set.probes.values() {
            for run in &probe.runs {
                self.exposition.attach(run.slot.clone());
                self.exposition
                    .retain_families(&run.slot, &probe.plugin.families);
            }
            for refused in &probe.config.refused_targets {
                tracing::warn!(
                    probe = %probe.name(),
                    target = %refused.address,
                    from = %refused.source,
                    reason = %refused.reason,
                    "discovered target refused: not probed"
                );
            }
        }
        self.exposition.global.http_sd_installed(
            set.probes
                .values()
                .filter_map(|p| Some((p.name().to_string(), p.config.http_sd.clone()?.0)))
                .collect(),
        );
        self.exposition.global.targets_installed(
            set.probes
                .values()
                .filter(|p| p.config.has_many_targets())
                .map(|p| {
                    (
                        p.name().to_string(),
                        p.runs.len() as u64,
                        p.config.refused_targets.len() as u64,
                    )
                })
                .collect(),
        );
        let scheduled = set
            .probes
            .values()
            .filter(|p| p.config.schedule.is_some())
            .count() as u64;
        self.exposition.global.probes_installed(
            scheduled,
            set.probes.len() as u64 - scheduled,
            set.plugins.len() as u64,
        );
        self.set.store(Arc::new(set));
    }

    pub fn beat(&self) {
        self.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Whether the scheduler's runtime has beaten recently.
    pub fn alive(&self) -> bool {
        now_ms().saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed))
            < HEARTBEAT_STALE.as_millis() as u64
    }
}
