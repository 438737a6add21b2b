//! `probes.toml`: parsed in two stages.
//!
//! Stage one ([`raw`]) is serde with unknown keys refused and every
//! constrained value in a newtype ([`values`]), so a typo or a bad value is
//! reported by the TOML parser at its line and column. Stage two
//! ([`resolve`]) applies defaults and cross-checks (unknown plugin, target
//! outside the allow-list, limits above the engine's ceiling, ...), collecting
//! every error rather than stopping at the first. Checks that need the
//! plugins themselves (each probe's config against its plugin's schema) run
//! when the plugins are loaded, with the locations kept here.
//!
//! Out of scope: reading files a plugin needs at run time (plugins have no
//! filesystem) and hot reload.

pub mod diagnostic;
pub mod package;
mod raw;
pub mod registry;
mod resolve;
pub mod targets;
pub mod values;

pub use resolve::default_cache_dir;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;

pub use diagnostic::{Diagnostic, Diagnostics, Location};
pub use targets::{RefusedTarget, TargetSpec};
pub use values::{ByteSize, CronSchedule, HumanDuration, LabelName, PluginName, ProbeName};

use crate::egress::AllowList;

/// Default listen address: loopback only. Exposing the endpoint is a
/// deliberate act.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10464";

/// A validated config. Every value in it is usable as is.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from.
    pub path: PathBuf,
    pub server: ServerConfig,
    pub engine: EngineConfig,
    pub plugins: BTreeMap<PluginName, PluginSource>,
    pub probes: BTreeMap<ProbeName, Arc<ProbeConfig>>,
    /// Probes left out because their plugin was not found (each also has a
    /// diagnostic): a reload tolerates these when the plugin was removed
    /// from a plugin directory, and stops the probes.
    pub missing_plugins: BTreeMap<ProbeName, PluginName>,
    /// Every package the config includes, loaded or refused.
    pub packages: Vec<package::PackageInfo>,
    /// How to reach the OCI registries plugins and packages come from.
    pub registries: BTreeMap<String, registry::RegistryConfig>,
    /// What each target's history keeps (`[history]`).
    pub history: HistoryLimits,
}

impl Config {
    /// Keeps the scheduled probes `shard` owns; on-demand probes (no
    /// schedule) stay on every replica, so `/probe` works on each.
    ///
    /// A probe with many targets is spread by target: each replica keeps
    /// the targets it owns, and the probe when it owns any.
    pub fn keep_shard(&mut self, shard: crate::shard::Shard) {
        self.probes.retain(|name, p| {
            if p.schedule.is_none() {
                return true;
            }
            if !p.has_many_targets() {
                return shard.owns(name.as_str());
            }
            Arc::make_mut(p)
                .targets
                .retain(|t| shard.owns(&format!("{name}\u{0}{}", t.address)));
            // Kept while it reads files, so a change to them is seen.
            !p.targets.is_empty() || !p.target_files.is_empty()
        });
    }

    /// Every `file_sd` file the probes read: a change to one is a change
    /// of the config.
    pub fn target_files(&self) -> impl Iterator<Item = &Path> {
        self.probes
            .values()
            .flat_map(|p| p.target_files.iter().map(PathBuf::as_path))
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// On-demand `/probe` runs in flight at once; more get 503 at once.
    pub probe_concurrency: usize,
    /// Open HTTP connections at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// The probe `/probe` runs when the request names no `module`, as
    /// blackbox_exporter falls back to `http_2xx`.
    pub default_module: Option<ProbeName>,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where compiled plugins are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    pub plugin_dirs: Vec<PathBuf>,
    /// Scheduled runs in flight at once, across all probes.
    pub max_concurrent_runs: usize,
    /// Threads of the runtime that executes probes (never the server's).
    pub worker_threads: usize,
    /// The ceiling of any probe's `limits.memory`: sizes the engine's pool.
    pub max_memory: u64,
    /// How often the config file, packages and plugin directories are
    /// checked for changes; zero turns watching off.
    pub watch: Duration,
    /// The only addresses a plugin may send ICMP echoes from (`source`):
    /// each opens a socket of its own, so the operator lists them.
    pub icmp_sources: Vec<std::net::IpAddr>,
}

/// Where a plugin's `.wasm` is, and what it may spend.
#[derive(Debug, Clone)]
pub struct PluginSource {
    pub path: PathBuf,
    /// The pinned OCI reference it was pulled from, if it was.
    pub oci: Option<String>,
    /// Series all probes of this plugin may hold in exposition together.
    pub series_budget: usize,
    pub location: Option<Location>,
    /// Plugins of one package share one budget, named by the package.
    pub budget_group: Option<String>,
    /// The SHA-256 (hex) a package pins: the bytes compiled must have it.
    pub sha256: Option<String>,
}

/// How much history each target keeps (`[history]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Runs kept per target (result, duration, message).
    pub runs: usize,
    /// Failures kept per target with their evidence.
    pub failures: usize,
    /// Largest evidence of one failure, in bytes (calls past it are left
    /// out, and the evidence says so).
    pub evidence_bytes: usize,
    /// Largest evidence of all failures together: past it, a failure is
    /// kept without its calls.
    pub total_evidence_bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            runs: 20,
            failures: 5,
            evidence_bytes: 64 << 10,
            total_evidence_bytes: 128 << 20,
        }
    }
}

/// Per-run sandbox limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Duration,
    /// Linear memory of the plugin instance, in bytes.
    pub memory: u64,
    /// Bytes of samples (names, labels, values) one run may return.
    pub max_output: u64,
    /// Samples one run may return.
    pub max_series: usize,
    /// Response body bytes an HTTP host call keeps (after decoding).
    pub max_body: u64,
    /// Log lines kept per run.
    pub log_lines: u32,
    /// Bytes of the probe's key/value state.
    pub state_bytes: u64,
    /// Network exchanges one run may start: HTTP requests, each redirect
    /// hop counted.
    pub max_requests: u32,
    /// Bytes one run's host calls may move: what they send, and what they
    /// receive as the host holds it (a body after decoding). It bounds what
    /// a `send-batch` keeps in host memory.
    pub max_transfer: u64,
    /// ICMP echo requests one run may send.
    pub max_packets: u32,
}

impl ProbeConfig {
    /// Whether the probe was given `targets`, `file_sd` or `http_sd` (even when they
    /// hold none now): its series are told apart by a `target` label.
    pub fn has_many_targets(&self) -> bool {
        self.many_targets
    }

    /// The one configured target, or empty (a batch job needs none; the
    /// plugin reports a missing target itself).
    pub fn config_target(&self) -> String {
        self.target.clone().unwrap_or_default()
    }

    /// The location of the config value at a JSON pointer: the deepest
    /// known value on the pointer's path, else the `config` table.
    pub fn config_location_of(&self, pointer: &str) -> &Location {
        self.config_pointers
            .iter()
            .filter(|(p, _)| pointer == p || pointer.starts_with(&format!("{p}/")))
            .max_by_key(|(p, _)| p.len())
            .map_or(&self.config_location, |(_, l)| l)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            memory: 64 << 20,
            max_output: 1 << 20,
            max_series: 1000,
            max_body: 10 << 20,
            log_lines: 100,
            state_bytes: 64 << 10,
            max_requests: 1000,
            max_transfer: 64 << 20,
            max_packets: 1000,
        }
    }
}

/// Where a secret comes from: read by the host when the plugin asks, so a
/// rotated file is picked up; never a value written in probes.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// Largest secret read from a file.
pub const MAX_SECRET: u64 = 64 << 10;

impl SecretSource {
    /// The value now, with a trailing newline removed; `None` when unset,
    /// empty or unreadable.
    pub fn value(&self) -> Option<String> {
        let value = match self {
            SecretSource::Env(var) => std::env::var(var).ok()?,
            // A regular file only: a FIFO would pin the reader.
            SecretSource::File(path) => crate::files::read_regular_text(path, MAX_SECRET).ok()?,
        };
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        (!value.is_empty()).then_some(value)
    }
}

/// Lowest TLS version a probe accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMinVersion {
    #[default]
    Tls12,
    Tls13,
}

/// Trust settings of a probe's outbound TLS, owned by the host: a plugin
/// cannot loosen them.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// Extra trust anchors, read from `ca_file` at load time.
    pub ca_certs: Vec<CertificateDer<'static>>,
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate. Facts about it are still reported.
    pub insecure_skip_verify: bool,
    /// SNI and verification name instead of the URL's host.
    pub server_name: Option<String>,
    pub min_version: TlsMinVersion,
    /// Presented when a target asks for a client certificate (mTLS).
    pub client_cert: Option<ClientCert>,
}

impl TlsSettings {
    /// The settings of a probe without a `tls` table: one allocation that
    /// all such probes share.
    pub fn shared_default() -> Arc<TlsSettings> {
        static DEFAULT: std::sync::LazyLock<Arc<TlsSettings>> =
            std::sync::LazyLock::new(Default::default);
        DEFAULT.clone()
    }
}

/// A client certificate chain and its private key, read from `cert_file`
/// and `key_file` at load time (so a reload sees rotated files) and
/// checked to belong together.
#[derive(Clone)]
pub struct ClientCert {
    pub pair: Arc<CertifiedKey>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never reaches a log line.
        f.debug_struct("ClientCert")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub name: ProbeName,
    pub plugin: PluginName,
    /// `None`: the probe runs only on demand through `/probe`.
    pub schedule: Option<CronSchedule>,
    /// How soon a target runs again after a failed run (the schedule's
    /// next time, if sooner), while it keeps failing.
    pub failing_interval: Option<Duration>,
    /// The zone `schedule` is read in; `None`: UTC.
    pub timezone: Option<chrono_tz::Tz>,
    pub target: Option<String>,
    /// `targets` and the `file_sd` files' targets: each its own scheduled
    /// run and series, with a `target` label. Empty for a probe of one
    /// `target` (whose series carry none, as before).
    pub targets: Vec<TargetSpec>,
    /// The `file_sd` files the targets were read from (watched).
    pub target_files: Vec<PathBuf>,
    /// Discovered targets left out, and why (logged, counted, shown by
    /// `check`).
    pub refused_targets: Vec<RefusedTarget>,
    /// Whether `targets`, `file_sd` or `http_sd` was given.
    pub many_targets: bool,
    /// One scheduled run per address of each target's name, with an `ip`
    /// label, each connecting only to its address.
    pub fan_out: bool,
    /// The `http_sd` URL and how often it is asked again (boxed: most
    /// probes have none).
    pub http_sd: Option<Box<(String, Duration)>>,
    /// Longest random-looking (but per-probe stable) delay added to each
    /// scheduled start, to spread probes that share a schedule.
    pub jitter: Duration,
    pub allow: AllowList,
    /// The HTTP proxy (an `http://host:port` origin) the probe's `http`
    /// calls go through; itself inside `allow`, as every target is.
    /// Boxed: most probes have none, and a URL is 88 bytes inline.
    pub proxy: Option<Box<url::Url>>,
    /// Labels added to every series of this probe, after `probe`.
    pub labels: Vec<(LabelName, String)>,
    /// The `config` table, handed to the plugin as JSON.
    pub config: serde_json::Value,
    /// Shared by every probe without a `tls` table.
    pub tls: Arc<TlsSettings>,
    pub limits: Limits,
    /// Secrets the plugin may read, by name.
    pub secrets: BTreeMap<String, SecretSource>,
    /// Whether `/probe` may run it: always for the operator's own probes;
    /// a package's only when the operator grants `on_demand`, since the
    /// caller picks the target its credentials are sent to.
    pub on_demand: bool,
    /// `[engine] icmp_sources`, for the icmp capability's grant.
    pub icmp_sources: Arc<[std::net::IpAddr]>,
    /// The probe's table, for errors found after loading plugins.
    pub location: Location,
    /// The probe's `plugin` key, for plugin load errors.
    pub plugin_location: Location,
    /// The `config` table (or the probe's table when absent).
    pub config_location: Location,
    /// Where each value of the `config` table is, by JSON pointer.
    pub config_pointers: Vec<(String, Location)>,
}

/// Errors loading a config: the file cannot be read, or it holds problems.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] Diagnostics),
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, text)
}

/// Validates config text as if read from `path` (relative paths in it are
/// taken from `path`'s directory).
pub fn parse(path: &Path, text: String) -> Result<Config, ConfigError> {
    let (config, problems) = parse_partial(path, text)?;
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(Diagnostics(problems).into())
    }
}

/// Like [`load`], but a file that parses yields the config with every
/// valid probe *and* the problems of the others, so `wasmprobe check` can
/// go on to validate the valid probes against their plugins and report
/// everything at once. Only a file that does not parse is an error here.
pub fn load_partial(path: &Path) -> Result<(Config, Vec<Diagnostic>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_partial(path, text)
}

fn parse_partial(path: &Path, text: String) -> Result<(Config, Vec<Diagnostic>), ConfigError> {
    let source = diagnostic::Source::new(path, text);
    let raw: raw::RawConfig = match toml::from_str(&source.text) {
        Ok(raw) => raw,
        Err(e) => return Err(Diagnostics(vec![source.parse_error(&e)]).into()),
    };
    Ok(resolve::resolve(&source, raw))
}

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;
