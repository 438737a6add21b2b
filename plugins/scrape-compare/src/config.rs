//! The probe's `config` table, as written in probes.toml. Nothing here is
//! checked beyond its shape; [`crate::check::Check::new`] refuses values
//! that cannot work, each with the key that holds them.

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Exporter URLs scraped in one batch and compared, e.g. one per
    /// replica (`http://127.0.0.1:9101/metrics`). Empty: the probe's target
    /// alone. Each URL becomes the `endpoint` label of the series that
    /// describe it, so it may not carry credentials.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The series to check on every endpoint. None: the probe only checks
    /// that each endpoint answers with an exposition that parses.
    #[serde(default)]
    pub series: Vec<SeriesCheck>,
    /// Longest wait for one endpoint, in milliseconds; the probe's timeout
    /// caps it.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Body bytes read from one endpoint; the probe's `limits.max_body`
    /// caps it. A longer exposition fails as `scrape_failed`, since a
    /// truncated one cannot be validated.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
}

/// One series and the conditions its values must meet.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesCheck {
    /// A PromQL series selector: `name{label="v",other=~"re",x!="y",y!~"re"}`.
    /// Regular expressions match the whole value, as in PromQL. It must
    /// select exactly one series per endpoint; more is `ambiguous`.
    pub selector: String,
    /// Short name of the check: the `series` label of its metrics
    /// (`[A-Za-z0-9_.:-]`, at most 64 characters, unique in the probe).
    pub name: String,
    /// Lowest value allowed on any endpoint (`out_of_range` below it).
    #[serde(default)]
    pub min: Option<f64>,
    /// Highest value allowed on any endpoint (`out_of_range` above it).
    #[serde(default)]
    pub max: Option<f64>,
    /// Largest max/min across endpoints before the series counts as
    /// drifting (`drift`); at least 1. Needs two endpoints.
    #[serde(default)]
    pub max_ratio: Option<f64>,
    /// Largest max − min across endpoints before the series counts as
    /// drifting (`drift`). Needs two endpoints.
    #[serde(default)]
    pub max_spread: Option<f64>,
    /// The series holds a Unix time in seconds (a `*_timestamp_seconds`
    /// gauge); it is `stale` when older than this many seconds at the run.
    #[serde(default)]
    pub max_age_seconds: Option<f64>,
    /// A missing series fails the probe (`absent`). Set false for a series
    /// that may come and go; its other conditions still apply where it is.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}
