//! `/`: a small status page listing every probe and how its last run went.
//! Everything shown is escaped: probe messages come from plugins.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;

use crate::app::App;
use crate::exposition::unix_seconds;

fn esc(s: &str) -> String {
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

pub(super) async fn page(State(app): State<Arc<App>>) -> Html<String> {
    let set = app.set.load_full();
    let mut rows = String::new();
    for (probe, run) in set
        .probes
        .values()
        .flat_map(|p| p.runs.iter().map(move |r| (p, r)))
    {
        let c = &probe.config;
        let last = run.slot.last();
        let (result, duration, when, message) = match &last {
            Some(l) => (
                match l.trap {
                    Some(t) => format!("{} ({})", l.result.as_str(), t.as_str()),
                    None => l.result.as_str().to_string(),
                },
                format!("{:.1} ms", l.duration.as_secs_f64() * 1000.0),
                format!("{:.0}", unix_seconds(l.finished_at)),
                l.message.clone().unwrap_or_default(),
            ),
            None => (
                "not run yet".into(),
                String::new(),
                String::new(),
                String::new(),
            ),
        };
        let class = match &last {
            Some(l) if l.success => "ok",
            Some(_) => "bad",
            None => "",
        };
        let _ = writeln!(
            rows,
            "<tr class=\"{class}\"><td><a href=\"/probe?module={m}\">{m}</a></td><td>{p}</td><td>{s}</td><td>{t}</td><td>{r}</td><td>{d}</td><td>{w}</td><td>{n}</td><td>{msg}</td></tr>",
            m = esc(c.name.as_str()),
            p = esc(c.plugin.as_str()),
            s = esc(c.schedule.as_ref().map_or("on demand", |s| s.0.source())),
            t = esc(&run.target),
            r = esc(&result),
            d = esc(&duration),
            w = esc(&when),
            n = run.slot.series(),
            msg = esc(&message),
        );
    }
    Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>wasmprobe</title>\
<style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;text-align:left}}tr.ok td:nth-child(5){{color:#070}}tr.bad td:nth-child(5){{color:#b00}}</style></head>\
<body><h1>wasmprobe {version}</h1><p><a href=\"/metrics\">/metrics</a> · <a href=\"/healthz\">/healthz</a> · <a href=\"/readyz\">/readyz</a></p>\
<table><tr><th>probe</th><th>plugin</th><th>schedule</th><th>target</th><th>last result</th><th>duration</th><th>finished (unix)</th><th>series</th><th>message</th></tr>\n{rows}</table></body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
    ))
}
