//! The life of a config: start-up and every reload take one path,
//! load → command-line overrides → prepare → install → schedule.
//!
//! [`load`] reads `probes.toml` (its packages too) and applies the
//! command line's [`Overrides`] in the one place they are applied;
//! [`Lifecycle::start`] prepares the first config and installs it;
//! [`Lifecycle::reload`] does the same for every later one. A reload (SIGHUP, `POST /-/reload`, or a change the watcher sees) reads,
//! validates and compiles everything first, off the server's threads. Only
//! when all of it is good does it swap: the new probe set is installed, the
//! old schedule is told to stop (runs in flight finish on the plugin
//! version they started with) and the new one starts. Any error leaves the
//! running config as it was and sets
//! `wasmprobe_config_last_reload_successful 0`. A probe that keeps its
//! name, plugin and labels keeps its counters and state; a probe that is
//! gone takes its series with it. Content identical to what runs changes
//! nothing.
//!
//! Settings the process is built around (listen address, pool and thread
//! sizes, cache directory) need a restart: a reload that changes them is
//! refused with the setting named.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::{self, App, ProbeSet};
use crate::config::{self, Config, ConfigError, Diagnostics, PluginName};
use crate::hostcalls::Services;
use crate::schedule;
use crate::shard::Shard;

/// What the command line says over every config file it loads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// `--listen` wins over `server.listen`.
    pub listen: Option<std::net::SocketAddr>,
    /// `--shard`: only this replica's share of the scheduled probes.
    pub shard: Option<Shard>,
}

impl Overrides {
    fn apply(&self, config: &mut Config) {
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(shard) = self.shard {
            let all = config.probes.len();
            config.keep_shard(shard);
            tracing::info!(shard = %shard, kept = config.probes.len(), of = all, "running this shard's probes");
        }
    }
}

/// Reads the config at `path` with the overrides applied. Any problem
/// refuses it, except a probe whose plugin `tolerated` says was removed
/// on purpose (those probes are left out and their plugins returned).
fn read(
    path: &Path,
    overrides: &Overrides,
    tolerated: impl Fn(&PluginName) -> bool,
) -> Result<(Config, BTreeSet<PluginName>), ReloadError> {
    let (mut config, problems) = config::load_partial(path)?;
    overrides.apply(&mut config);
    let mut refused = Vec::new();
    let mut removed = BTreeSet::new();
    for problem in problems {
        let gone = config.missing_plugins.iter().find(|(probe, plugin)| {
            problem.location.key == format!("probes.{probe}.plugin") && tolerated(plugin)
        });
        match gone {
            Some((_, plugin)) => {
                removed.insert(plugin.clone());
            }
            None => refused.push(problem),
        }
    }
    if refused.is_empty() {
        Ok((config, removed))
    } else {
        Err(Diagnostics(refused).into())
    }
}

/// The first load: the config at `path` with the overrides applied, or
/// every problem it has.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ReloadError> {
    read(path, overrides, |_| false).map(|(config, _)| config)
}

/// Why a reload was refused. The running config is untouched.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Invalid(#[from] Diagnostics),
    #[error("{setting} changed ({from} -> {to}); restart wasmprobe to apply it")]
    RestartNeeded {
        setting: &'static str,
        from: String,
        to: String,
    },
    #[error("reload was cancelled")]
    Cancelled,
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    Applied { probes: usize },
    Unchanged,
}

struct Current {
    config: Config,
    /// The config's `http_sd` sources (probe, URL, refresh interval),
    /// found once per load for the refresher.
    http_sd: Vec<(String, String, Duration)>,
    fingerprint: String,
    stop: watch::Sender<bool>,
    /// Plugins removed from a plugin directory while probes used them:
    /// those probes stay stopped until the plugin is back.
    removed: BTreeSet<PluginName>,
}

/// Owns the running config and its schedule.
pub struct Lifecycle {
    app: Arc<App>,
    services: Services,
    path: PathBuf,
    overrides: Overrides,
    /// The endpoint listens on a loopback address (fixed until restart).
    loopback: bool,
    current: tokio::sync::Mutex<Current>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A digest of everything a config's behaviour depends on: its text, the
/// bytes of every plugin it can load and its probes' `file_sd` files.
fn fingerprint(config: &Config) -> String {
    let mut h = Sha256::new();
    h.update(std::fs::read(&config.path).unwrap_or_default());
    for (name, source) in &config.plugins {
        h.update(name.as_str().as_bytes());
        h.update(std::fs::read(&source.path).unwrap_or_default());
    }
    for package in &config.packages {
        h.update(std::fs::read(&package.path).unwrap_or_default());
        h.update([u8::from(package.refused.is_some())]);
    }
    for file in config.target_files() {
        h.update(file.as_os_str().as_encoded_bytes());
        h.update(std::fs::read(file).unwrap_or_default());
    }
    h.update(
        ADDRESSES
            .load(std::sync::atomic::Ordering::Relaxed)
            .to_be_bytes(),
    );
    // What each http_sd URL last answered: a new list is a new config.
    for (url, _) in config.probes.values().filter_map(|p| p.http_sd.as_deref()) {
        h.update(url.as_bytes());
        let state = crate::config::targets::http_sd_state(url);
        h.update(format!("{:?}", state.groups).as_bytes());
    }
    hex::encode(h.finalize())
}

/// A cheap stamp of the files a config depends on (size, mtime, inode and
/// change time), for the watcher to notice a change without reading them.
/// A change it notices is then judged by content ([`fingerprint`]).
fn stamp(path: &Path, config: &Config) -> u64 {
    fn meta(h: &mut impl Hasher, p: &Path) {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(p) {
            Ok(m) => {
                m.len().hash(h);
                m.modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .hash(h);
                // The inode and its change time: a write that keeps the
                // size and sets the old mtime back (`touch -r`) still moves
                // the change time, which no user can set, and a file
                // swapped in by rename has another inode.
                (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()).hash(h);
            }
            Err(_) => 0u8.hash(h),
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta(&mut h, path);
    for dir in &config.engine.plugin_dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for f in files {
            f.hash(&mut h);
            meta(&mut h, &f);
        }
    }
    for source in config.plugins.values() {
        meta(&mut h, &source.path);
    }
    for package in &config.packages {
        meta(&mut h, &package.path);
    }
    for file in config.target_files() {
        meta(&mut h, file);
    }
    h.finish()
}

fn restart_needed(old: &Config, new: &Config) -> Result<(), ReloadError> {
    let checks: [(&'static str, String, String); 6] = [
        (
            "server.listen",
            old.server.listen.to_string(),
            new.server.listen.to_string(),
        ),
        (
            "server.probe_concurrency",
            old.server.probe_concurrency.to_string(),
            new.server.probe_concurrency.to_string(),
        ),
        (
            "engine.max_concurrent_runs",
            old.engine.max_concurrent_runs.to_string(),
            new.engine.max_concurrent_runs.to_string(),
        ),
        (
            "engine.worker_threads",
            old.engine.worker_threads.to_string(),
            new.engine.worker_threads.to_string(),
        ),
        (
            "engine.max_memory",
            old.engine.max_memory.to_string(),
            new.engine.max_memory.to_string(),
        ),
        (
            "engine.cache_dir",
            format!("{:?}", old.engine.cache_dir),
            format!("{:?}", new.engine.cache_dir),
        ),
    ];
    for (setting, from, to) in checks {
        if from != to {
            return Err(ReloadError::RestartNeeded { setting, from, to });
        }
    }
    Ok(())
}

/// Logs refused packages and publishes which packages are loaded.
pub fn report_packages(app: &App, config: &Config) {
    for p in &config.packages {
        if let Some(problems) = &p.refused {
            tracing::warn!(package = %p.name, path = %p.path.display(), problems = %problems, "package refused; the other packages load");
        }
    }
    app.exposition.global.packages_included(
        config
            .packages
            .iter()
            .map(|p| (p.name.clone(), p.refused.is_none()))
            .collect(),
    );
}

/// Makes a prepared set the running one: packages reported, the old
/// schedule told to stop, the set installed and its schedule started.
fn swap(
    app: &Arc<App>,
    config: &Config,
    set: ProbeSet,
    old: Option<&watch::Sender<bool>>,
) -> watch::Sender<bool> {
    report_packages(app, config);
    app.exposition.set_history_limits(config.history);
    if let Some(old) = old {
        let _ = old.send(true);
    }
    app.install(set);
    let (stop, stop_rx) = watch::channel(false);
    schedule::start(app, &stop_rx);
    stop
}

impl Lifecycle {
    /// Prepares the first config (from [`load`]), installs it and starts
    /// its schedule.
    pub async fn start(
        app: Arc<App>,
        services: Services,
        path: PathBuf,
        overrides: Overrides,
        config: Config,
    ) -> Result<Arc<Lifecycle>, ReloadError> {
        let set = app::prepare(&config, &app.engine, &services, &app.exposition, None).await?;
        let stop = swap(&app, &config, set, None);
        app.exposition.global.reload_succeeded(SystemTime::now());
        let fingerprint = fingerprint(&config);
        Ok(Arc::new(Lifecycle {
            app,
            services,
            path,
            overrides,
            loopback: config.server.listen.ip().is_loopback(),
            current: tokio::sync::Mutex::new(Current {
                http_sd: http_sd_sources(&config),
                // Moved, not cloned: with 100,000 probes every copy of the
                // config costs hundreds of MiB.
                config,
                fingerprint,
                stop,
                removed: Default::default(),
            }),
        }))
    }

    /// Reloads on the probe runtime (compiling and `describe()` never run
    /// on the server's threads) and records the outcome in the gauges.
    pub async fn reload(self: &Arc<Self>, trigger: &'static str) -> Result<Reloaded, ReloadError> {
        let me = self.clone();
        let outcome = self
            .app
            .probe_runtime
            .spawn(async move { me.reload_here().await })
            .await
            .unwrap_or(Err(ReloadError::Cancelled));
        let g = &self.app.exposition.global;
        match &outcome {
            Ok(Reloaded::Applied { probes }) => {
                g.reload_succeeded(SystemTime::now());
                tracing::info!(trigger, probes, "config reloaded");
                // The old config and the load's working memory are freed.
                crate::heap::release_free();
            }
            Ok(Reloaded::Unchanged) => {
                g.reload_succeeded(SystemTime::now());
                tracing::debug!(trigger, "config unchanged");
            }
            Err(e) => {
                g.reload_failed();
                tracing::warn!(trigger, error = %format!("{e:#}"), "reload refused; the running config stays");
            }
        }
        outcome
    }

    async fn reload_here(&self) -> Result<Reloaded, ReloadError> {
        let mut current = self.current.lock().await;
        let previous = self.app.set.load_full();
        // A plugin removed from a plugin directory stops its probes; any
        // other problem refuses the reload.
        let read_now = || {
            read(&self.path, &self.overrides, |plugin| {
                previous.plugins.contains_key(plugin) || current.removed.contains(plugin)
            })
        };
        // Reading may pull a plugin from a registry (seconds, at worst its
        // timeout): off the async workers when they can spare the thread.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let (config, removed) = if multi_thread {
            tokio::task::block_in_place(read_now)?
        } else {
            read_now()?
        };
        for (probe, plugin) in &config.missing_plugins {
            if removed.contains(plugin) && previous.probes.contains_key(probe) {
                tracing::warn!(probe = %probe, plugin = %plugin, "plugin removed: probe stopped");
            }
        }
        let fingerprint = fingerprint(&config);
        if fingerprint == current.fingerprint {
            return Ok(Reloaded::Unchanged);
        }
        restart_needed(&current.config, &config)?;
        let set = app::prepare(
            &config,
            &self.app.engine,
            &self.services,
            &self.app.exposition,
            Some(&previous),
        )
        .await?;
        let probes = set.probes.len();
        // Everything is good: swap.
        let stop = swap(&self.app, &config, set, Some(&current.stop));
        *current = Current {
            http_sd: http_sd_sources(&config),
            config,
            fingerprint,
            stop,
            removed,
        };
        Ok(Reloaded::Applied { probes })
    }

    /// Whether the endpoint listens on loopback only, where a request that
    /// names the host by anything but an address or `localhost` came
    /// through someone else's DNS.
    pub fn listens_on_loopback(&self) -> bool {
        self.loopback
    }

    /// Stops the schedule (at shutdown); runs in flight finish.
    pub async fn stop(&self) {
        let current = self.current.lock().await;
        let _ = current.stop.send(true);
    }

    /// Polls the config file, plugin files and plugin directories every
    /// `engine.watch` and reloads when they change.
    pub fn watch(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let me = self.clone();
        let interval = me
            .current
            .try_lock()
            .map(|c| c.config.engine.watch)
            .unwrap_or_default();
        if interval.is_zero() {
            return None;
        }
        let rt = self.app.probe_runtime.clone();
        Some(rt.spawn(async move {
            // The files as they are now, before the first wait: a plugin
            // replaced within the first interval after the start is a
            // change, not the state to compare against.
            let mut last = {
                let current = me.current.lock().await;
                stamp(&me.path, &current.config)
            };
            loop {
                tokio::time::sleep(interval.max(Duration::from_millis(100))).await;
                // The running config says what to watch; a change to the
                // file itself (new plugin directories included) is seen too.
                let config = me.current.lock().await.config.clone();
                let now = stamp(&me.path, &config);
                if last != now {
                    let _ = me.reload("watch").await;
                }
                last = now;
            }
        }))
    }
}

/// Each probe's `http_sd` URL and refresh interval, by probe name.
fn http_sd_sources(config: &Config) -> Vec<(String, String, Duration)> {
    config
        .probes
        .values()
        .filter_map(|p| {
            let (url, every) = p.http_sd.as_deref()?.clone();
            Some((p.name.to_string(), url, every))
        })
        .collect()
}

/// How often the names of `fan_out` probes' targets are resolved again.
const FAN_OUT_REFRESH: Duration = Duration::from_secs(30);

/// Bumped when a `fan_out` name's addresses changed: part of the
/// fingerprint, so the reload it triggers is not judged unchanged.
static ADDRESSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Lifecycle {
    /// Whether a `fan_out` probe's names resolve to other addresses than
    /// its runs reach.
    async fn addresses_moved(&self) -> bool {
        // Only the fanned-out probes, never a copy of the whole config
        // (100,000 probes of it).
        let fanned: Vec<config::ProbeConfig> = {
            let current = self.current.lock().await;
            current
                .config
                .probes
                .values()
                .filter(|p| p.fan_out)
                .map(|p| (**p).clone())
                .collect()
        };
        if fanned.is_empty() {
            return false;
        }
        let now = app::fan_out_addresses(fanned.iter()).await;
        let set = self.app.set.load_full();
        now.iter().any(|((probe, target), ips)| {
            let mut running: Vec<std::net::IpAddr> = set
                .probes
                .get(probe)
                .map(|p| {
                    p.runs
                        .iter()
                        .filter(|r| &r.target == target)
                        .filter_map(|r| r.ip)
                        .collect()
                })
                .unwrap_or_default();
            running.sort();
            &running != ips
        })
    }

    /// Asks each probe's `http_sd` URL again on its interval and reloads
    /// when a list changed; a failed refresh keeps the last good list (and
    /// is counted), so a discovery server's outage never drops targets.
    pub fn refresh_discovery(self: &Arc<Self>) -> JoinHandle<()> {
        let me = self.clone();
        self.app.probe_runtime.clone().spawn(async move {
            let mut due: std::collections::HashMap<String, tokio::time::Instant> =
                std::collections::HashMap::new();
            let mut resolve_due = tokio::time::Instant::now() + FAN_OUT_REFRESH;
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if tokio::time::Instant::now() >= resolve_due {
                    resolve_due = tokio::time::Instant::now() + FAN_OUT_REFRESH;
                    if me.addresses_moved().await {
                        ADDRESSES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let _ = me.reload("fan_out").await;
                    }
                }
                let sources = me.current.lock().await.http_sd.clone();
                let now = tokio::time::Instant::now();
                let mut changed = false;
                for (probe, url, every) in sources {
                    let next = due.entry(url.clone()).or_insert(now + every);
                    if *next > now {
                        continue;
                    }
                    *next = now + every;
                    let asked = url.clone();
                    let result = tokio::task::spawn_blocking(move || {
                        crate::config::targets::refresh_http_sd(&asked)
                    })
                    .await;
                    match result {
                        Ok(Ok(true)) => changed = true,
                        Ok(Ok(false)) => {}
                        Ok(Err(e)) => tracing::warn!(
                            probe = %probe,
                            error = %e,
                            "http_sd refresh failed: keeping the last good targets"
                        ),
                        Err(_) => {}
                    }
                }
                if changed {
                    let _ = me.reload("http_sd").await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_same_size_rewrite_with_its_old_mtime_still_changes_the_stamp() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("probes.toml");
        std::fs::write(&path, "# one\n").unwrap_or_else(|e| panic!("{e}"));
        let config = config::parse(&path, String::new()).unwrap_or_else(|e| panic!("{e}"));
        let mtime = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("{e}"));
        let before = stamp(&path, &config);
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "# two\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(mtime))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::fs::metadata(&path).and_then(|m| m.modified()).ok(),
            Some(mtime)
        );
        assert_ne!(stamp(&path, &config), before);
    }
}
