//! Stage two: defaults and cross-checks over the raw config, collecting
//! every problem with its location.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use toml::Spanned;

use super::diagnostic::{Diagnostic, Location, Source};
use super::package::{self, PackageCap, PackageGrant, PackageInfo};
use super::raw::{RawConfig, RawLimits, RawProbe, RawTls};
use super::registry::{self, RegistryConfig};
use super::targets::{RefusedTarget, TargetSpec};
use super::{
    ClientCert, Config, CronSchedule, DEFAULT_LISTEN, EngineConfig, LabelName, Limits, PluginName,
    PluginSource, ProbeConfig, ProbeName, SecretSource, ServerConfig, TlsMinVersion, TlsSettings,
};
use crate::egress::{AllowList, Destination};
use crate::names::{ENGINE_LABELS, PACKAGE_LABELS};
use crate::tls_files::{self, PairFile};
use wasmprobe_oci::Kind;

/// Default series budget of one plugin across its probes.
const DEFAULT_SERIES_BUDGET: usize = 10_000;
const DEFAULT_MAX_MEMORY: u64 = 256 << 20;

pub(super) struct Resolver<'a> {
    pub(super) source: &'a Source,
    pub(super) dir: PathBuf,
    pub(super) errors: Vec<Diagnostic>,
    /// Allow-lists made from targets' origins, by their rules: the probes
    /// of the same origins share one (100,000 probes of one site: one list).
    pub(super) origin_lists: std::collections::HashMap<Vec<String>, AllowList>,
}

/// Where a probe is defined: the main config, or a package with its
/// capabilities and the operator's cap.
#[derive(Debug, Default)]
pub(super) struct Scope {
    /// A package probe without `allow` gets its package's capabilities.
    pub(super) default_allow: Option<AllowList>,
    /// Every probe of a package is limited by its package's capabilities
    /// (themselves limited by the operator's cap).
    pub(super) ceiling: Option<Arc<AllowList>>,
    /// Largest memory and timeout a probe of this scope may ask for.
    pub(super) max_memory: Option<u64>,
    pub(super) max_timeout: Option<std::time::Duration>,
    /// A package's grant: the only credentials and files its probes may
    /// name. `None` for the operator's own probes.
    pub(super) grant: Option<Arc<PackageGrant>>,
    /// The operator's cap on a package probe's other per-run limits.
    pub(super) run_limits: Option<Limits>,
}

impl Resolver<'_> {
    pub(super) fn location(&self, span: Range<usize>, key: impl Into<String>) -> Location {
        Location::new(self.source, span, key)
    }

    pub(super) fn error(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let location = self.location(span, key);
        self.errors.push(Diagnostic {
            location,
            message: message.into(),
        });
    }

    pub(super) fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

/// The config with every probe that resolved, and the problems found.
pub(super) fn resolve(source: &Source, mut raw: RawConfig) -> (Config, Vec<Diagnostic>) {
    let dir = source
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut r = Resolver {
        source,
        dir,
        errors: Vec::new(),
        origin_lists: Default::default(),
    };

    let server = resolve_server(&mut r, &raw);
    let engine = resolve_engine(&mut r, &raw);
    let base = merge_limits(&mut r, Limits::default(), &raw.limits, "limits", &engine);
    let registries = resolve_registries(&mut r, &raw);
    let plugins = resolve_plugins(&mut r, &raw, &engine, &registries);

    let mut probes = BTreeMap::new();
    let mut missing_plugins = BTreeMap::new();
    for (name, probe) in std::mem::take(&mut raw.probes) {
        if !plugins.contains_key(probe.get_ref().plugin.get_ref()) {
            missing_plugins.insert(name.clone(), probe.get_ref().plugin.get_ref().clone());
        }
        if let Some(p) = resolve_probe(
            &mut r,
            &name,
            probe,
            base,
            &engine,
            &plugins,
            &Scope::default(),
        ) {
            probes.insert(name, Arc::new(p));
        }
    }

    let mut plugins = plugins;
    let packages = resolve_packages(
        &mut r,
        &raw,
        base,
        &engine,
        &registries,
        &mut plugins,
        &mut probes,
    );

    r.errors
        .sort_by_key(|d| (d.location.line, d.location.column));
    let config = Config {
        path: source.path.clone(),
        server,
        engine,
        plugins,
        probes,
        missing_plugins,
        packages,
        registries,
        history: resolve_history(&raw),
    };
    (config, r.errors)
}

/// `[history]` with its defaults; zero turns a part off.
fn resolve_history(raw: &RawConfig) -> super::HistoryLimits {
    let d = super::HistoryLimits::default();
    let h = &raw.history;
    super::HistoryLimits {
        runs: h.runs.unwrap_or(d.runs),
        failures: h.failures.unwrap_or(d.failures),
        evidence_bytes: h.evidence_bytes.map_or(d.evidence_bytes, |b| {
            usize::try_from(b.0).unwrap_or(usize::MAX)
        }),
        total_evidence_bytes: h.total_evidence_bytes.map_or(d.total_evidence_bytes, |b| {
            usize::try_from(b.0).unwrap_or(usize::MAX)
        }),
    }
}

/// Loads every package the config includes. A refused package is kept
/// only as information; a bad include pattern is an error of the config.
fn resolve_packages(
    r: &mut Resolver<'_>,
    raw: &RawConfig,
    base: Limits,
    engine: &EngineConfig,
    registries: &BTreeMap<String, RegistryConfig>,
    plugins: &mut BTreeMap<PluginName, PluginSource>,
    probes: &mut BTreeMap<ProbeName, Arc<ProbeConfig>>,
) -> Vec<PackageInfo> {
    let cap = PackageCap::from_raw(&raw.packages.cap, base);
    let grants: BTreeMap<String, PackageGrant> = raw
        .packages
        .grants
        .iter()
        .map(|(name, spanned)| {
            let g = spanned.get_ref();
            for source in &g.icmp_sources {
                if !engine.icmp_sources.contains(&source.to_canonical()) {
                    r.error(
                        spanned.span(),
                        format!("packages.grants.{name}.icmp_sources"),
                        format!("{source} is not in [engine] icmp_sources; list it there first"),
                    );
                }
            }
            let grant = PackageGrant {
                name: name.clone(),
                path: (!g
                    .path
                    .get_ref()
                    .to_string_lossy()
                    .starts_with(registry::OCI_PREFIX))
                .then(|| r.path(g.path.get_ref())),
                oci: g
                    .path
                    .get_ref()
                    .to_string_lossy()
                    .strip_prefix(registry::OCI_PREFIX)
                    .map(str::to_string),
                env: g.env.iter().cloned().collect(),
                files: g
                    .files
                    .iter()
                    .map(|f| {
                        let path = r.path(f);
                        std::fs::canonicalize(&path).unwrap_or(path)
                    })
                    .collect(),
                insecure_skip_verify: g.insecure_skip_verify,
                on_demand: g.on_demand,
                icmp_sources: g.icmp_sources.iter().map(|s| s.to_canonical()).collect(),
            };
            (name.clone(), grant)
        })
        .collect();
    let unpack_dir = engine
        .cache_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join("packages");
    let mut taken: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut infos = Vec::new();
    for (i, pattern) in raw.packages.include.iter().enumerate() {
        if let Some(reference) = pattern.get_ref().strip_prefix(registry::OCI_PREFIX) {
            let fetched = registry::fetch(
                reference,
                Kind::Package,
                registries,
                &oci_cache_root(engine),
            );
            match fetched {
                Ok(f) => {
                    let origin = format!("{}{}", registry::OCI_PREFIX, reference);
                    let (info, loaded) = package::load_from(
                        &f.file,
                        Some(&origin),
                        &unpack_dir,
                        base,
                        engine,
                        &cap,
                        &grants,
                        &taken,
                    );
                    if info.refused.is_none() {
                        taken.insert(info.name.clone(), f.file.clone());
                        plugins.extend(loaded.plugins);
                        probes.extend(loaded.probes);
                    }
                    infos.push(info);
                }
                Err(e) => r.error(pattern.span(), format!("packages.include.{i}"), e),
            }
            continue;
        }
        let files = match package::expand(&r.dir, pattern.get_ref()) {
            Ok(f) => f,
            Err(e) => {
                r.error(pattern.span(), format!("packages.include.{i}"), e);
                continue;
            }
        };
        for file in files {
            let (info, loaded) =
                package::load(&file, &unpack_dir, base, engine, &cap, &grants, &taken);
            if info.refused.is_none() {
                taken.insert(info.name.clone(), file.clone());
                plugins.extend(loaded.plugins);
                probes.extend(loaded.probes);
            }
            infos.push(info);
        }
    }
    infos
}

fn resolve_server(r: &mut Resolver<'_>, raw: &RawConfig) -> ServerConfig {
    let default_listen = SocketAddr::from(([127, 0, 0, 1], 10464));
    let listen = match &raw.server.listen {
        None => DEFAULT_LISTEN.parse().unwrap_or(default_listen),
        Some(l) => match l.get_ref().parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                r.error(
                    l.span(),
                    "server.listen",
                    format!(
                        "{:?} is not an address:port (e.g. \"127.0.0.1:10464\" or \"[::1]:10464\")",
                        l.get_ref()
                    ),
                );
                default_listen
            }
        },
    };
    let default_module = raw.server.default_module.as_ref().and_then(|m| {
        let name = ProbeName::try_from(m.get_ref().clone())
            .ok()
            .filter(|n| raw.probes.contains_key(n));
        if name.is_none() {
            let known: Vec<&str> = raw.probes.keys().map(ProbeName::as_str).collect();
            r.error(
                m.span(),
                "server.default_module",
                format!(
                    "{:?} is not a probe of this config (known: {})",
                    m.get_ref(),
                    known.join(", ")
                ),
            );
        }
        name
    });
    ServerConfig {
        listen,
        probe_concurrency: raw.server.probe_concurrency.unwrap_or(16).max(1),
        max_connections: raw.server.max_connections.unwrap_or(512).max(1),
        default_module,
    }
}

/// `$XDG_CACHE_HOME/wasmprobe`, else `~/.cache/wasmprobe`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wasmprobe"))
}

fn resolve_engine(r: &mut Resolver<'_>, raw: &RawConfig) -> EngineConfig {
    let e = &raw.engine;
    let cache_dir = if e.cache == Some(false) {
        None
    } else {
        match &e.cache_dir {
            Some(d) => Some(r.path(d)),
            None => default_cache_dir(),
        }
    };
    let plugin_dirs = e
        .plugin_dirs
        .iter()
        .flatten()
        .map(|d| r.path(d.get_ref()))
        .collect();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let max_memory = match &e.max_memory {
        Some(m) if m.get_ref().0 < (1 << 20) || m.get_ref().0 > (4 << 30) => {
            r.error(
                m.span(),
                "engine.max_memory",
                format!("{} is outside 1MiB..=4GiB", m.get_ref()),
            );
            DEFAULT_MAX_MEMORY
        }
        Some(m) => m.get_ref().0,
        None => DEFAULT_MAX_MEMORY,
    };
    EngineConfig {
        cache_dir,
        plugin_dirs,
        max_concurrent_runs: e.max_concurrent_runs.unwrap_or(64).clamp(1, 10_000),
        worker_threads: e.worker_threads.unwrap_or(cores).clamp(1, 256),
        max_memory,
        watch: e.watch.map_or(std::time::Duration::from_secs(2), |w| w.0),
        icmp_sources: e
            .icmp_sources
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|ip| ip.to_canonical())
            .collect(),
    }
}

fn merge_limits(
    r: &mut Resolver<'_>,
    base: Limits,
    raw: &RawLimits,
    key: &str,
    engine: &EngineConfig,
) -> Limits {
    let mut l = base;
    if let Some(t) = raw.timeout {
        l.timeout = t.0;
    }
    if let Some(m) = &raw.memory {
        let bytes = m.get_ref().0;
        if bytes > engine.max_memory {
            r.error(
                m.span(),
                format!("{key}.memory"),
                format!(
                    "{} is above engine.max_memory ({}); raise engine.max_memory or lower this",
                    m.get_ref(),
                    super::ByteSize(engine.max_memory)
                ),
            );
        } else if bytes < (1 << 20) {
            r.error(m.span(), format!("{key}.memory"), "must be at least 1MiB");
        } else {
            l.memory = bytes;
        }
    }
    if let Some(v) = raw.max_output {
        l.max_output = v.0;
    }
    if let Some(v) = raw.max_series {
        l.max_series = v;
    }
    if let Some(v) = raw.max_body {
        l.max_body = v.0;
    }
    if let Some(v) = raw.log_lines {
        l.log_lines = v;
    }
    if let Some(v) = raw.state_bytes {
        l.state_bytes = v.0;
    }
    if let Some(v) = raw.max_requests {
        l.max_requests = v;
    }
    if let Some(v) = raw.max_transfer {
        l.max_transfer = v.0;
    }
    if let Some(v) = raw.max_packets {
        l.max_packets = v;
    }
    l
}

/// The plugin name a `.wasm` file in a plugin directory is known by.
pub(crate) fn plugin_name_of(path: &Path) -> Option<PluginName> {
    let stem = path.file_stem()?.to_str()?;
    PluginName::try_from(stem.to_string()).ok()
}

/// Where pulled OCI content is kept: beside the compile cache, or in the
/// temporary directory when the cache is off.
fn oci_cache_root(engine: &EngineConfig) -> PathBuf {
    engine
        .cache_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("wasmprobe"))
}

fn resolve_registries(r: &mut Resolver<'_>, raw: &RawConfig) -> BTreeMap<String, RegistryConfig> {
    let mut out = BTreeMap::new();
    for (host, spanned) in &raw.registries {
        let key = format!("registries.{host}");
        let g = spanned.get_ref();
        let password = g
            .password
            .as_ref()
            .and_then(|p| secret_source(r, p, &format!("{key}.password")));
        if g.username.is_some() != g.password.is_some() {
            r.error(
                spanned.span(),
                key.clone(),
                "give both `username` and `password`, or neither",
            );
        }
        let mut config = RegistryConfig {
            username: g.username.clone(),
            password,
            ..RegistryConfig::default()
        };
        if let Some(t) = &g.timeout {
            config.timeout = t.0;
        }
        out.insert(host.clone(), config);
    }
    out
}

fn resolve_plugins(
    r: &mut Resolver<'_>,
    raw: &RawConfig,
    engine: &EngineConfig,
    registries: &BTreeMap<String, RegistryConfig>,
) -> BTreeMap<PluginName, PluginSource> {
    let mut plugins: BTreeMap<PluginName, PluginSource> = BTreeMap::new();
    for (i, dir) in engine.plugin_dirs.iter().enumerate() {
        let span = raw
            .engine
            .plugin_dirs
            .as_ref()
            .and_then(|d| d.get(i))
            .map_or(0..0, Spanned::span);
        let key = format!("engine.plugin_dirs.{i}");
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                r.error(
                    span,
                    key,
                    format!("cannot read plugin directory {}: {e}", dir.display()),
                );
                continue;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        files.sort();
        for file in files {
            let Some(name) = plugin_name_of(&file) else {
                r.error(
                    span.clone(),
                    key.clone(),
                    format!(
                        "plugin file {} has no valid plugin name (lowercase letters, digits, `_`, `-`)",
                        file.display()
                    ),
                );
                continue;
            };
            if let Some(prev) = plugins.get(&name) {
                r.error(
                    span.clone(),
                    key.clone(),
                    format!(
                        "plugin {name:?} is in two places: {} and {}",
                        prev.path.display(),
                        file.display()
                    ),
                );
                continue;
            }
            plugins.insert(
                name,
                PluginSource {
                    oci: None,
                    path: file,
                    series_budget: DEFAULT_SERIES_BUDGET,
                    location: None,
                    budget_group: None,
                    sha256: None,
                },
            );
        }
    }
    for (name, p) in &raw.plugins {
        let location = r.location(p.span(), format!("plugins.{name}"));
        let (path, oci, sha256) = match (&p.get_ref().path, &p.get_ref().oci) {
            (Some(path), None) => {
                let file = r.path(path.get_ref());
                if !file.is_file() {
                    r.error(
                        path.span(),
                        format!("plugins.{name}.path"),
                        format!("plugin file {} does not exist", file.display()),
                    );
                }
                (file, None, None)
            }
            (None, Some(reference)) => {
                let fetched = registry::fetch(
                    reference.get_ref(),
                    Kind::Plugin,
                    registries,
                    &oci_cache_root(engine),
                );
                match fetched {
                    Ok(f) => (f.file, Some(reference.get_ref().clone()), Some(f.sha256)),
                    Err(e) => {
                        r.error(reference.span(), format!("plugins.{name}.oci"), e);
                        continue;
                    }
                }
            }
            _ => {
                r.error(
                    p.span(),
                    format!("plugins.{name}"),
                    "give exactly one of `path = \"file.wasm\"` or `oci = \"registry/name:tag@sha256:...\"`",
                );
                continue;
            }
        };
        plugins.insert(
            name.clone(),
            PluginSource {
                path,
                oci,
                series_budget: p.get_ref().series_budget.unwrap_or(DEFAULT_SERIES_BUDGET),
                location: Some(location),
                budget_group: None,
                sha256,
            },
        );
    }
    plugins
}

pub(super) fn resolve_probe(
    r: &mut Resolver<'_>,
    name: &ProbeName,
    spanned: Spanned<RawProbe>,
    base: Limits,
    engine: &EngineConfig,
    plugins: &BTreeMap<PluginName, PluginSource>,
    scope: &Scope,
) -> Option<ProbeConfig> {
    let span = spanned.span();
    let key = format!("probes.{name}");
    let p = spanned.into_inner();
    let before = r.errors.len();

    let plugin = p.plugin.get_ref().clone();
    let plugin_location = r.location(p.plugin.span(), format!("{key}.plugin"));
    if !plugins.contains_key(&plugin) {
        let known = plugins
            .keys()
            .map(|k| format!("{:?}", k.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        r.error(
            p.plugin.span(),
            format!("{key}.plugin"),
            format!("unknown plugin {:?} (known: [{known}])", plugin.as_str()),
        );
    }

    let limits = probe_limits(r, &key, &span, &p, base, engine, scope);
    let schedule = match (&p.schedule, &p.interval) {
        (Some(_), Some(i)) => {
            r.error(
                i.span(),
                format!("{key}.interval"),
                "give `schedule` (cron) or `interval`, not both",
            );
            None
        }
        (None, Some(i)) => match CronSchedule::every(i.get_ref().0) {
            Ok(s) => Some(s),
            Err(e) => {
                r.error(i.span(), format!("{key}.interval"), e);
                None
            }
        },
        (schedule, None) => schedule.clone(),
    };

    let failing_interval = p.failing_interval.as_ref().and_then(|f| {
        let every = f.get_ref().0;
        let problem = if schedule.is_none() && p.schedule.is_none() && p.interval.is_none() {
            Some("`failing_interval` needs a `schedule` or an `interval`")
        } else if every < std::time::Duration::from_secs(1) {
            Some("run a failing target at most once a second (`failing_interval = \"1s\"` or more)")
        } else {
            None
        };
        match problem {
            Some(m) => {
                r.error(f.span(), format!("{key}.failing_interval"), m);
                None
            }
            None => Some(every),
        }
    });

    let timezone = p.timezone.as_ref().and_then(|t| {
        let zone = t.get_ref().parse::<chrono_tz::Tz>();
        if zone.is_err() {
            r.error(
                t.span(),
                format!("{key}.timezone"),
                format!(
                    "unknown time zone {:?}; write an IANA name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\"",
                    t.get_ref()
                ),
            );
        }
        zone.ok()
    });

    // A scheduled probe without a target is for plugins that need none (a
    // batch job); the plugin reports a missing target itself.
    let target = p.target.as_ref().map(|t| t.get_ref().clone());

    let allow = probe_allow(r, &key, &p, scope);
    let http_sd = http_sd(r, &key, &p, scope, target.is_some());
    let (targets, target_files, refused_targets) = probe_targets(
        r,
        &key,
        &p,
        scope,
        &allow,
        &target,
        http_sd.as_ref().map(|(url, _)| url.as_str()),
    );
    let proxy = p.proxy_url.as_ref().and_then(|u| {
        proxy_url(u.get_ref(), &allow)
            .map(Box::new)
            .map_err(|e| r.error(u.span(), format!("{key}.proxy_url"), e))
            .ok()
    });

    let labels = probe_labels(r, &key, &p, scope);
    let tls = match p.tls.as_ref() {
        None => TlsSettings::shared_default(),
        Some(raw) => Arc::new(resolve_tls(r, &key, raw, scope.grant.as_deref())),
    };

    let secrets = probe_secrets(r, &key, &p, scope);

    let mut config_pointers = Vec::new();
    let (config, config_location) = match &p.config {
        Some(c) => {
            let json = serde_json::to_value(c.get_ref()).unwrap_or(serde_json::Value::Null);
            config_pointers = r
                .source
                .pointer_locations(&["probes", name.as_str(), "config"]);
            (json, r.location(c.span(), format!("{key}.config")))
        }
        None => (
            serde_json::Value::Object(Default::default()),
            r.location(span.clone(), key.clone()),
        ),
    };

    if r.errors.len() != before {
        return None;
    }
    Some(ProbeConfig {
        name: name.clone(),
        plugin,
        schedule,
        failing_interval,
        timezone,
        target,
        targets,
        target_files,
        refused_targets,
        many_targets: p.targets.is_some() || p.file_sd.is_some() || p.http_sd.is_some(),
        http_sd: http_sd.map(Box::new),
        fan_out: p.fan_out.unwrap_or(false),
        jitter: p.jitter.map(|j| j.0).unwrap_or_default(),
        allow,
        proxy,
        labels,
        config,
        tls,
        limits,
        secrets,
        on_demand: scope.grant.as_ref().is_none_or(|g| g.on_demand),
        // A package's probes send only from the sources granted to it.
        icmp_sources: match &scope.grant {
            Some(g) => g.icmp_sources.clone().into(),
            None => engine.icmp_sources.clone().into(),
        },
        location: r.location(span, key),
        plugin_location,
        config_location,
        config_pointers,
    })
}

/// A probe's `proxy_url`: an `http://` origin the probe's allow-list
/// admits (the proxy is a destination like any other). Credentials are
/// refused, and no message repeats the text, since it may hold one.
fn proxy_url(text: &str, allow: &AllowList) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| {
        format!("not a URL ({e}); write `proxy_url = \"http://proxy.example:3128\"`")
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "a proxy URL carries no credentials: probes.toml never holds a secret; use a proxy that admits the engine by address"
                .into(),
        );
    }
    if url.scheme() != "http" {
        return Err(format!(
            "scheme {:?} is not supported: the proxy is spoken to in plain `http://` (HTTPS targets go through it with CONNECT)",
            url.scheme()
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("give only the proxy's origin, `http://host:port`, without a path".into());
    }
    let dest = Destination::from_url(&url)?;
    allow
        .check(&dest)
        .map_err(|d| format!("the proxy {dest} must be inside the probe's allow-list: {d}"))?;
    Ok(url)
}

/// The probe's limits: the defaults, its `limits` table and `timeout`, each
/// within the engine's ceiling and its package's limits.
fn probe_limits(
    r: &mut Resolver<'_>,
    key: &str,
    span: &Range<usize>,
    p: &RawProbe,
    base: Limits,
    engine: &EngineConfig,
    scope: &Scope,
) -> Limits {
    let mut limits = match &p.limits {
        Some(l) => merge_limits(r, base, l, &format!("{key}.limits"), engine),
        None => base,
    };
    if let Some(t) = &p.timeout {
        limits.timeout = t.get_ref().0;
        if limits.timeout.is_zero() {
            r.error(t.span(), format!("{key}.timeout"), "must be above zero");
        }
    }
    if let Some(max) = scope.max_timeout
        && limits.timeout > max
    {
        r.error(
            p.timeout.as_ref().map_or(span.clone(), Spanned::span),
            format!("{key}.timeout"),
            format!(
                "{:?} is above the package's timeout limit {max:?}",
                limits.timeout
            ),
        );
    }
    if let Some(max) = scope.max_memory
        && limits.memory > max
    {
        r.error(
            span.clone(),
            format!("{key}.limits.memory"),
            format!(
                "{} is above the package's memory limit {}",
                super::ByteSize(limits.memory),
                super::ByteSize(max)
            ),
        );
    }
    if let Some(cap) = &scope.run_limits {
        let sizes = [
            ("max_body", limits.max_body, cap.max_body),
            ("max_output", limits.max_output, cap.max_output),
            ("state_bytes", limits.state_bytes, cap.state_bytes),
            ("max_transfer", limits.max_transfer, cap.max_transfer),
        ];
        for (name, asked, max) in sizes {
            if asked > max {
                r.error(
                    span.clone(),
                    format!("{key}.limits.{name}"),
                    format!(
                        "{} is above the operator's cap {} ([packages.cap] {name})",
                        super::ByteSize(asked),
                        super::ByteSize(max)
                    ),
                );
            }
        }
        let counts = [
            (
                "max_series",
                limits.max_series as u64,
                cap.max_series as u64,
            ),
            (
                "log_lines",
                u64::from(limits.log_lines),
                u64::from(cap.log_lines),
            ),
            (
                "max_requests",
                u64::from(limits.max_requests),
                u64::from(cap.max_requests),
            ),
            (
                "max_packets",
                u64::from(limits.max_packets),
                u64::from(cap.max_packets),
            ),
        ];
        for (name, asked, max) in counts {
            if asked > max {
                r.error(
                    span.clone(),
                    format!("{key}.limits.{name}"),
                    format!("{asked} is above the operator's cap {max} ([packages.cap] {name})"),
                );
            }
        }
    }
    limits
}

/// The probe's allow-list: its own, its package's, or its targets'
/// origins; a package probe's also stays under the package's capabilities.
fn probe_allow(r: &mut Resolver<'_>, key: &str, p: &RawProbe, scope: &Scope) -> AllowList {
    let listed = p.targets.iter().flat_map(|t| t.get_ref().iter());
    let allow = match (&p.allow, &scope.default_allow) {
        (Some(a), _) => AllowList::new(a.get_ref().clone()),
        (None, Some(package)) => package.clone(),
        // Without an explicit list a probe may reach its own targets'
        // origins, and nothing else.
        (None, None) => {
            let mut rules = Vec::new();
            for t in p.target.iter().chain(listed) {
                if let Some(rule) = AllowList::origin_rule(t.get_ref())
                    && !rules.contains(&rule)
                {
                    rules.push(rule);
                }
            }
            let key = rules.iter().map(ToString::to_string).collect();
            r.origin_lists
                .entry(key)
                .or_insert_with(|| AllowList::new(rules))
                .clone()
        }
    };
    let allow = match &scope.ceiling {
        Some(ceiling) => {
            if let Some(a) = &p.allow {
                for rule in a.get_ref() {
                    if !rule.within(ceiling) {
                        r.error(
                            a.span(),
                            format!("{key}.allow"),
                            format!(
                                "{rule:?} is outside the package's capabilities",
                                rule = rule.to_string()
                            ),
                        );
                    }
                }
            }
            allow.with_ceiling(ceiling.clone())
        }
        None => allow,
    };
    if let Some(t) = &p.target
        && let Err(denied) = allow.check_target(t.get_ref())
    {
        r.error(
            t.span(),
            format!("{key}.target"),
            format!("{denied}; add its origin to `allow`"),
        );
    }

    allow
}

/// A probe's many targets: `targets` (each inside the allow-list, or an
/// error at its line) and the targets of its `file_sd` files (outside the
/// allow-list: refused with the reason, not an error, since someone else
/// writes those files).
fn probe_targets(
    r: &mut Resolver<'_>,
    key: &str,
    p: &RawProbe,
    scope: &Scope,
    allow: &AllowList,
    single: &Option<String>,
    http_sd: Option<&str>,
) -> (Vec<TargetSpec>, Vec<PathBuf>, Vec<RefusedTarget>) {
    let mut targets: Vec<TargetSpec> = Vec::new();
    if let (Some(_), Some(many)) = (single, &p.targets) {
        r.error(
            many.span(),
            format!("{key}.targets"),
            "give `target` (one) or `targets` (many), not both",
        );
    }
    if let (Some(_), Some(files)) = (single, &p.file_sd) {
        r.error(
            files.span(),
            format!("{key}.file_sd"),
            "give `target` (one) or `file_sd` (many), not both",
        );
    }
    for t in p.targets.iter().flat_map(|t| t.get_ref().iter()) {
        let address = t.get_ref().trim().to_string();
        if address.is_empty() {
            r.error(t.span(), format!("{key}.targets"), "an empty target");
        } else if targets.iter().any(|o| o.address == address) {
            r.error(
                t.span(),
                format!("{key}.targets"),
                format!("{address:?} is listed twice"),
            );
        } else if let Err(denied) = allow.check_target(&address) {
            r.error(
                t.span(),
                format!("{key}.targets"),
                format!("{denied}; add its origin to `allow`"),
            );
        } else {
            targets.push(TargetSpec {
                address,
                labels: Vec::new(),
                source: None,
            });
        }
    }
    let mut reserved: Vec<&str> = ENGINE_LABELS.to_vec();
    reserved.extend(p.labels.keys().map(|l| l.get_ref().as_str()));
    let mut refused = Vec::new();
    // The kept answer of the probe's (valid) http_sd URL, asked once when
    // never asked before; a URL that never answered holds no targets yet.
    if let Some(url) = http_sd
        && let Some(groups) = super::targets::http_sd_groups(url)
    {
        super::targets::accept(url, &groups, allow, &reserved, &mut targets, &mut refused);
    }
    let Some(files) = &p.file_sd else {
        return (targets, Vec::new(), refused);
    };
    if scope.ceiling.is_some() {
        r.error(
            files.span(),
            format!("{key}.file_sd"),
            "a package's probes cannot read files; list their targets in `targets`",
        );
        return (targets, Vec::new(), Vec::new());
    }
    if p.allow.is_none() {
        r.error(
            files.span(),
            format!("{key}.file_sd"),
            "a probe with `file_sd` needs an `allow` list: every discovered target is checked against it",
        );
        return (targets, Vec::new(), Vec::new());
    }
    let paths: Vec<PathBuf> = files
        .get_ref()
        .iter()
        .map(|f| r.path(f.get_ref()))
        .collect();
    match super::targets::discover(&paths, allow, &reserved) {
        Ok((found, more)) => {
            for t in found {
                if !targets.iter().any(|o| o.address == t.address) {
                    targets.push(t);
                }
            }
            refused.extend(more);
            (targets, paths, refused)
        }
        Err(e) => {
            r.error(files.span(), format!("{key}.file_sd"), e.to_string());
            (targets, paths, Vec::new())
        }
    }
}

/// Shortest `http_sd_refresh`: an answer is not asked for more often.
const MIN_HTTP_SD_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// A probe's `http_sd` URL and refresh interval (60 s by default), or
/// `None` with the reasons it cannot have one: only a valid one is ever
/// asked.
fn http_sd(
    r: &mut Resolver<'_>,
    key: &str,
    p: &RawProbe,
    scope: &Scope,
    single: bool,
) -> Option<(String, std::time::Duration)> {
    let before = r.errors.len();
    let refresh = p
        .http_sd_refresh
        .as_ref()
        .map_or(std::time::Duration::from_secs(60), |d| d.get_ref().0);
    if let Some(d) = &p.http_sd_refresh {
        if p.http_sd.is_none() {
            r.error(
                d.span(),
                format!("{key}.http_sd_refresh"),
                "`http_sd_refresh` without `http_sd`",
            );
        } else if refresh < MIN_HTTP_SD_REFRESH {
            r.error(
                d.span(),
                format!("{key}.http_sd_refresh"),
                "ask an http_sd server at most once a second (`http_sd_refresh = \"1s\"` or more)",
            );
        }
    }
    let url = p.http_sd.as_ref()?;
    let at = |r: &mut Resolver<'_>, message: &str| {
        r.error(url.span(), format!("{key}.http_sd"), message.to_string());
    };
    match url::Url::parse(url.get_ref()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => {
            at(r, "not an http:// or https:// URL");
            return None;
        }
    }
    let problem = if single {
        Some("give `target` (one) or `http_sd` (many), not both")
    } else if scope.ceiling.is_some() {
        Some("a package's probes cannot discover targets; list them in `targets`")
    } else if p.allow.is_none() {
        Some(
            "a probe with `http_sd` needs an `allow` list: every discovered target is checked against it",
        )
    } else {
        None
    };
    if let Some(problem) = problem {
        at(r, problem);
    }
    (r.errors.len() == before).then(|| (url.get_ref().clone(), refresh))
}

/// The probe's labels; none may be one the engine writes. The operator's
/// own probes may say which `team` or `package` they belong to; a
/// package's may not (the host sets those).
fn probe_labels(
    r: &mut Resolver<'_>,
    key: &str,
    p: &RawProbe,
    scope: &Scope,
) -> Vec<(LabelName, String)> {
    let in_package = scope.ceiling.is_some();
    let reserved: Vec<&str> = ENGINE_LABELS
        .iter()
        .copied()
        .filter(|l| in_package || !PACKAGE_LABELS.contains(l))
        .collect();
    let mut labels = Vec::new();
    for (label, value) in &p.labels {
        let l = label.get_ref().as_str();
        if reserved.contains(&l) {
            r.error(
                label.span(),
                format!("{key}.labels.{l}"),
                format!(
                    "label {l:?} is set by the host (reserved: {})",
                    reserved.join(", ")
                ),
            );
        }
        labels.push((label.get_ref().clone(), value.clone()));
    }
    labels
}

/// Where a secret written as `{ env = "VAR" }` or `{ file = "path" }` at
/// `key` comes from (a file relative to the config), or the error there.
fn secret_source(
    r: &mut Resolver<'_>,
    raw: &Spanned<super::raw::RawSecret>,
    key: &str,
) -> Option<SecretSource> {
    match (&raw.get_ref().env, &raw.get_ref().file) {
        (Some(var), None) if !var.is_empty() => Some(SecretSource::Env(var.clone())),
        (None, Some(file)) => Some(SecretSource::File(r.path(file))),
        _ => {
            r.error(
                raw.span(),
                key.to_string(),
                "give exactly one of `env = \"VARIABLE\"` or `file = \"path\"`",
            );
            None
        }
    }
}

/// The secrets the probe's plugin may ask for, by name; a package's only
/// from what the operator granted it.
fn probe_secrets(
    r: &mut Resolver<'_>,
    key: &str,
    p: &RawProbe,
    scope: &Scope,
) -> BTreeMap<String, SecretSource> {
    let mut secrets = BTreeMap::new();
    for (name, raw) in &p.secrets {
        let skey = format!("{key}.secrets.{name}");
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            r.error(
                raw.span(),
                skey,
                format!("secret name {name:?} must be letters, digits, `_` or `-`"),
            );
            continue;
        }
        let Some(source) = secret_source(r, raw, &skey) else {
            continue;
        };
        if let Some(g) = &scope.grant {
            let refused = match &source {
                SecretSource::Env(var) if !g.env.contains(var) => Some(format!(
                    "environment variable {var:?} is not granted to package {:?}: {} env",
                    g.name,
                    g.hint()
                )),
                SecretSource::File(file) if !g.has_file(file) => Some(format!(
                    "file {} is not granted to package {:?}: {} files",
                    file.display(),
                    g.name,
                    g.hint()
                )),
                _ => None,
            };
            if let Some(why) = refused {
                r.error(raw.span(), skey, why);
                continue;
            }
        }
        secrets.insert(name.clone(), source);
    }

    secrets
}

fn resolve_tls(
    r: &mut Resolver<'_>,
    key: &str,
    raw: &RawTls,
    grant: Option<&PackageGrant>,
) -> TlsSettings {
    // A package's TLS settings may weaken verification or read files only
    // as far as the operator granted; an ungranted file is never opened.
    if let Some(g) = grant
        && !tls_granted(r, key, raw, g)
    {
        return TlsSettings::default();
    }
    let mut tls = TlsSettings {
        insecure_skip_verify: raw
            .insecure_skip_verify
            .as_ref()
            .is_some_and(|s| *s.get_ref()),
        server_name: raw.server_name.clone(),
        ..TlsSettings::default()
    };
    if let Some(v) = &raw.min_version {
        match v.get_ref().as_str() {
            "1.2" | "TLS12" | "TLS 1.2" => tls.min_version = TlsMinVersion::Tls12,
            "1.3" | "TLS13" | "TLS 1.3" => tls.min_version = TlsMinVersion::Tls13,
            other => r.error(
                v.span(),
                format!("{key}.tls.min_version"),
                format!(
                    "{other:?} is not a TLS version this engine speaks; use \"1.2\" or \"1.3\""
                ),
            ),
        }
    }
    if let Some(f) = &raw.ca_file {
        let path = r.path(f.get_ref());
        match load_ca_file(&path) {
            Ok(certs) => {
                tls.ca_certs = certs;
                tls.ca_file = Some(path);
            }
            Err(e) => r.error(f.span(), format!("{key}.tls.ca_file"), e),
        }
    }
    match (&raw.cert_file, &raw.key_file) {
        (None, None) => {}
        (Some(c), None) => r.error(
            c.span(),
            format!("{key}.tls.cert_file"),
            "a client certificate needs its private key: add `key_file`".to_string(),
        ),
        (None, Some(k)) => r.error(
            k.span(),
            format!("{key}.tls.key_file"),
            "a private key needs its client certificate: add `cert_file`".to_string(),
        ),
        (Some(c), Some(k)) => {
            let cert_path = r.path(c.get_ref());
            let key_path = r.path(k.get_ref());
            let report = |r: &mut Resolver<'_>, which: PairFile, problem: String| {
                let (span, setting, what, path) = match which {
                    PairFile::Cert => (c.span(), "cert_file", "certificate file", &cert_path),
                    PairFile::Key => (k.span(), "key_file", "key file", &key_path),
                };
                r.error(
                    span,
                    format!("{key}.tls.{setting}"),
                    format!("{what} {}: {problem}", path.display()),
                );
            };
            // Both files are read before either is reported, so one check
            // names every problem.
            let provider = tls_files::provider();
            let chain = tls_files::read_certs(&cert_path);
            let signer = tls_files::read_key(&key_path, &provider);
            match (chain, signer) {
                (Ok(chain), Ok(signer)) => match tls_files::pair(chain, signer, &cert_path) {
                    Ok(pair) => {
                        tls.client_cert = Some(ClientCert {
                            pair: Arc::new(pair),
                            cert_file: cert_path.clone(),
                            key_file: key_path.clone(),
                        });
                    }
                    Err((which, problem)) => report(r, which, problem),
                },
                (chain, signer) => {
                    if let Err(problem) = chain {
                        report(r, PairFile::Cert, problem);
                    }
                    if let Err(problem) = signer {
                        report(r, PairFile::Key, problem);
                    }
                }
            }
        }
    }
    tls
}

fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA file {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("CA file {} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// Whether a package's TLS settings stay within its grant; each setting
/// beyond it is reported.
fn tls_granted(r: &mut Resolver<'_>, key: &str, raw: &RawTls, g: &PackageGrant) -> bool {
    let mut granted = true;
    if let Some(skip) = raw.insecure_skip_verify.as_ref().filter(|s| *s.get_ref())
        && !g.insecure_skip_verify
    {
        r.error(
            skip.span(),
            format!("{key}.tls.insecure_skip_verify"),
            format!(
                "turning TLS verification off is not granted to package {:?}: {} insecure_skip_verify",
                g.name,
                g.hint()
            ),
        );
        granted = false;
    }
    for (field, file) in [
        ("ca_file", &raw.ca_file),
        ("cert_file", &raw.cert_file),
        ("key_file", &raw.key_file),
    ] {
        let Some(f) = file else { continue };
        let path = r.path(f.get_ref());
        if !g.has_file(&path) {
            r.error(
                f.span(),
                format!("{key}.tls.{field}"),
                format!(
                    "file {} is not granted to package {:?}: {} files",
                    path.display(),
                    g.name,
                    g.hint()
                ),
            );
            granted = false;
        }
    }
    granted
}
