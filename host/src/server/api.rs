//! `/api/v1/probes` and `/api/v1/probes/{name}/runs`: every probe and
//! target with its state and history, as JSON. The status page renders
//! the same rows ([`rows`]), so the two never disagree.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::{App, Probe, TargetRun};
use crate::config::ProbeName;
use crate::history::{Failure, RunBrief};

/// Rows a page holds unless asked otherwise, and at most.
pub(super) const PAGE: usize = 50;
const MAX_PAGE: usize = 1000;
/// Durations a row's sparkline draws.
const SPARK: usize = 20;

/// Where a target stands, from its last run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Standing {
    Down,
    Up,
    /// Not run yet (or on demand only).
    Unknown,
}

impl Standing {
    pub(super) const ALL: [Standing; 3] = [Standing::Down, Standing::Up, Standing::Unknown];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Standing::Down => "down",
            Standing::Up => "up",
            Standing::Unknown => "unknown",
        }
    }

    fn parse(s: &str) -> Option<Standing> {
        Standing::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// One probe and target, as the page and the API show it.
#[derive(Debug, Serialize)]
pub(super) struct Row {
    pub probe: String,
    pub target: String,
    /// The address a `fan_out` run reaches.
    pub ip: Option<String>,
    pub plugin: String,
    /// The schedule in use: the cron text, `every 5s while failing` (the
    /// probe's `failing_interval`), or `on demand`.
    pub schedule: String,
    pub state: Standing,
    /// When it went up or down (ISO 8601), from the kept runs.
    pub since: Option<String>,
    #[serde(skip)]
    pub since_ms: Option<u64>,
    pub last: Option<RunBrief>,
    pub uptime_1h: Option<f64>,
    pub uptime_24h: Option<f64>,
    /// The kept runs' durations, oldest first.
    pub durations_ms: Vec<f64>,
    /// Failures kept with evidence.
    pub failures: usize,
    pub series: usize,
}

/// A page of rows and the counts of everything that matched.
#[derive(Debug, Serialize)]
pub(super) struct Listing {
    /// Every probe and target, by state (before filtering).
    pub counts: HashMap<&'static str, usize>,
    /// How many matched the filter.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub probes: Vec<Row>,
}

/// What a listing asks for: `q` (text in the probe, target or plugin),
/// `state`, `offset`, `limit`.
#[derive(Debug, Default, Clone)]
pub(super) struct Filter {
    pub q: String,
    pub state: Option<Standing>,
    pub offset: usize,
    pub limit: usize,
}

impl Filter {
    pub(super) fn from_params(params: &HashMap<String, String>) -> Filter {
        let number = |k: &str| params.get(k).and_then(|v| v.trim().parse::<usize>().ok());
        Filter {
            q: params
                .get("q")
                .map(|q| q.trim().chars().take(200).collect())
                .unwrap_or_default(),
            state: params.get("state").and_then(|s| Standing::parse(s)),
            offset: number("offset").unwrap_or(0),
            limit: number("limit").unwrap_or(PAGE).clamp(1, MAX_PAGE),
        }
    }
}

pub(super) fn iso(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn standing(run: &TargetRun) -> (Standing, Option<u64>) {
    run.slot.with_history(|h| match h.state() {
        Some((true, since)) => (Standing::Up, Some(since)),
        Some((false, since)) => (Standing::Down, Some(since)),
        None => match run.slot.last() {
            Some(l) if l.success => (Standing::Up, None),
            Some(_) => (Standing::Down, None),
            None => (Standing::Unknown, None),
        },
    })
}

fn row(probe: &Probe, run: &TargetRun, state: Standing, since_ms: Option<u64>) -> Row {
    let now = SystemTime::now();
    let c = &probe.config;
    let (last, uptime_1h, uptime_24h, durations_ms, failures) = run.slot.with_history(|h| {
        (
            h.runs().last(),
            h.uptime(Duration::from_secs(3600), now),
            h.uptime(Duration::from_secs(86_400), now),
            h.durations_ms(SPARK),
            h.failures().len(),
        )
    });
    Row {
        probe: c.name.to_string(),
        target: run.target.clone(),
        ip: run.ip.map(|ip| ip.to_string()),
        plugin: c.plugin.to_string(),
        schedule: match (&c.schedule, c.failing_interval) {
            (None, _) => "on demand".to_string(),
            (Some(_), Some(every)) if run.slot.on_failing_schedule() => {
                format!("every {every:?} while failing")
            }
            (Some(s), _) => s.0.source().to_string(),
        },
        state,
        since: since_ms.map(iso),
        since_ms,
        last,
        uptime_1h,
        uptime_24h,
        durations_ms,
        failures,
        series: run.slot.series(),
    }
}

/// A target the filter kept: its state, probe, run and since when.
type Match<'a> = (Standing, &'a Arc<Probe>, &'a Arc<TargetRun>, Option<u64>);

/// The rows `filter` selects, down first, then by probe and target; only
/// the page asked for is built in full, so a page of 100,000 probes costs
/// one pass of cheap reads.
pub(super) fn rows(app: &App, filter: &Filter) -> Listing {
    let set = app.set.load_full();
    let mut counts: HashMap<&'static str, usize> =
        Standing::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    let q = filter.q.to_lowercase();
    let mut matched: Vec<Match<'_>> = Vec::new();
    for probe in set.probes.values() {
        let name_hit = q.is_empty()
            || probe.config.name.as_str().to_lowercase().contains(&q)
            || probe.config.plugin.as_str().to_lowercase().contains(&q);
        for run in &probe.runs {
            let (state, since) = standing(run);
            *counts.entry(state.as_str()).or_default() += 1;
            if filter.state.is_some_and(|s| s != state) {
                continue;
            }
            if !name_hit && !run.key.to_lowercase().contains(&q) {
                continue;
            }
            matched.push((state, probe, run, since));
        }
    }
    // Already in probe and target order: a stable sort by state keeps it.
    matched.sort_by_key(|(state, ..)| *state as u8);
    let total = matched.len();
    let probes = matched
        .into_iter()
        .skip(filter.offset)
        .take(filter.limit)
        .map(|(state, probe, run, since)| row(probe, run, state, since))
        .collect();
    Listing {
        counts,
        total,
        offset: filter.offset,
        limit: filter.limit,
        probes,
    }
}

pub(super) async fn probes(
    State(app): State<Arc<App>>,
    Query(params): Query<HashMap<String, String>>,
) -> Json<Listing> {
    Json(rows(&app, &Filter::from_params(&params)))
}

/// One target's kept runs and failures.
#[derive(Debug, Serialize)]
pub(super) struct Runs {
    pub probe: String,
    pub target: String,
    pub ip: Option<String>,
    /// Newest first.
    pub runs: Vec<RunBrief>,
    /// Newest first, with their evidence.
    #[serde(serialize_with = "shared_failures")]
    pub failures: Vec<Arc<Failure>>,
}

fn shared_failures<S: serde::Serializer>(list: &[Arc<Failure>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(list.iter().map(|f| &**f))
}

/// The runs of `name`'s target `target` (the probe's only one when not
/// given) at address `ip` (for `fan_out`), or why there are none.
pub(super) fn target_runs(
    app: &App,
    name: &str,
    target: Option<&str>,
    ip: Option<&str>,
) -> Result<Runs, String> {
    let set = app.set.load_full();
    let probe = ProbeName::try_from(name.to_string())
        .ok()
        .and_then(|n| set.probes.get(&n).cloned())
        .ok_or_else(|| format!("no probe {name:?}"))?;
    let at = |r: &&Arc<TargetRun>| ip.is_none_or(|ip| r.ip.is_some_and(|a| a.to_string() == ip));
    let run = match target {
        Some(t) => probe.runs.iter().filter(at).find(|r| r.target == t),
        None if probe.runs.len() == 1 => probe.runs.first(),
        None => None,
    }
    .ok_or_else(|| match target {
        Some(t) => format!("probe {name:?} has no target {t:?}"),
        None => format!("probe {name:?} has many targets: name one with `target=`"),
    })?;
    Ok(run.slot.with_history(|h| Runs {
        probe: probe.config.name.to_string(),
        target: run.target.clone(),
        ip: run.ip.map(|ip| ip.to_string()),
        runs: h.runs().rev().collect(),
        failures: h.failures().rev().cloned().collect(),
    }))
}

pub(super) async fn runs(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    match target_runs(
        &app,
        &name,
        params.get("target").map(String::as_str),
        params.get("ip").map(String::as_str),
    ) {
        Ok(runs) => Json(runs).into_response(),
        Err(why) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": why })),
        )
            .into_response(),
    }
}
