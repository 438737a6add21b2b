//! What the probe decides: the batch of scrapes it asks for, and how their
//! answers turn into metrics, conditions and a verdict. Nothing here calls
//! the host, so all of it is tested natively.
//!
//! # One series per endpoint
//!
//! A selector must match exactly one series on each endpoint; more is the
//! `ambiguous` condition, and no value is taken. Comparing replicas only
//! means something series to series: summing or taking the largest of
//! several matches would hide the very disagreement this probe exists to
//! show (one pod's `psi_field_prediction_error{model="b"}` 14 times the
//! others' while `model="a"` agrees), and would compare different things
//! when the endpoints export different label sets. The message names how
//! many series matched and the first two, so the selector can be narrowed.
//!
//! # NaN and infinities
//!
//! A scraped NaN or ±Inf is reported as it is in `scrape_compare_value`:
//! the host writes `NaN`, `+Inf` and `-Inf` in both exposition formats,
//! and gauges accept any value. The cross-endpoint statistics use finite
//! values only (see [`crate::compare`]). Conditions fail closed: NaN is out
//! of any `min`/`max` range and stale for `max_age_seconds`; ±Inf compares
//! as the number it is; any non-finite value fails `max_ratio` and
//! `max_spread`, which cannot be judged with it.
//!
//! # Cardinality
//!
//! The `endpoint` label is the endpoint's URL as configured: it says which
//! exporter to look at without a lookup table, and, unlike an index, it
//! keeps naming the same exporter when the list is reordered. The `series`
//! label is the check's configured `name`, the `reason` label one of six
//! words. A config whose run could return more than 1000 samples (the
//! host's default `limits.max_series`) is refused.

use wasmprobe_sdk::family::{FamilyExt, gauge};
use wasmprobe_sdk::http::{self, ErrorKind, HttpError, Request, Response};
use wasmprobe_sdk::{MetricFamily, Outcome, Report};

use crate::compare::{self, Stats};
use crate::config::{Config, SeriesCheck};
use crate::exposition::{self, Scan};
use crate::selector::Selector;

/// The host keeps label values up to this many bytes.
const MAX_LABEL_VALUE: usize = 1024;
/// Samples a run may return under the host's default `limits.max_series`.
const MAX_SAMPLES: usize = 1000;
/// Scrapes in flight at once: enough for a replica set, few enough not to
/// burst a shared exporter host.
const MAX_CONCURRENCY: u32 = 8;
const MAX_NAME: usize = 64;
/// The classic text format first, as Prometheus asks for it.
const ACCEPT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

/// Why a series fails, the `reason` label of `scrape_compare_condition_failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// An endpoint gave no exposition to check: HTTP error, non-2xx,
    /// truncated body or an exposition the parser refused.
    ScrapeFailed,
    /// A required series is missing on an endpoint.
    Absent,
    /// The selector matched more than one series on an endpoint.
    Ambiguous,
    /// A value is below `min` or above `max`.
    OutOfRange,
    /// A timestamp value is older than `max_age_seconds`.
    Stale,
    /// Endpoints disagree beyond `max_ratio` or `max_spread`.
    Drift,
}

impl Reason {
    pub const ALL: [Reason; 6] = [
        Reason::ScrapeFailed,
        Reason::Absent,
        Reason::Ambiguous,
        Reason::OutOfRange,
        Reason::Stale,
        Reason::Drift,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ScrapeFailed => "scrape_failed",
            Reason::Absent => "absent",
            Reason::Ambiguous => "ambiguous",
            Reason::OutOfRange => "out_of_range",
            Reason::Stale => "stale",
            Reason::Drift => "drift",
        }
    }
}

/// Every family this plugin emits.
pub fn families() -> Vec<MetricFamily> {
    vec![
        gauge(
            "scrape_compare_up",
            "1 when the endpoint answered 2xx with a valid exposition (it parsed, no series twice), else 0: whether the exporter can be read at all.",
        )
        .labels(&["endpoint"]),
        gauge(
            "scrape_compare_scrape_duration_seconds",
            "How long the endpoint took to answer, seconds: a slow exporter is about to time out Prometheus's scrapes.",
        )
        .labels(&["endpoint"])
        .unit("seconds"),
        gauge(
            "scrape_compare_scrape_samples",
            "Sample lines in the endpoint's exposition: a jump means the exporter changed what it exports.",
        )
        .labels(&["endpoint"]),
        gauge(
            "scrape_compare_series_present",
            "1 when the endpoint exports the selected series, else 0: a series dashboards and alerts rely on can vanish while up stays 1.",
        )
        .labels(&["series", "endpoint"]),
        gauge(
            "scrape_compare_value",
            "The selected series' value on the endpoint, as the exporter wrote it (NaN and infinities included), to graph replicas side by side.",
        )
        .labels(&["series", "endpoint"]),
        gauge(
            "scrape_compare_spread",
            "Largest minus smallest finite value across endpoints: replicas that should agree and do not (pod drift), in the series' unit.",
        )
        .labels(&["series"]),
        gauge(
            "scrape_compare_ratio",
            "Largest over smallest finite value across endpoints (+Inf against zero, NaN across zero): how many times replicas disagree.",
        )
        .labels(&["series"]),
        gauge(
            "scrape_compare_deviation",
            "The endpoint's value minus the median across endpoints: which way and how far each replica is off.",
        )
        .labels(&["series", "endpoint"]),
        gauge(
            "scrape_compare_outlier",
            "1 for the endpoint strictly farthest from the median, 0 for the others (all 0 on a tie, as with two endpoints): the replica to look at.",
        )
        .labels(&["series", "endpoint"]),
        gauge(
            "scrape_compare_condition_failed",
            "1 when the series fails the condition named by reason (scrape_failed, absent, ambiguous, out_of_range, stale, drift), else 0: what to alert on.",
        )
        .labels(&["series", "reason"]),
    ]
}

/// Samples a run returns at most: up, duration and sample count per
/// endpoint; present, value, deviation and outlier per series and
/// endpoint; spread, ratio and six conditions per series.
pub fn max_samples(series: usize, endpoints: usize) -> usize {
    3 * endpoints + 4 * series * endpoints + 8 * series
}

/// A validated config, with the probe's endpoints resolved.
#[derive(Debug)]
pub struct Check {
    endpoints: Vec<String>,
    series: Vec<SeriesCheck>,
    selectors: Vec<Selector>,
    timeout_ms: Option<u64>,
    max_body_bytes: Option<u64>,
}

/// One endpoint's scrape, before the series are looked at.
#[derive(Debug)]
struct Scraped {
    duration: f64,
    /// The exposition, or why there is none to check.
    scan: Result<Scan, String>,
}

impl Check {
    /// Checks `config`; `target` is the probe's, used when `endpoints` is
    /// empty.
    pub fn new(config: Config, target: &str) -> Result<Check, String> {
        let endpoints = if config.endpoints.is_empty() {
            if target.trim().is_empty() {
                return Err("no endpoint: set `endpoints` or the probe's target".into());
            }
            vec![endpoint(target, "the probe's target")?]
        } else {
            let mut list: Vec<String> = Vec::new();
            for (i, url) in config.endpoints.iter().enumerate() {
                let url = endpoint(url, &format!("endpoints[{i}]"))?;
                if list.contains(&url) {
                    return Err(format!("endpoints[{i}]: {url:?} is listed twice"));
                }
                list.push(url);
            }
            list
        };
        let mut selectors = Vec::new();
        for (i, s) in config.series.iter().enumerate() {
            let key = format!("series[{i}]");
            selectors
                .push(Selector::parse(&s.selector).map_err(|e| format!("{key}.selector: {e}"))?);
            series_name(&s.name).map_err(|e| format!("{key}.name: {e}"))?;
            if config.series[..i].iter().any(|o| o.name == s.name) {
                return Err(format!("{key}.name: {:?} is used twice", s.name));
            }
            bounds(s, endpoints.len()).map_err(|e| format!("{key}: {e}"))?;
        }
        if config.timeout_ms == Some(0) {
            return Err("timeout_ms must be above 0".into());
        }
        if config.max_body_bytes == Some(0) {
            return Err("max_body_bytes must be above 0".into());
        }
        let most = max_samples(config.series.len(), endpoints.len());
        if most > MAX_SAMPLES {
            return Err(format!(
                "{} series on {} endpoints can return {most} samples, above the {MAX_SAMPLES} a run may return; split them over several probes",
                config.series.len(),
                endpoints.len()
            ));
        }
        Ok(Check {
            endpoints,
            series: config.series,
            selectors,
            timeout_ms: config.timeout_ms,
            max_body_bytes: config.max_body_bytes,
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The batch for one run (one GET per endpoint) and its concurrency.
    pub fn requests(&self) -> (Vec<Request>, u32) {
        let requests = self
            .endpoints
            .iter()
            .map(|url| {
                let mut req = http::get(url);
                req.headers.push(("accept".into(), ACCEPT.into()));
                req.timeout_ms = self.timeout_ms;
                req.max_body_bytes = self.max_body_bytes;
                req.preferred_ip_protocol = None;
                req.decompress = true;
                req
            })
            .collect::<Vec<_>>();
        let concurrency = u32::try_from(requests.len())
            .unwrap_or(MAX_CONCURRENCY)
            .clamp(1, MAX_CONCURRENCY);
        (requests, concurrency)
    }

    /// Metrics and verdict of one batch; `now` is the run's wall clock in
    /// Unix seconds (`None` when the clock is unusable: every
    /// `max_age_seconds` check then fails rather than passing unchecked).
    pub fn evaluate(&self, results: &[Result<Response, HttpError>], now: Option<f64>) -> Report {
        let mut out = Outcome::new();
        let mut notes: Vec<String> = Vec::new();
        let scraped: Vec<Scraped> = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, _)| match results.get(i) {
                Some(r) => self.scrape(r),
                None => Scraped {
                    duration: 0.0,
                    scan: Err("the host returned no result for this endpoint".into()),
                },
            })
            .collect();
        for (url, s) in self.endpoints.iter().zip(&scraped) {
            let endpoint = [("endpoint", url.as_str())];
            out.push(
                "scrape_compare_up",
                &endpoint,
                f64::from(u8::from(s.scan.is_ok())),
            );
            out.push(
                "scrape_compare_scrape_duration_seconds",
                &endpoint,
                s.duration,
            );
            match &s.scan {
                Ok(scan) => {
                    out.push(
                        "scrape_compare_scrape_samples",
                        &endpoint,
                        scan.samples as f64,
                    );
                }
                Err(e) => notes.push(format!("scrape_failed ({url}): {e}")),
            }
        }
        for (i, series) in self.series.iter().enumerate() {
            self.series_outcome(i, series, &scraped, now, &mut out, &mut notes);
        }
        let success = notes.is_empty();
        out.finish(success, (!success).then(|| notes.join("; ")))
    }

    fn scrape(&self, result: &Result<Response, HttpError>) -> Scraped {
        let resp = match result {
            Err(e) => {
                return Scraped {
                    duration: total(&e.timings),
                    scan: Err(format!("{}: {}", kind_text(e.kind), e.message)),
                };
            }
            Ok(r) => r,
        };
        let scan = if !(200..300).contains(&resp.status) {
            Err(format!("HTTP status {}", resp.status))
        } else if resp.body_truncated {
            Err(format!(
                "the exposition is longer than max_body_bytes or the probe's limits.max_body (kept {} bytes); a cut one cannot be validated",
                resp.body.len()
            ))
        } else {
            exposition::scan_bytes(&resp.body, &self.selectors).map_err(|e| e.to_string())
        };
        Scraped {
            duration: total(&resp.timings),
            scan,
        }
    }

    fn series_outcome(
        &self,
        index: usize,
        check: &SeriesCheck,
        scraped: &[Scraped],
        now: Option<f64>,
        out: &mut Outcome,
        notes: &mut Vec<String>,
    ) {
        let name = check.name.as_str();
        let mut failed = [false; Reason::ALL.len()];
        let mut fail = |reason: Reason, detail: String, notes: &mut Vec<String>| {
            failed[reason as usize] = true;
            if !detail.is_empty() {
                notes.push(format!("{} ({name}): {detail}", reason.as_str()));
            }
        };
        let mut values: Vec<Option<f64>> = vec![None; scraped.len()];
        for ((url, s), value) in self.endpoints.iter().zip(scraped).zip(&mut values) {
            let Ok(scan) = &s.scan else {
                // Already explained once, for the endpoint.
                fail(Reason::ScrapeFailed, String::new(), notes);
                continue;
            };
            let labels = [("series", name), ("endpoint", url.as_str())];
            let selected = scan.selected.get(index).cloned().unwrap_or_default();
            out.push(
                "scrape_compare_series_present",
                &labels,
                f64::from(u8::from(selected.count > 0)),
            );
            match (selected.count, selected.value) {
                (0, _) => {
                    if check.required {
                        fail(
                            Reason::Absent,
                            format!("no series matches {} at {url}", check.selector),
                            notes,
                        );
                    }
                }
                (1, Some(v)) => {
                    out.push("scrape_compare_value", &labels, v);
                    *value = Some(v);
                    if let Some(why) = out_of_range(v, check) {
                        fail(Reason::OutOfRange, format!("{why} at {url}"), notes);
                    }
                    if let Some(why) = stale(v, check, now) {
                        fail(Reason::Stale, format!("{why} at {url}"), notes);
                    }
                }
                (n, _) => fail(
                    Reason::Ambiguous,
                    format!(
                        "{n} series match {} at {url} ({}); narrow the selector to one",
                        check.selector,
                        selected.examples.join(", ")
                    ),
                    notes,
                ),
            }
        }
        let stats = compare::compare(&values);
        if let Some(stats) = &stats {
            self.emit_stats(name, stats, out);
        }
        if let Some(why) = self.drift(check, &values, stats.as_ref()) {
            fail(Reason::Drift, why, notes);
        }
        for reason in Reason::ALL {
            out.push(
                "scrape_compare_condition_failed",
                &[("series", name), ("reason", reason.as_str())],
                f64::from(u8::from(failed[reason as usize])),
            );
        }
    }

    fn emit_stats(&self, name: &str, stats: &Stats, out: &mut Outcome) {
        out.push("scrape_compare_spread", &[("series", name)], stats.spread);
        out.push("scrape_compare_ratio", &[("series", name)], stats.ratio);
        for (i, (url, deviation)) in self.endpoints.iter().zip(&stats.deviations).enumerate() {
            if let Some(d) = deviation {
                let labels = [("series", name), ("endpoint", url.as_str())];
                out.push("scrape_compare_deviation", &labels, *d);
                out.push(
                    "scrape_compare_outlier",
                    &labels,
                    f64::from(u8::from(stats.outlier == Some(i))),
                );
            }
        }
    }

    /// Why the endpoints disagree too much, if they do.
    fn drift(
        &self,
        check: &SeriesCheck,
        values: &[Option<f64>],
        stats: Option<&Stats>,
    ) -> Option<String> {
        if check.max_ratio.is_none() && check.max_spread.is_none() {
            return None;
        }
        let odd = self
            .endpoints
            .iter()
            .zip(values)
            .find_map(|(url, v)| v.filter(|v| !v.is_finite()).map(|v| (url, v)));
        if let Some((url, v)) = odd {
            return Some(format!("{} at {url} cannot be compared", number(v)));
        }
        // Fewer than two values: `absent` or `scrape_failed` says why.
        let stats = stats?;
        let at = |x: f64| {
            self.endpoints
                .iter()
                .zip(values)
                .find(|(_, v)| **v == Some(x))
                .map_or("?", |(url, _)| url.as_str())
        };
        let range = format!(
            "min {} at {}, max {} at {}",
            number(stats.min),
            at(stats.min),
            number(stats.max),
            at(stats.max)
        );
        let outlier = stats
            .outlier
            .and_then(|i| self.endpoints.get(i))
            .map_or(String::new(), |url| format!("; outlier {url}"));
        let mut why = Vec::new();
        if let Some(bound) = check.max_ratio {
            if stats.ratio.is_nan() {
                why.push(format!(
                    "values on both sides of zero have no ratio (max_ratio {}; use max_spread for such a series)",
                    number(bound)
                ));
            } else if stats.ratio > bound {
                why.push(format!(
                    "ratio {} is above max_ratio {}",
                    number(stats.ratio),
                    number(bound)
                ));
            }
        }
        if let Some(bound) = check.max_spread
            && stats.spread > bound
        {
            why.push(format!(
                "spread {} is above max_spread {}",
                number(stats.spread),
                number(bound)
            ));
        }
        (!why.is_empty()).then(|| format!("{} ({range}{outlier})", why.join(", ")))
    }
}

/// An endpoint URL as the `endpoint` label will carry it.
fn endpoint(url: &str, key: &str) -> Result<String, String> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
    else {
        return Err(format!("{key}: {url:?} is not an http:// or https:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(format!("{key}: {url:?} has no host"));
    }
    if authority.contains('@') {
        return Err(format!(
            "{key}: {url:?} carries user info, which the endpoint label would export; remove it"
        ));
    }
    if url.len() > MAX_LABEL_VALUE {
        return Err(format!(
            "{key}: the URL is {} bytes; the endpoint label keeps at most {MAX_LABEL_VALUE}",
            url.len()
        ));
    }
    Ok(url.to_string())
}

fn series_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be 1 to {MAX_NAME} of A-Z a-z 0-9 _ . : - (it is the series label)"
        ))
    }
}

fn bounds(s: &SeriesCheck, endpoints: usize) -> Result<(), String> {
    let finite = |key: &str, v: Option<f64>| match v {
        Some(v) if !v.is_finite() => Err(format!("{key} must be a finite number")),
        _ => Ok(()),
    };
    finite("min", s.min)?;
    finite("max", s.max)?;
    finite("max_ratio", s.max_ratio)?;
    finite("max_spread", s.max_spread)?;
    finite("max_age_seconds", s.max_age_seconds)?;
    if let (Some(min), Some(max)) = (s.min, s.max)
        && min > max
    {
        return Err(format!("min {min} is above max {max}: no value could pass"));
    }
    if let Some(r) = s.max_ratio
        && r < 1.0
    {
        return Err(format!(
            "max_ratio {r} is below 1, the smallest ratio there is"
        ));
    }
    if let Some(sp) = s.max_spread
        && sp < 0.0
    {
        return Err(format!("max_spread {sp} is negative"));
    }
    if let Some(age) = s.max_age_seconds
        && age <= 0.0
    {
        return Err(format!("max_age_seconds {age} must be above 0"));
    }
    if (s.max_ratio.is_some() || s.max_spread.is_some()) && endpoints < 2 {
        return Err(
            "max_ratio and max_spread compare endpoints: list at least two in `endpoints`".into(),
        );
    }
    Ok(())
}

fn out_of_range(v: f64, check: &SeriesCheck) -> Option<String> {
    if check.min.is_none() && check.max.is_none() {
        return None;
    }
    if v.is_nan() {
        return Some("value NaN is not a number to bound".into());
    }
    if let Some(min) = check.min
        && v < min
    {
        return Some(format!("value {} is below min {}", number(v), number(min)));
    }
    if let Some(max) = check.max
        && v > max
    {
        return Some(format!("value {} is above max {}", number(v), number(max)));
    }
    None
}

fn stale(v: f64, check: &SeriesCheck, now: Option<f64>) -> Option<String> {
    let max_age = check.max_age_seconds?;
    let Some(now) = now else {
        return Some("the run has no wall clock to age the timestamp against".into());
    };
    let age = now - v;
    if age <= max_age {
        return None;
    }
    Some(if age.is_nan() {
        format!("timestamp {} is not a time", number(v))
    } else {
        format!(
            "timestamp {} is {} s old (max_age_seconds {})",
            number(v),
            number(age.round()),
            number(max_age)
        )
    })
}

/// A number as the exposition writes it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

fn total(t: &http::PhaseTimings) -> f64 {
    t.resolve + t.connect + t.tls + t.processing + t.transfer
}

fn kind_text(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Denied => "denied",
        ErrorKind::InvalidRequest => "invalid request",
        ErrorKind::Dns => "dns",
        ErrorKind::Connect => "connect",
        ErrorKind::Tls => "tls",
        ErrorKind::Timeout => "timeout",
        ErrorKind::TooManyRedirects => "too many redirects",
        ErrorKind::Protocol => "protocol",
    }
}

#[cfg(test)]
mod tests;
