//! `/probe?module=NAME&target=T`: run the configured probe NAME once
//! against T and return only that run's metrics, as blackbox_exporter does.
//!
//! The target must be inside the probe's allow-list (403 otherwise), so
//! this endpoint cannot be turned into a proxy to arbitrary hosts; a
//! package's probes answer only when the operator opened them
//! (`on_demand` in the package's grant), since the caller would choose
//! where their credentials go. Runs in
//! flight are bounded; past the bound the answer is an immediate 503. The
//! run executes on the probe runtime and does not touch the scheduled
//! probe's state or series.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::{App, OnDemandError};
use crate::config::ProbeName;
use crate::exposition::Format;

fn plain(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

/// What the run leaves Prometheus to receive the answer in, as
/// blackbox_exporter's `--timeout-offset` does.
const SCRAPE_TIMEOUT_OFFSET: f64 = 0.5;

/// The run's timeout under Prometheus's scrape timeout
/// (`X-Prometheus-Scrape-Timeout-Seconds`, less the offset), so a hung
/// target ends the run in time to answer `probe_success 0` rather than
/// the scrape failing as `up 0`. A probe's own shorter timeout stands; a
/// header too small to leave room is ignored.
fn scrape_budget(headers: &HeaderMap) -> Option<std::time::Duration> {
    let secs: f64 = headers
        .get("x-prometheus-scrape-timeout-seconds")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let left = secs - SCRAPE_TIMEOUT_OFFSET;
    (left.is_finite() && left > 0.0).then(|| std::time::Duration::from_secs_f64(left))
}

pub(super) async fn probe(
    State(app): State<Arc<App>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let set = app.set.load_full();
    let default = set.default_module.as_ref().map(|m| m.as_str().to_string());
    let Some(module) = params.get("module").or(default.as_ref()) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "missing `module` parameter (and no `[server] default_module`)".into(),
        );
    };
    let probe = ProbeName::try_from(module.clone())
        .ok()
        .and_then(|n| set.probes.get(&n).cloned());
    let Some(probe) = probe else {
        let known: Vec<&str> = set.probes.keys().map(ProbeName::as_str).collect();
        return plain(
            StatusCode::BAD_REQUEST,
            format!("unknown module {module:?} (known: {})", known.join(", ")),
        );
    };
    let target = match probe.endpoint_target(params.get("target").map(String::as_str)) {
        Ok(t) => t,
        Err(e @ OnDemandError::NoTarget(_)) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("missing `target` parameter: {e}"),
            );
        }
        Err(e @ (OnDemandError::Denied(..) | OnDemandError::NotOnDemand(_))) => {
            return plain(StatusCode::FORBIDDEN, e.to_string());
        }
    };
    let Ok(permit) = app.ondemand_slots.clone().try_acquire_owned() else {
        app.exposition.global.ondemand_refused_busy();
        let mut r = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many /probe requests in flight; retry later".into(),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };

    // blackbox_exporter's `hostname`: a virtual host behind the target's
    // address, presented as `Host` and as the TLS server name.
    let hostname = params.get("hostname").filter(|h| !h.is_empty()).cloned();
    if let Some(h) = &hostname
        && (h.len() > 253 || rustls_pki_types::ServerName::try_from(h.as_str()).is_err())
    {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("`hostname` {h:?} is not a DNS name or an address"),
        );
    }
    // blackbox_exporter's `debug=true`: the run's logs, host calls and
    // metrics as text, for a person.
    let debug = params.get("debug").is_some_and(|v| v == "true");
    let format = if debug {
        Format::Classic
    } else {
        Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
    };
    let budget = scrape_budget(&headers);
    let tape = debug.then(|| Arc::new(crate::hostcalls::tape::Tape::evidence_recorder()));
    let run = {
        let app = app.clone();
        let probe = probe.clone();
        let target = target.clone();
        let tape = tape.clone();
        app.probe_runtime.clone().spawn(async move {
            let how = crate::app::OnDemandRun {
                format,
                timeout: budget,
                hostname: hostname.as_deref(),
                tape,
            };
            let done = probe.run_on_demand(&app.exposition, &target, how).await;
            drop(permit);
            done
        })
    };
    let Ok(done) = run.await else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "probe run was cancelled".into(),
        );
    };
    app.exposition
        .global
        .ondemand_run_finished(done.record.result);
    if let Some(tape) = tape {
        // Every call, whether the run failed or not.
        let calls = tape.evidence();
        return plain(StatusCode::OK, debug_text(&probe, &target, &done, &calls));
    }
    ([(header::CONTENT_TYPE, format.content_type())], done.text).into_response()
}

/// `/probe?debug=true`: what the run logged and did, what it would have
/// returned, and the module it ran, in blackbox_exporter's order. Secrets
/// are redacted in the logs and calls as in the history.
fn debug_text(
    probe: &crate::app::Probe,
    target: &str,
    done: &crate::app::OnDemand,
    calls: &[serde_json::Value],
) -> String {
    use std::fmt::Write;
    let r = &done.record;
    let mut out = String::from("Logs for the probe:\n");
    for line in &r.logs {
        let _ = writeln!(out, "level={} msg={:?}", line.level, line.message);
    }
    let _ = writeln!(
        out,
        "level=info msg=\"run finished\" result={} success={} duration_seconds={:.6} message={:?}",
        r.result.as_str(),
        r.success,
        r.duration.as_secs_f64(),
        r.message.as_deref().unwrap_or("")
    );
    let _ = writeln!(out, "\n\nHost calls of the run ({}):", calls.len());
    for (i, call) in calls.iter().enumerate() {
        let name = call
            .get("call")
            .and_then(|c| c.as_str())
            .unwrap_or("?")
            .replacen('-', ".", 1);
        let body = serde_json::to_string_pretty(call).unwrap_or_default();
        let _ = writeln!(out, "{}. {name}\n{body}", i + 1);
    }
    let _ = writeln!(
        out,
        "\n\nMetrics that would have been returned:\n{}",
        done.text
    );
    let c = &probe.config;
    let _ = writeln!(
        out,
        "\nModule configuration:\nprobe = {:?}\nplugin = {:?}\ntarget = {:?}\ntimeout = {:?}\nconfig = {}",
        c.name.as_str(),
        c.plugin.as_str(),
        target,
        c.limits.timeout,
        probe.config_json
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert("x-prometheus-scrape-timeout-seconds", v);
        }
        h
    }

    #[test]
    fn the_scrape_timeout_leaves_half_a_second_for_the_answer() {
        assert_eq!(
            scrape_budget(&with("10")),
            Some(std::time::Duration::from_millis(9500))
        );
        assert_eq!(
            scrape_budget(&with(" 2.5 ")),
            Some(std::time::Duration::from_secs(2))
        );
        assert_eq!(scrape_budget(&with("0.4")), None);
        assert_eq!(scrape_budget(&with("NaN")), None);
        assert_eq!(scrape_budget(&with("soon")), None);
        assert_eq!(scrape_budget(&HeaderMap::new()), None);
    }
}
