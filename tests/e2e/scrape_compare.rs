//! The scrape-compare plugin against local exporters serving known
//! expositions: two that agree, one drifting, one missing a series, one
//! malformed, one of 100,000 lines, and hostile ones (a 1 MiB label value,
//! escapes, NaN and Inf, duplicate series, binary garbage). Derived numbers
//! are asserted exactly; nothing hostile crashes the run or the scrape.

use std::time::Duration;

use axum::Router;
use axum::routing::get;

use crate::harness::{Engine, Scrape, promtool_check};
use crate::targets::{bind, rt};

const WAIT: Duration = Duration::from_secs(90);

/// Serves `body` at `/metrics`; returns the URL.
fn exporter(body: String) -> String {
    let (listener, addr) = bind();
    let router = Router::new().route("/metrics", get(move || std::future::ready(body.clone())));
    rt().spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}/metrics")
}

fn gauges(error: Option<f64>, density: Option<f64>) -> String {
    let mut out = String::from("# TYPE field_error gauge\n");
    if let Some(e) = error {
        out.push_str(&format!("field_error{{pod=\"x\"}} {e}\n"));
    }
    out.push_str("# TYPE field_density gauge\n");
    if let Some(d) = density {
        out.push_str(&format!("field_density {d}\n"));
    }
    out
}

fn origin(url: &str) -> String {
    url.trim_end_matches("/metrics").to_string()
}

fn probe(name: &str, endpoints: &[&String], series: &str) -> String {
    let allow: Vec<String> = endpoints
        .iter()
        .map(|u| format!("{:?}", origin(u)))
        .collect();
    let list: Vec<String> = endpoints.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[probes.{name}]\nplugin = \"scrape-compare\"\nschedule = \"* * * * * *\"\nallow = [{}]\n[probes.{name}.config]\nendpoints = [{}]\n{series}\n",
        allow.join(", "),
        list.join(", ")
    )
}

fn check(probe: &str, name: &str, selector: &str, bounds: &str) -> String {
    format!(
        "[[probes.{probe}.config.series]]\nname = \"{name}\"\nselector = '{selector}'\n{bounds}\n"
    )
}

#[test]
fn drift_absence_and_malformed_expositions_are_told_apart() {
    let a = exporter(gauges(Some(0.021), Some(0.81)));
    let b = exporter(gauges(Some(0.022), Some(0.80)));
    let drifting = exporter(gauges(Some(0.301), Some(0.82)));
    let missing = exporter(gauges(Some(0.020), None));
    let malformed = exporter("field_error{pod=\"x\" 0.02\n".into());
    let e = Engine::new()
        .raw(&probe(
            "drift",
            &[&a, &b, &drifting],
            &check("drift", "error", "field_error{pod=\"x\"}", "max_ratio = 3"),
        ))
        .raw(&probe(
            "absent",
            &[&a, &b, &missing],
            &check("absent", "density", "field_density", ""),
        ))
        .raw(&probe(
            "broken",
            &[&a, &malformed],
            &check("broken", "error", "field_error", ""),
        ))
        .raw(&probe(
            "agree",
            &[&a, &b],
            &(check("agree", "error", "field_error", "max_ratio = 1.1")
                + &check("agree", "density", "field_density", "min = 0.5\nmax = 1")),
        ))
        .start();
    let probes = ["drift", "absent", "broken", "agree"];
    let s = e.wait_for("a run of each", WAIT, |s| {
        probes
            .iter()
            .all(|p| s.get("probe_success", &[("probe", p)]).is_some())
    });
    let v = |name: &str, labels: &[(&str, &str)]| s.value(name, labels);
    let failed = |p: &str, series: &str, reason: &str| {
        s.get(
            "scrape_compare_condition_failed",
            &[("probe", p), ("series", series), ("reason", reason)],
        )
    };
    // Drift: 0.021, 0.022, 0.301.
    let d = [("probe", "drift"), ("series", "error")];
    assert_eq!(v("probe_success", &[("probe", "drift")]), 0.0, "{}", s.text);
    assert_eq!(failed("drift", "error", "drift"), Some(1.0));
    assert!((v("scrape_compare_ratio", &d) - 0.301 / 0.021).abs() < 1e-9);
    assert!((v("scrape_compare_spread", &d) - 0.28).abs() < 1e-9);
    fn at<'a>(d: &[(&'a str, &'a str); 2], url: &'a str) -> [(&'a str, &'a str); 3] {
        [d[0], d[1], ("endpoint", url)]
    }
    assert!((v("scrape_compare_deviation", &at(&d, &drifting)) - 0.279).abs() < 1e-9);
    assert!((v("scrape_compare_deviation", &at(&d, &a)) + 0.001).abs() < 1e-9);
    assert_eq!(v("scrape_compare_deviation", &at(&d, &b)), 0.0);
    assert_eq!(v("scrape_compare_outlier", &at(&d, &drifting)), 1.0);
    assert_eq!(v("scrape_compare_outlier", &at(&d, &a)), 0.0);
    // Absent on one endpoint.
    assert_eq!(v("probe_success", &[("probe", "absent")]), 0.0);
    assert_eq!(failed("absent", "density", "absent"), Some(1.0));
    assert_eq!(
        v(
            "scrape_compare_series_present",
            &[
                ("probe", "absent"),
                ("series", "density"),
                ("endpoint", &missing)
            ]
        ),
        0.0
    );
    // Malformed: that endpoint failed to scrape, the other did not.
    assert_eq!(v("probe_success", &[("probe", "broken")]), 0.0);
    assert_eq!(
        v(
            "scrape_compare_up",
            &[("probe", "broken"), ("endpoint", &malformed)]
        ),
        0.0
    );
    assert_eq!(
        v(
            "scrape_compare_up",
            &[("probe", "broken"), ("endpoint", &a)]
        ),
        1.0
    );
    assert_eq!(failed("broken", "error", "scrape_failed"), Some(1.0));
    // Agreement passes every bound.
    assert_eq!(v("probe_success", &[("probe", "agree")]), 1.0, "{}", s.text);
    promtool_check(&s.text);
    let _ = Scrape::parse(&s.text);
}

#[test]
fn a_huge_exposition_and_hostile_ones_never_crash_the_run() {
    let mut huge = String::with_capacity(6 << 20);
    huge.push_str("# TYPE big gauge\n");
    for i in 0..100_000 {
        huge.push_str(&format!("big{{i=\"{i}\"}} {i}\n"));
    }
    huge.push_str("# TYPE wanted gauge\nwanted 42\n");
    let huge = exporter(huge);
    let long_label = exporter(format!("wanted{{l=\"{}\"}} 1\n", "x".repeat(1 << 20)));
    let escapes = exporter(format!(
        "wanted{{l=\"{}\"}} 1\n",
        "\\\\\\\"\\n".repeat(20_000)
    ));
    let non_finite = exporter("wanted NaN\nother +Inf\nthird -Inf\n".into());
    let duplicate = exporter("wanted 1\nwanted 2\n".into());
    let garbage = exporter(
        String::from_utf8_lossy(&(0u8..=255).cycle().take(70_000).collect::<Vec<_>>()).into_owned(),
    );
    let hostile = [&long_label, &escapes, &non_finite, &duplicate, &garbage];
    let mut e = Engine::new().raw(&probe(
        "huge",
        &[&huge],
        &check("huge", "wanted", "wanted", "min = 42\nmax = 42"),
    ));
    for (i, url) in hostile.iter().enumerate() {
        let name = format!("hostile{i}");
        e = e.raw(&probe(
            &name,
            &[url],
            &check(&name, "wanted", "wanted", "min = 0"),
        ));
    }
    let e = e.start();
    let names: Vec<String> = (0..hostile.len()).map(|i| format!("hostile{i}")).collect();
    let s = e.wait_for("a run of each", WAIT, |s| {
        s.get("probe_success", &[("probe", "huge")]).is_some()
            && names
                .iter()
                .all(|p| s.get("probe_success", &[("probe", p)]).is_some())
    });
    assert_eq!(
        s.value("probe_success", &[("probe", "huge")]),
        1.0,
        "{}",
        s.text
    );
    assert_eq!(
        s.value(
            "scrape_compare_value",
            &[("probe", "huge"), ("series", "wanted"), ("endpoint", &huge)]
        ),
        42.0
    );
    println!(
        "100,002-line exposition: run took {:.3} s, peak linear memory {} bytes",
        s.value("probe_duration_seconds", &[("probe", "huge")]),
        s.value("wasmprobe_probe_memory_peak_bytes", &[("probe", "huge")])
    );
    for p in names.iter().map(String::as_str).chain(["huge"]) {
        for bad in ["trap", "error", "rejected"] {
            assert_eq!(
                s.get(
                    "wasmprobe_probe_runs_total",
                    &[("probe", p), ("result", bad)]
                ),
                None,
                "{p} ended as {bad}:\n{}",
                s.text
            );
        }
        let message = crate::harness::get(&e.url("/"), None).body;
        assert!(!message.is_empty());
    }
    // NaN fails closed; a duplicate series and garbage are scrape failures.
    assert_eq!(s.value("probe_success", &[("probe", "hostile2")]), 0.0);
    assert_eq!(s.value("probe_success", &[("probe", "hostile3")]), 0.0);
    assert_eq!(s.value("probe_success", &[("probe", "hostile4")]), 0.0);
    promtool_check(&s.text);
    let _ = Scrape::parse(&s.text);
}
