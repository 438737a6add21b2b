//! The config file exactly as written: unknown keys are refused, constrained
//! values are parsed into their newtypes, and fields later checks report on
//! keep their spans.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::values::{ByteSize, CronSchedule, HumanDuration, LabelName, PluginName, ProbeName};
use crate::egress::AllowRule;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) server: RawServer,
    #[serde(default)]
    pub(crate) engine: RawEngine,
    #[serde(default)]
    pub(crate) limits: RawLimits,
    #[serde(default)]
    pub(crate) plugins: BTreeMap<PluginName, Spanned<RawPlugin>>,
    #[serde(default)]
    pub(crate) probes: BTreeMap<ProbeName, Spanned<RawProbe>>,
    #[serde(default)]
    pub(crate) packages: RawPackages,
    /// How to reach each OCI registry, by `HOST[:PORT]`.
    #[serde(default)]
    pub(crate) registries: BTreeMap<String, Spanned<RawRegistry>>,
    #[serde(default)]
    pub(crate) history: RawHistory,
}

/// `[history]`: what each target's history keeps for the status page.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHistory {
    pub(crate) runs: Option<usize>,
    pub(crate) failures: Option<usize>,
    pub(crate) evidence_bytes: Option<ByteSize>,
    pub(crate) total_evidence_bytes: Option<ByteSize>,
}

/// `[registries."HOST[:PORT]"]`: credentials and patience for one
/// registry that plugins or packages are pulled from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegistry {
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Spanned<RawSecret>>,
    pub(crate) timeout: Option<HumanDuration>,
}

/// Which probe packages to load, and what any of them may ask for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPackages {
    /// Paths or globs of `package.toml` files, package directories or
    /// `.tar.gz` archives.
    #[serde(default)]
    pub(crate) include: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) cap: RawCap,
    /// What the operator grants each package, by the package's name.
    #[serde(default)]
    pub(crate) grants: BTreeMap<String, Spanned<RawGrant>>,
}

/// `[packages.grants.NAME]`: where the package of that name must come
/// from, and the credentials and files its probes may name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGrant {
    /// The package's directory, its `package.toml` or its archive.
    pub(crate) path: Spanned<PathBuf>,
    /// Environment variables its probes may read as secrets.
    #[serde(default)]
    pub(crate) env: Vec<String>,
    /// Files its probes may name: secret files, `tls.ca_file`,
    /// `tls.cert_file`, `tls.key_file`.
    #[serde(default)]
    pub(crate) files: Vec<PathBuf>,
    /// Whether its probes may set `tls.insecure_skip_verify`.
    #[serde(default)]
    pub(crate) insecure_skip_verify: bool,
    /// Whether `/probe` may run its probes.
    #[serde(default)]
    pub(crate) on_demand: bool,
    /// Addresses (of `[engine] icmp_sources`) its ICMP echoes may be sent
    /// from.
    #[serde(default)]
    pub(crate) icmp_sources: Vec<std::net::IpAddr>,
}

/// The operator's cap on every package.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCap {
    pub(crate) allow: Option<Vec<AllowRule>>,
    pub(crate) memory: Option<ByteSize>,
    pub(crate) timeout: Option<HumanDuration>,
    pub(crate) series_budget: Option<usize>,
    pub(crate) max_body: Option<ByteSize>,
    pub(crate) max_output: Option<ByteSize>,
    pub(crate) max_series: Option<usize>,
    pub(crate) state_bytes: Option<ByteSize>,
    pub(crate) log_lines: Option<u32>,
    pub(crate) max_requests: Option<u32>,
    pub(crate) max_transfer: Option<ByteSize>,
    pub(crate) max_packets: Option<u32>,
}

/// A `package.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPackage {
    pub(crate) name: Spanned<PluginName>,
    pub(crate) team: Option<Spanned<String>>,
    pub(crate) version: Option<String>,
    #[serde(default)]
    pub(crate) labels: BTreeMap<Spanned<LabelName>, String>,
    #[serde(default)]
    pub(crate) capabilities: RawCapabilities,
    #[serde(default)]
    pub(crate) limits: RawPackageLimits,
    #[serde(default)]
    pub(crate) plugins: BTreeMap<PluginName, Spanned<RawPackagePlugin>>,
    #[serde(default)]
    pub(crate) probes: BTreeMap<ProbeName, Spanned<RawProbe>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCapabilities {
    pub(crate) allow: Option<Spanned<Vec<AllowRule>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPackageLimits {
    pub(crate) memory: Option<Spanned<ByteSize>>,
    pub(crate) timeout: Option<Spanned<HumanDuration>>,
    pub(crate) series_budget: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPackagePlugin {
    pub(crate) path: Spanned<PathBuf>,
    pub(crate) sha256: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) default_module: Option<Spanned<String>>,
    pub(crate) probe_concurrency: Option<usize>,
    pub(crate) max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEngine {
    pub(crate) cache: Option<bool>,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) plugin_dirs: Option<Vec<Spanned<PathBuf>>>,
    pub(crate) max_concurrent_runs: Option<usize>,
    pub(crate) worker_threads: Option<usize>,
    pub(crate) max_memory: Option<Spanned<ByteSize>>,
    pub(crate) watch: Option<HumanDuration>,
    /// Addresses an ICMP echo may be sent from.
    pub(crate) icmp_sources: Option<Vec<std::net::IpAddr>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) timeout: Option<HumanDuration>,
    pub(crate) memory: Option<Spanned<ByteSize>>,
    pub(crate) max_output: Option<ByteSize>,
    pub(crate) max_series: Option<usize>,
    pub(crate) max_body: Option<ByteSize>,
    pub(crate) log_lines: Option<u32>,
    pub(crate) state_bytes: Option<ByteSize>,
    pub(crate) max_requests: Option<u32>,
    pub(crate) max_transfer: Option<ByteSize>,
    pub(crate) max_packets: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlugin {
    pub(crate) path: Option<Spanned<PathBuf>>,
    /// A pinned OCI reference instead of a path.
    pub(crate) oci: Option<Spanned<String>>,
    pub(crate) series_budget: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProbe {
    pub(crate) plugin: Spanned<PluginName>,
    pub(crate) schedule: Option<CronSchedule>,
    /// Every so often, instead of a cron `schedule`.
    pub(crate) interval: Option<Spanned<HumanDuration>>,
    /// How soon a target runs again after a failed run.
    pub(crate) failing_interval: Option<Spanned<HumanDuration>>,
    /// The time zone `schedule` is read in (IANA name); UTC by default.
    pub(crate) timezone: Option<Spanned<String>>,
    pub(crate) target: Option<Spanned<String>>,
    /// Many targets, each its own run and series (`target` label).
    pub(crate) targets: Option<Spanned<Vec<Spanned<String>>>>,
    /// Prometheus `file_sd` files whose targets the probe checks.
    pub(crate) file_sd: Option<Spanned<Vec<Spanned<PathBuf>>>>,
    /// A Prometheus `http_sd` URL whose targets the probe checks.
    pub(crate) http_sd: Option<Spanned<String>>,
    /// One run per address of each target's name (`ip` label).
    pub(crate) fan_out: Option<bool>,
    /// How often `http_sd` is asked again.
    pub(crate) http_sd_refresh: Option<Spanned<HumanDuration>>,
    /// An HTTP proxy every `http` call of the probe goes through.
    pub(crate) proxy_url: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<HumanDuration>>,
    pub(crate) jitter: Option<HumanDuration>,
    pub(crate) allow: Option<Spanned<Vec<AllowRule>>>,
    #[serde(default)]
    pub(crate) labels: BTreeMap<Spanned<LabelName>, String>,
    pub(crate) config: Option<Spanned<toml::Table>>,
    pub(crate) tls: Option<RawTls>,
    pub(crate) limits: Option<RawLimits>,
    #[serde(default)]
    pub(crate) secrets: BTreeMap<String, Spanned<RawSecret>>,
}

/// Where a secret comes from: `{ env = "VAR" }` or `{ file = "path" }`. A
/// literal value is refused, and no error message ever repeats what was
/// written there: credentials never live in probes.toml.
#[derive(Debug, Deserialize)]
#[serde(try_from = "toml::Value")]
pub(crate) struct RawSecret {
    pub(crate) env: Option<String>,
    pub(crate) file: Option<PathBuf>,
}

const SECRET_FORM: &str = "write `{ env = \"VARIABLE\" }` or `{ file = \"path\" }`; a secret's value never goes in probes.toml";

impl TryFrom<toml::Value> for RawSecret {
    type Error = String;

    fn try_from(value: toml::Value) -> Result<Self, String> {
        let toml::Value::Table(table) = value else {
            return Err(SECRET_FORM.into());
        };
        let mut secret = RawSecret {
            env: None,
            file: None,
        };
        for (key, value) in table {
            match (key.as_str(), value) {
                ("env", toml::Value::String(v)) => secret.env = Some(v),
                ("file", toml::Value::String(v)) => secret.file = Some(PathBuf::from(v)),
                _ => return Err(format!("unexpected key `{key}`: {SECRET_FORM}")),
            }
        }
        Ok(secret)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub(crate) ca_file: Option<Spanned<PathBuf>>,
    pub(crate) insecure_skip_verify: Option<Spanned<bool>>,
    pub(crate) server_name: Option<String>,
    pub(crate) min_version: Option<Spanned<String>>,
    pub(crate) cert_file: Option<Spanned<PathBuf>>,
    pub(crate) key_file: Option<Spanned<PathBuf>>,
}
