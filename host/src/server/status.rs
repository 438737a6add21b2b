//! `/`: the status page, what a person opens during an incident. Counts by
//! state at the top, search and filter (a plain GET form), pages of rows
//! (failing first), and per probe and target: how long it has been up or
//! down, uptime over the last hour and day, a latency sparkline and a link
//! to the last failures' evidence (`/status/runs`).
//!
//! Served whole by the server, so it works without JavaScript; a small
//! script (embedded, nothing is fetched from elsewhere) refreshes the rows
//! in place and keeps relative times current. Everything shown is
//! escaped: probe names, targets and messages come from configs, files
//! and plugins.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::api::{self, Filter, Row, Standing, iso};
use crate::app::App;
use crate::history::RunBrief;

const STYLE: &str = include_str!("status/page.css");
const SCRIPT: &str = include_str!("status/page.js");

/// Text safe in HTML content and in quoted attributes.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query string from pairs, each part percent-encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

/// "12 min", "3 h 5 min", "2 d 4 h": how long ago `ms` was.
fn ago(ms: u64, now_ms: u64) -> String {
    let s = now_ms.saturating_sub(ms) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// A `<time>` with the absolute time (ISO 8601) as its value and title,
/// showing how long ago; the script keeps the text current.
fn time_ago(ms: u64, now_ms: u64) -> String {
    let iso = iso(ms);
    format!(
        "<time datetime=\"{iso}\" title=\"{iso}\" data-ms=\"{ms}\">{}</time>",
        ago(ms, now_ms)
    )
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{:.1} %", v * 100.0))
}

/// `failure`, or `trap (unreachable)`.
fn result_text(r: &RunBrief) -> String {
    match r.trap {
        Some(t) => format!("{} ({t})", r.result),
        None => r.result.to_string(),
    }
}

/// An inline SVG line of the last durations (no script needed).
fn sparkline(durations: &[f64]) -> String {
    if durations.len() < 2 {
        return String::new();
    }
    let max = durations.iter().copied().fold(f64::MIN_POSITIVE, f64::max);
    let step = 80.0 / (durations.len() - 1) as f64;
    let points: Vec<String> = durations
        .iter()
        .enumerate()
        .map(|(i, d)| format!("{:.1},{:.1}", i as f64 * step, 18.0 - d / max * 16.0))
        .collect();
    format!(
        "<svg class=\"spark\" width=\"80\" height=\"20\" viewBox=\"0 0 80 20\" role=\"img\"><title>last {} durations, longest {:.1} ms</title><polyline fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        durations.len(),
        max,
        points.join(" ")
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn row_html(out: &mut String, r: &Row, now: u64) {
    let state = r.state.as_str();
    let since = match (r.state, r.since_ms) {
        (Standing::Down, Some(ms)) => format!("failing for {}", time_ago(ms, now)),
        (Standing::Up, Some(ms)) => format!("up for {}", time_ago(ms, now)),
        (Standing::Unknown, _) => "not run yet".to_string(),
        _ => String::new(),
    };
    let (last, message) = match &r.last {
        Some(l) => (
            format!(
                "{} · {:.1} ms · {}",
                esc(&result_text(l)),
                l.duration_ms,
                time_ago(l.finished_at_ms, now)
            ),
            esc(l.message.as_deref().unwrap_or("")),
        ),
        None => (String::new(), String::new()),
    };
    let ip = r.ip.as_deref().unwrap_or("");
    let link = esc(&query(&[
        ("probe", &r.probe),
        ("target", &r.target),
        ("ip", ip),
    ]));
    let evidence = if r.failures > 0 {
        format!(
            "<a href=\"/status/runs?{link}\">evidence ({})</a>",
            r.failures
        )
    } else {
        format!("<a href=\"/status/runs?{link}\">runs</a>")
    };
    let address = if ip.is_empty() {
        String::new()
    } else {
        format!("<br><small>{}</small>", esc(ip))
    };
    let _ = writeln!(
        out,
        "<tr class=\"{state}\"><td><span class=\"badge {state}\">{state}</span></td><td>{since}</td><td><b>{probe}</b><br><small>{plugin} · {schedule}</small></td><td class=\"target\">{target}{address}</td><td>{u1}</td><td>{u24}</td><td>{spark}</td><td>{last}<br><small class=\"msg\">{message}</small></td><td>{evidence}</td></tr>",
        probe = esc(&r.probe),
        plugin = esc(&r.plugin),
        schedule = esc(&r.schedule),
        target = esc(&r.target),
        u1 = percent(r.uptime_1h),
        u24 = percent(r.uptime_24h),
        spark = sparkline(&r.durations_ms),
    );
}

pub(super) async fn page(
    State(app): State<Arc<App>>,
    Query(params): Query<HashMap<String, String>>,
) -> Html<String> {
    let filter = Filter::from_params(&params);
    let listing = api::rows(&app, &filter);
    let now = now_ms();
    let all: usize = listing.counts.values().sum();
    let mut counts = String::new();
    for s in Standing::ALL {
        let n = listing.counts.get(s.as_str()).copied().unwrap_or(0);
        let _ = write!(
            counts,
            "<a class=\"count {s}\" href=\"/?{q}\"><span>{n}</span> {s}</a>",
            s = s.as_str(),
            q = esc(&query(&[("state", s.as_str()), ("q", &filter.q)])),
        );
    }
    let mut rows = String::new();
    for r in &listing.probes {
        row_html(&mut rows, r, now);
    }
    if listing.probes.is_empty() {
        rows.push_str("<tr><td colspan=\"9\">nothing matches</td></tr>\n");
    }
    let state = filter.state.map_or("", Standing::as_str);
    let options: String = std::iter::once(("", "any state"))
        .chain(Standing::ALL.iter().map(|s| (s.as_str(), s.as_str())))
        .map(|(v, label)| {
            let selected = if v == state { " selected" } else { "" };
            format!("<option value=\"{v}\"{selected}>{label}</option>")
        })
        .collect();
    let page_link = |offset: usize, label: &str| {
        format!(
            "<a href=\"/?{}\">{label}</a>",
            esc(&query(&[
                ("q", &filter.q),
                ("state", state),
                ("offset", &offset.to_string()),
                ("limit", &filter.limit.to_string()),
            ]))
        )
    };
    let first = if listing.total == 0 {
        0
    } else {
        filter.offset + 1
    };
    let last = (filter.offset + listing.probes.len()).min(listing.total);
    let mut pages = format!("{first}–{last} of {}", listing.total);
    if filter.offset > 0 {
        pages = format!(
            "{} {pages}",
            page_link(filter.offset.saturating_sub(filter.limit), "‹ previous")
        );
    }
    if last < listing.total {
        pages = format!("{pages} {}", page_link(last, "next ›"));
    }
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>wasmprobe: {down} down</title><style>{STYLE}</style></head>\n<body><header><h1>wasmprobe <small>{version}</small></h1><nav><a href=\"/metrics\">/metrics</a> <a href=\"/api/v1/probes\">/api/v1/probes</a> <a href=\"/healthz\">/healthz</a></nav></header>\n<main id=\"main\"><section class=\"counts\"><a class=\"count all\" href=\"/\"><span>{all}</span> all</a>{counts}</section>\n<form method=\"get\" action=\"/\"><input type=\"search\" name=\"q\" value=\"{q}\" placeholder=\"probe, target or plugin\" aria-label=\"search\"><select name=\"state\" aria-label=\"state\">{options}</select><input type=\"hidden\" name=\"limit\" value=\"{limit}\"><button type=\"submit\">filter</button></form>\n<p class=\"pages\">{pages} · <span id=\"updated\" data-ms=\"{now}\">as of <time datetime=\"{now_iso}\">{now_iso}</time></span></p>\n<table><thead><tr><th>state</th><th>since</th><th>probe</th><th>target</th><th>uptime 1 h</th><th>uptime 24 h</th><th>latency</th><th>last run</th><th></th></tr></thead>\n<tbody>\n{rows}</tbody></table></main>\n<script>{SCRIPT}</script></body></html>\n",
        down = listing.counts.get("down").copied().unwrap_or(0),
        version = env!("CARGO_PKG_VERSION"),
        q = esc(&filter.q),
        limit = filter.limit,
        now_iso = iso(now),
    ))
}

/// `/status/runs?probe=&target=`: one target's kept runs and its last
/// failures with their evidence (host calls and log lines).
pub(super) async fn runs(
    State(app): State<Arc<App>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let name = params.get("probe").map_or("", String::as_str);
    let runs = match api::target_runs(
        &app,
        name,
        params.get("target").map(String::as_str),
        params.get("ip").map(String::as_str),
    ) {
        Ok(r) => r,
        Err(why) => {
            return (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                why + "\n",
            )
                .into_response();
        }
    };
    let now = now_ms();
    let mut body = String::new();
    let _ = write!(
        body,
        "<p><a href=\"/\">‹ all probes</a></p><h2>{} <small class=\"target\">{} {}</small></h2>",
        esc(&runs.probe),
        esc(&runs.target),
        esc(runs.ip.as_deref().unwrap_or(""))
    );
    body.push_str("<h3>Last failures</h3>");
    if runs.failures.is_empty() {
        body.push_str("<p>none kept</p>");
    }
    for (i, f) in runs.failures.iter().enumerate() {
        let open = if i == 0 { " open" } else { "" };
        let _ = write!(
            body,
            "<details class=\"failure\"{open}><summary><span class=\"badge down\">{}</span> {} · {:.1} ms · {}</summary>",
            esc(&result_text(&f.run)),
            time_ago(f.run.finished_at_ms, now),
            f.run.duration_ms,
            esc(f.run.message.as_deref().unwrap_or(""))
        );
        let calls = f.calls();
        let _ = write!(body, "<h4>Host calls ({})</h4>", calls.len());
        for call in &calls {
            let name = call
                .get("call")
                .and_then(|c| c.as_str())
                .unwrap_or("?")
                .replacen('-', ".", 1);
            let text = serde_json::to_string_pretty(call).unwrap_or_default();
            let _ = write!(
                body,
                "<h5>{}</h5><pre class=\"call\">{}</pre>",
                esc(&name),
                esc(&text)
            );
        }
        if f.calls_left_out > 0 {
            let _ = write!(
                body,
                "<p>{} more calls left out ([history] evidence_bytes)</p>",
                f.calls_left_out
            );
        }
        let _ = write!(body, "<h4>Plugin log ({} lines)</h4><pre>", f.logs.len());
        for l in &f.logs {
            let _ = writeln!(body, "{:5} {}", esc(l.level), esc(&l.message));
        }
        body.push_str("</pre></details>");
    }
    body.push_str("<h3>Last runs</h3><table><thead><tr><th>finished</th><th>result</th><th>duration</th><th>message</th></tr></thead><tbody>");
    for r in &runs.runs {
        let class = if r.success { "up" } else { "down" };
        let _ = write!(
            body,
            "<tr class=\"{class}\"><td>{}</td><td><span class=\"badge {class}\">{}</span></td><td>{:.1} ms</td><td>{}</td></tr>",
            time_ago(r.finished_at_ms, now),
            esc(&result_text(r)),
            r.duration_ms,
            esc(r.message.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</tbody></table>");
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>wasmprobe: {}</title><style>{STYLE}</style></head>\n<body><header><h1>wasmprobe</h1></header><main>{body}</main><script>{SCRIPT}</script></body></html>\n",
        esc(&runs.probe)
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_a_person_says_them() {
        let now = 100_000_000;
        assert_eq!(ago(now - 5_000, now), "5 s");
        assert_eq!(ago(now - 12 * 60_000, now), "12 min");
        assert_eq!(ago(now - (3 * 3600 + 5 * 60) * 1000, now), "3 h 5 min");
        assert!(time_ago(0, now).contains("datetime=\"1970-01-01T00:00:00Z\""));
    }

    #[test]
    fn markup_in_names_and_queries_is_escaped() {
        assert_eq!(esc("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
        assert_eq!(
            query(&[("probe", "a&b"), ("target", "http://x/?q=<1>")]),
            "probe=a%26b&target=http%3A%2F%2Fx%2F%3Fq%3D%3C1%3E"
        );
    }

    #[test]
    fn a_sparkline_spans_its_box() {
        let svg = sparkline(&[1.0, 2.0, 4.0]);
        assert!(
            svg.contains("points=\"0.0,14.0 40.0,10.0 80.0,2.0\""),
            "{svg}"
        );
        assert!(sparkline(&[1.0]).is_empty());
    }
}
