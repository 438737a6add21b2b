//! Which metric and label names are valid, and which belong to the host:
//! the rules `probes.toml` (labels) and the exposition (families) share.

/// Longest label value kept, in bytes: a plugin's sample with a longer
/// one is dropped, and a discovered target (or a label of its group) that
/// long is refused.
pub const MAX_LABEL_VALUE: usize = 1024;

/// Labels the host sets on every series; plugins and configs may not.
pub const RESERVED_LABELS: &[&str] = &["probe", "le", "quantile"];

/// Every label name the engine writes on a series: `probe`, `target` (of a
/// probe with many targets), the package's
/// `package` and `team`, the labels of the host's per-probe families
/// (`result`, `reason`), of its engine-wide families, and `shard`. A label
/// of the same name from a config or a package would give a series two
/// labels of one name, and Prometheus drops such a scrape whole, for every
/// team: no config or package may set one. (A unit test in
/// `exposition::self_metrics` keeps this list complete.)
pub const ENGINE_LABELS: &[&str] = &[
    "probe",
    "target",
    "ip",
    "le",
    "quantile",
    "package",
    "team",
    "shard",
    "result",
    "reason",
    "scheduled",
    "plugin",
    "family",
    "mode",
    "version",
    "wasmtime",
    "revision",
    "capability",
    "direction",
];

/// Labels the host sets on a package's probes: a plugin may not declare
/// them, so no plugin can wear a package's or team's name.
pub const PACKAGE_LABELS: &[&str] = &["package", "team"];

/// Families the host emits for every probe.
pub const HOST_PROBE_FAMILIES: &[&str] = &["probe_success", "probe_duration_seconds"];

/// The `process_*` families the host writes for its own process, as Go
/// exporters do: a plugin declaring one would share or clash with them.
pub const HOST_PROCESS_FAMILIES: &[&str] = &[
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
];

/// Prefix of the host's own metrics.
pub const SELF_PREFIX: &str = "wasmprobe_";

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A name a plugin may not declare: the host's own families, or a name that
/// would collide with a histogram's or counter's generated series.
pub fn is_reserved_metric_name(s: &str) -> bool {
    s.starts_with(SELF_PREFIX)
        || HOST_PROBE_FAMILIES.contains(&s)
        || HOST_PROCESS_FAMILIES.contains(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_metric_name("probe_http_status_code"));
        assert!(is_valid_metric_name("a:b_c"));
        assert!(!is_valid_metric_name("1abc"));
        assert!(!is_valid_metric_name("a-b"));
        assert!(!is_valid_metric_name(""));
        assert!(is_valid_label_name("_x1"));
        assert!(!is_valid_label_name("a:b"));
        assert!(!is_valid_label_name("é"));
        assert!(is_reserved_metric_name("wasmprobe_runs_total"));
        assert!(is_reserved_metric_name("probe_success"));
        assert!(!is_reserved_metric_name("probe_http_status_code"));
        assert!(is_reserved_metric_name("process_open_fds"));
        assert!(!is_reserved_metric_name("process_count"));
    }
}
