//! Probe packages: a team's plugins, probes, capabilities and limits in one
//! directory (or `.tar.gz`), loaded beside other teams' packages.
//!
//! A package's names are its own: probe `api` of package `payments` runs as
//! `payments:api`, with host labels `package="payments"` and `team`. Each
//! plugin is pinned by SHA-256. The package's `capabilities.allow` (within
//! the operator's `[packages.cap]`) bounds every probe's allow-list, checked
//! again at each call; its limits bound every probe's; its series budget is
//! shared by its plugins and by nobody else.
//!
//! A package with any problem (a hash mismatch, a capability or limit
//! beyond the cap, an unknown key, ...) is refused as a whole with every
//! problem listed, and the other packages and the main config still load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::files;

use super::diagnostic::{Diagnostic, Diagnostics, Location, Source};
use super::raw::{RawCap, RawPackage};
use super::resolve::{Resolver, Scope, resolve_probe};
use super::{EngineConfig, LabelName, Limits, PluginName, PluginSource, ProbeConfig, ProbeName};
use crate::egress::AllowList;

/// Largest unpacked `.tar.gz` package.
const MAX_UNPACKED: u64 = 256 << 20;
/// Default series budget of a package.
const DEFAULT_PACKAGE_BUDGET: usize = 5_000;
/// Largest `package.toml` read.
const MAX_PACKAGE_TOML: u64 = 1 << 20;

/// What the main config says about packages.
#[derive(Debug, Clone, Default)]
pub struct PackageCap {
    pub allow: Option<Arc<AllowList>>,
    pub memory: Option<u64>,
    pub timeout: Option<std::time::Duration>,
    pub series_budget: Option<usize>,
    /// The most a package's probe may set for the per-run limits the cap
    /// has no key of its own for; each left out is the main config's
    /// `[limits]` value.
    pub run_limits: Limits,
}

impl PackageCap {
    pub(super) fn from_raw(raw: &RawCap, base: Limits) -> PackageCap {
        PackageCap {
            allow: raw.allow.clone().map(|a| Arc::new(AllowList::new(a))),
            memory: raw.memory.map(|m| m.0),
            timeout: raw.timeout.map(|t| t.0),
            series_budget: raw.series_budget,
            run_limits: Limits {
                max_body: raw.max_body.map_or(base.max_body, |b| b.0),
                max_output: raw.max_output.map_or(base.max_output, |b| b.0),
                max_series: raw.max_series.unwrap_or(base.max_series),
                state_bytes: raw.state_bytes.map_or(base.state_bytes, |b| b.0),
                log_lines: raw.log_lines.unwrap_or(base.log_lines),
                max_requests: raw.max_requests.unwrap_or(base.max_requests),
                max_transfer: raw.max_transfer.map_or(base.max_transfer, |b| b.0),
                max_packets: raw.max_packets.unwrap_or(base.max_packets),
                ..base
            },
        }
    }
}

/// What the operator grants one package: where it must come from, and
/// the only credentials and files its probes may name. A package without
/// a grant may name none.
#[derive(Debug, Clone, Default)]
pub struct PackageGrant {
    /// The package's name, for messages.
    pub name: String,
    /// The package must be this directory, `package.toml` or archive.
    pub path: Option<PathBuf>,
    /// Or: the package must be pulled from this OCI repository
    /// (`registry/name`, from a grant `path = "oci://registry/name"`).
    pub oci: Option<String>,
    pub env: std::collections::BTreeSet<String>,
    pub files: std::collections::BTreeSet<PathBuf>,
    pub insecure_skip_verify: bool,
    /// Whether `/probe` may run the package's probes.
    pub on_demand: bool,
    /// The addresses its ICMP echoes may be sent from (each also in
    /// `[engine] icmp_sources`).
    pub icmp_sources: Vec<std::net::IpAddr>,
}

impl PackageGrant {
    /// Whether `file` (a path resolved against `package.toml`) was granted.
    pub(super) fn has_file(&self, file: &Path) -> bool {
        self.files.contains(&canonical(file))
    }

    /// Whether a package found at `found` is the one the grant is for.
    fn binds(&self, found: &Path, origin: Option<&str>) -> bool {
        if let Some(repository) = &self.oci {
            let pulled_from = origin
                .and_then(|o| o.strip_prefix(super::registry::OCI_PREFIX))
                .and_then(|o| o.parse::<wasmprobe_oci::Reference>().ok())
                .map(|r| format!("{}/{}", r.registry(), r.repository()));
            return pulled_from.as_deref() == Some(repository.as_str());
        }
        let Some(path) = &self.path else {
            return true;
        };
        if origin.is_some() {
            return false;
        }
        let found = canonical(found);
        let path = canonical(path);
        found == path || found.parent() == Some(path.as_path())
    }

    /// Where to grant something, for messages.
    pub(super) fn hint(&self) -> String {
        format!("grant it in [packages.grants.{}]", self.name)
    }
}

/// `path` without `..`, `.` and symbolic links where it exists, so two
/// spellings of one file compare equal.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A package as loaded (or refused).
#[derive(Debug, Clone)]
pub struct PackageInfo {
    pub name: String,
    pub team: Option<String>,
    pub version: Option<String>,
    /// The `package.toml` (or archive) it came from.
    pub path: PathBuf,
    /// Why it was refused; `None` when loaded.
    pub refused: Option<Diagnostics>,
}

/// A loaded package's contribution to the config.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    pub(super) plugins: BTreeMap<PluginName, PluginSource>,
    pub(super) probes: BTreeMap<ProbeName, Arc<ProbeConfig>>,
}

/// Expands the `include` patterns (relative to `dir`) to package files.
pub(super) fn expand(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = if Path::new(pattern).is_absolute() {
        pattern.to_string()
    } else {
        dir.join(pattern).to_string_lossy().into_owned()
    };
    let paths = glob::glob(&full).map_err(|e| format!("invalid pattern {pattern:?}: {e}"))?;
    let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
    found.sort();
    Ok(found
        .into_iter()
        .map(|p| {
            if p.is_dir() {
                p.join("package.toml")
            } else {
                p
            }
        })
        .collect())
}

/// Unpacks a `.tar.gz` package once into a directory named by its digest
/// under `into`, and returns its `package.toml`.
fn unpack(archive: &Path, into: &Path) -> Result<PathBuf, String> {
    let bytes = files::read_regular(archive, MAX_UNPACKED).map_err(|e| e.to_string())?;
    let digest = hex::encode(Sha256::digest(&bytes));
    let dest = into.join(&digest[..16]);
    if !dest.join("package.toml").is_file() {
        let staging = into.join(format!("{}.tmp-{}", &digest[..16], std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .map_err(|e| format!("cannot unpack into {}: {e}", staging.display()))?;
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut total = 0u64;
        let entries = tar
            .entries()
            .map_err(|e| format!("{} is not a .tar.gz: {e}", archive.display()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| format!("{} is damaged: {e}", archive.display()))?;
            // Only files and directories: a link could point the package's
            // own paths (its package.toml, a plugin) at any file the
            // engine can read, and a device or FIFO would hang the reader.
            let kind = entry.header().entry_type();
            if !(kind.is_file() || kind.is_dir()) {
                let name = entry
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                return Err(format!(
                    "{} holds {name:?}, which is not a regular file or a directory ({kind:?})",
                    archive.display()
                ));
            }
            total += entry.header().size().unwrap_or(0);
            if total > MAX_UNPACKED {
                return Err(format!(
                    "{} unpacks to more than {MAX_UNPACKED} bytes",
                    archive.display()
                ));
            }
            // `unpack_in` refuses paths that leave the directory.
            let ok = entry
                .unpack_in(&staging)
                .map_err(|e| format!("{}: cannot unpack an entry: {e}", archive.display()))?;
            if !ok {
                return Err(format!(
                    "{} holds a path outside the package",
                    archive.display()
                ));
            }
        }
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&staging, &dest)
            .map_err(|e| format!("cannot unpack into {}: {e}", dest.display()))?;
    }
    let toml = dest.join("package.toml");
    if toml.is_file() {
        Ok(toml)
    } else {
        Err(format!(
            "{} has no package.toml at its top",
            archive.display()
        ))
    }
}

fn sha256_of(path: &Path) -> Result<String, String> {
    let bytes = files::read_regular(path, files::MAX_WASM_SIZE).map_err(|e| e.to_string())?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

fn refuse(path: &Path, message: String) -> PackageInfo {
    PackageInfo {
        name: path.display().to_string(),
        team: None,
        version: None,
        path: path.to_path_buf(),
        refused: Some(Diagnostics(vec![Diagnostic {
            location: Location {
                file: std::sync::Arc::from(path),
                line: 1,
                column: 1,
                key: String::new(),
            },
            message,
        }])),
    }
}

/// Loads one package file (or archive). Never fails the caller: a refused
/// package comes back with its problems.
pub(super) fn load(
    path: &Path,
    unpack_dir: &Path,
    base: Limits,
    engine: &EngineConfig,
    cap: &PackageCap,
    grants: &BTreeMap<String, PackageGrant>,
    taken: &BTreeMap<String, PathBuf>,
) -> (PackageInfo, Loaded) {
    load_from(path, None, unpack_dir, base, engine, cap, grants, taken)
}

/// [`load`] of a package pulled from `origin` (`oci://...`), which is
/// what a grant binds it by and what the status page shows.
#[allow(clippy::too_many_arguments)]
pub(super) fn load_from(
    path: &Path,
    origin: Option<&str>,
    unpack_dir: &Path,
    base: Limits,
    engine: &EngineConfig,
    cap: &PackageCap,
    grants: &BTreeMap<String, PackageGrant>,
    taken: &BTreeMap<String, PathBuf>,
) -> (PackageInfo, Loaded) {
    // A pulled package is always an archive, whatever its file is named.
    let (toml_path, source, raw) = match read(path, origin.is_some(), unpack_dir) {
        Ok(read) => read,
        Err(refused) => return (*refused, Loaded::default()),
    };
    let name = raw.name.get_ref().to_string();
    let mut info = PackageInfo {
        name: name.clone(),
        team: raw.team.as_ref().map(|t| t.get_ref().clone()),
        version: raw.version.clone(),
        path: path.to_path_buf(),
        refused: None,
    };
    let dir = toml_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut r = Resolver {
        source: &source,
        dir,
        errors: Vec::new(),
        origin_lists: Default::default(),
    };
    if let Some(other) = taken.get(&name) {
        r.error(
            raw.name.span(),
            "name",
            format!(
                "package {name:?} is already loaded from {}",
                other.display()
            ),
        );
    }
    // The operator binds a name to a path: a package cannot claim a name
    // (and with it another team's grants) by writing it.
    let grant = grants.get(&name).cloned().unwrap_or_else(|| PackageGrant {
        name: name.clone(),
        ..PackageGrant::default()
    });
    if !grant.binds(path, origin) {
        let bound = match (&grant.oci, &grant.path) {
            (Some(repository), _) => format!("{}{repository}", super::registry::OCI_PREFIX),
            (None, Some(p)) => p.display().to_string(),
            (None, None) => "?".to_string(),
        };
        r.error(
            raw.name.span(),
            "name",
            format!(
                "package name {name:?} is bound by the operator to {bound} ([packages.grants.{name}] path); this package is {}",
                origin.map_or_else(|| path.display().to_string(), str::to_string)
            ),
        );
    }
    let package_allow = capabilities(&mut r, &raw, cap);
    let limits = limits(&mut r, &raw, cap, engine, base);
    let plugins = pinned_plugins(&mut r, &raw, &name, limits.series_budget);
    let host_labels = labels(&mut r, &raw);

    // Probes, inside the package's scope.
    let scope = Scope {
        default_allow: Some(package_allow.clone()),
        ceiling: Some(Arc::new(package_allow)),
        max_memory: Some(limits.memory),
        max_timeout: Some(limits.timeout),
        grant: Some(Arc::new(grant)),
        run_limits: Some(cap.run_limits),
    };
    // What a probe of the package gets without asking: the main config's
    // limits, lowered to the cap.
    let cap_run = &cap.run_limits;
    let base = Limits {
        memory: limits.memory,
        timeout: limits.timeout,
        max_body: base.max_body.min(cap_run.max_body),
        max_output: base.max_output.min(cap_run.max_output),
        max_series: base.max_series.min(cap_run.max_series),
        state_bytes: base.state_bytes.min(cap_run.state_bytes),
        log_lines: base.log_lines.min(cap_run.log_lines),
        max_requests: base.max_requests.min(cap_run.max_requests),
        max_transfer: base.max_transfer.min(cap_run.max_transfer),
        max_packets: base.max_packets.min(cap_run.max_packets),
    };
    let mut probes = BTreeMap::new();
    for (pname, probe) in raw.probes {
        let Some(mut p) = resolve_probe(&mut r, &pname, probe, base, engine, &plugins, &scope)
        else {
            continue;
        };
        let qualified = ProbeName::try_from(format!("{name}:{pname}"));
        let Ok(qualified) = qualified else {
            continue;
        };
        p.plugin = PluginName::qualified(&name, &p.plugin);
        let mut labels = vec![(LabelName::host("package"), name.clone())];
        if let Some(team) = &info.team {
            labels.push((LabelName::host("team"), team.clone()));
        }
        labels.extend(host_labels.iter().cloned());
        labels.append(&mut p.labels);
        p.labels = labels;
        p.name = qualified.clone();
        probes.insert(qualified, Arc::new(p));
    }

    if !r.errors.is_empty() {
        r.errors
            .sort_by_key(|d| (d.location.line, d.location.column));
        info.refused = Some(Diagnostics(r.errors));
        return (info, Loaded::default());
    }
    let plugins = plugins
        .into_iter()
        .map(|(k, v)| (PluginName::qualified(&name, &k), v))
        .collect();
    (info, Loaded { plugins, probes })
}

/// The package's `package.toml` (unpacked first from an archive), its
/// source for diagnostics and its raw content; or the refused package.
fn read(
    path: &Path,
    archive: bool,
    unpack_dir: &Path,
) -> Result<(PathBuf, Source, RawPackage), Box<PackageInfo>> {
    let toml_path = if archive || path.extension().is_some_and(|x| x == "gz") {
        match unpack(path, unpack_dir) {
            Ok(p) => p,
            Err(e) => return Err(Box::new(refuse(path, e))),
        }
    } else {
        path.to_path_buf()
    };
    let text = match files::read_regular_text(&toml_path, MAX_PACKAGE_TOML) {
        Ok(t) => t,
        Err(e) => {
            return Err(Box::new(refuse(path, e.to_string())));
        }
    };
    let source = Source::new(&toml_path, text);
    let raw: RawPackage = match toml::from_str(&source.text) {
        Ok(r) => r,
        Err(e) => {
            let mut info = refuse(path, String::new());
            // Name the package when its `name` at least can be read.
            if let Some(name) = toml::from_str::<toml::Table>(&source.text)
                .ok()
                .and_then(|t| t.get("name")?.as_str().map(str::to_string))
            {
                info.name = name;
            }
            info.refused = Some(Diagnostics(vec![source.parse_error(&e)]));
            return Err(Box::new(info));
        }
    };
    Ok((toml_path, source, raw))
}

/// The package's allow-list, each rule checked against the operator's cap
/// (which also stays its ceiling at every host call).
fn capabilities(r: &mut Resolver<'_>, raw: &RawPackage, cap: &PackageCap) -> AllowList {
    let allow_rules = raw
        .capabilities
        .allow
        .as_ref()
        .map(|a| a.get_ref().clone())
        .unwrap_or_default();
    if let (Some(cap_allow), Some(asked)) = (&cap.allow, &raw.capabilities.allow) {
        for rule in asked.get_ref() {
            if !rule.within(cap_allow) {
                r.error(
                    asked.span(),
                    "capabilities.allow",
                    format!(
                        "{:?} is wider than the operator allows packages (cap = [{}])",
                        rule.to_string(),
                        cap_allow
                            .rules()
                            .iter()
                            .map(|c| format!("{:?}", c.to_string()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
    }
    let package_allow = AllowList::new(allow_rules);
    match &cap.allow {
        Some(c) => package_allow.with_ceiling(c.clone()),
        None => package_allow,
    }
}

/// What the package's probes may spend: its own limits, each within the
/// operator's cap.
struct PackageLimits {
    memory: u64,
    timeout: std::time::Duration,
    series_budget: usize,
}

fn limits(
    r: &mut Resolver<'_>,
    raw: &RawPackage,
    cap: &PackageCap,
    engine: &EngineConfig,
    base: Limits,
) -> PackageLimits {
    let max_memory = cap.memory.unwrap_or(engine.max_memory);
    let memory = match &raw.limits.memory {
        Some(m) if m.get_ref().0 > max_memory => {
            r.error(
                m.span(),
                "limits.memory",
                format!(
                    "{} is above the operator's cap {}",
                    m.get_ref(),
                    super::ByteSize(max_memory)
                ),
            );
            max_memory
        }
        Some(m) => m.get_ref().0,
        None => base.memory.min(max_memory),
    };
    let timeout = match (&raw.limits.timeout, cap.timeout) {
        (Some(t), Some(max)) if t.get_ref().0 > max => {
            r.error(
                t.span(),
                "limits.timeout",
                format!("{:?} is above the operator's cap {max:?}", t.get_ref().0),
            );
            max
        }
        (Some(t), _) => t.get_ref().0,
        (None, Some(max)) => base.timeout.min(max),
        (None, None) => base.timeout,
    };
    let budget = match (&raw.limits.series_budget, cap.series_budget) {
        (Some(b), Some(max)) if *b.get_ref() > max => {
            r.error(
                b.span(),
                "limits.series_budget",
                format!("{} is above the operator's cap {max}", b.get_ref()),
            );
            max
        }
        (Some(b), _) => *b.get_ref(),
        (None, Some(max)) => DEFAULT_PACKAGE_BUDGET.min(max),
        (None, None) => DEFAULT_PACKAGE_BUDGET,
    };

    PackageLimits {
        memory,
        timeout,
        series_budget: budget,
    }
}

/// The package's plugins, each checked against its SHA-256 pin and
/// spending the package's one series budget.
fn pinned_plugins(
    r: &mut Resolver<'_>,
    raw: &RawPackage,
    name: &str,
    budget: usize,
) -> BTreeMap<PluginName, PluginSource> {
    let mut plugins = BTreeMap::new();
    for (pname, p) in &raw.plugins {
        let file = r.path(p.get_ref().path.get_ref());
        let key = format!("plugins.{pname}");
        let pinned = p.get_ref().sha256.get_ref().trim().to_ascii_lowercase();
        match sha256_of(&file) {
            Err(e) => r.error(p.get_ref().path.span(), format!("{key}.path"), e),
            Ok(actual) => {
                if actual != pinned {
                    r.error(
                        p.get_ref().sha256.span(),
                        format!("{key}.sha256"),
                        format!(
                            "{} has sha256 {actual}, but the package pins {pinned}",
                            file.display()
                        ),
                    );
                }
            }
        }
        plugins.insert(
            pname.clone(),
            PluginSource {
                oci: None,
                path: file,
                series_budget: budget,
                location: Some(r.location(p.span(), key)),
                budget_group: Some(name.to_string()),
                // Checked here for a located error, and again by the
                // loader on the very bytes it compiles.
                sha256: Some(pinned),
            },
        );
    }

    plugins
}

/// The package's labels for every probe of it; none may be one the engine
/// writes.
fn labels(r: &mut Resolver<'_>, raw: &RawPackage) -> Vec<(LabelName, String)> {
    let mut host_labels: Vec<(LabelName, String)> = Vec::new();
    for (label, value) in &raw.labels {
        let l = label.get_ref().as_str();
        if crate::names::ENGINE_LABELS.contains(&l) {
            r.error(
                label.span(),
                format!("labels.{l}"),
                format!(
                    "label {l:?} is set by the host (reserved: {})",
                    crate::names::ENGINE_LABELS.join(", ")
                ),
            );
        } else {
            host_labels.push((label.get_ref().clone(), value.clone()));
        }
    }
    host_labels
}
