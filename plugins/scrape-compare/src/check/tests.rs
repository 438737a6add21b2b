use super::*;
use wasmprobe_sdk::http::{HttpVersion, IpProtocol, PhaseTimings};

const E1: &str = "http://127.0.0.1:9101/metrics";
const E2: &str = "http://127.0.0.1:9102/metrics";
const E3: &str = "http://127.0.0.1:9103/metrics";
const E4: &str = "http://127.0.0.1:9104/metrics";

fn timings(seconds: f64) -> PhaseTimings {
    PhaseTimings {
        resolve: 0.0,
        connect: seconds / 4.0,
        tls: 0.0,
        processing: seconds / 2.0,
        transfer: seconds / 4.0,
    }
}

fn answer(status: u16, body: &[u8]) -> Result<Response, HttpError> {
    Ok(Response {
        status,
        version: HttpVersion::Http11,
        headers: vec![("content-type".into(), "text/plain; version=0.0.4".into())],
        body: body.to_vec(),
        trailers: Vec::new(),
        body_truncated: false,
        content_length: None,
        wire_body_length: body.len() as u64,
        redirects: 0,
        final_url: E1.into(),
        remote_addr: "127.0.0.1:9101".into(),
        ip_protocol: IpProtocol::Ip4,
        timings: timings(0.5),
        tls: None,
    })
}

fn ok(body: &str) -> Result<Response, HttpError> {
    answer(200, body.as_bytes())
}

fn failed(kind: ErrorKind, message: &str) -> Result<Response, HttpError> {
    Err(HttpError {
        kind,
        message: message.into(),
        timings: timings(2.0),
        remote_addr: None,
        ip_protocol: None,
        tls: None,
        redirects: 0,
    })
}

fn series(name: &str, selector: &str) -> SeriesCheck {
    SeriesCheck {
        selector: selector.into(),
        name: name.into(),
        min: None,
        max: None,
        max_ratio: None,
        max_spread: None,
        max_age_seconds: None,
        required: true,
    }
}

fn check(endpoints: &[&str], series: Vec<SeriesCheck>) -> Check {
    Check::new(
        Config {
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            series,
            timeout_ms: Some(2000),
            max_body_bytes: None,
        },
        "",
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn value(r: &Report, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = r
        .samples
        .iter()
        .filter(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && s.labels
                    .iter()
                    .zip(labels)
                    .all(|(l, (k, v))| l.name == *k && l.value == *v)
        })
        .map(|s| s.value)
        .collect();
    assert!(
        found.len() <= 1,
        "{name}{labels:?} emitted {} times",
        found.len()
    );
    found.first().copied()
}

/// Every emitted sample belongs to a declared family, with its labels.
fn declared(r: &Report) {
    let families = families();
    for s in &r.samples {
        let f = families
            .iter()
            .find(|f| f.name == s.name)
            .unwrap_or_else(|| panic!("{} is not declared", s.name));
        let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, f.labels, "{}", s.name);
    }
}

fn reasons(r: &Report, series: &str) -> Vec<&'static str> {
    Reason::ALL
        .iter()
        .filter(|reason| {
            value(
                r,
                "scrape_compare_condition_failed",
                &[("series", series), ("reason", reason.as_str())],
            ) == Some(1.0)
        })
        .map(|reason| reason.as_str())
        .collect()
}

/// One replica's exposition, as report B's field service wrote it.
fn field(replica: &str, error: Option<f64>, density: Option<f64>, updated: f64) -> String {
    let mut s = String::new();
    if let Some(e) = error {
        s += &format!(
            "# HELP psi_field_prediction_error Prediction error.\n# TYPE psi_field_prediction_error gauge\npsi_field_prediction_error{{replica=\"{replica}\"}} {e}\n"
        );
    }
    if let Some(d) = density {
        s += &format!(
            "# TYPE psi_field_density gauge\npsi_field_density{{replica=\"{replica}\"}} {d}\n"
        );
    }
    s += &format!("psi_field_last_update_timestamp_seconds{{replica=\"{replica}\"}} {updated}\n");
    s
}

/// Report B: four replicas. `a` and `b` agree, `c` drifts 14x and has not
/// updated for 800 s, `b` lost its density gauge, `d` serves a broken
/// exposition.
#[test]
fn replicas_drifting_missing_and_malformed() {
    let c = check(
        &[E1, E2, E3, E4],
        vec![
            SeriesCheck {
                max_ratio: Some(3.0),
                ..series("prediction_error", "psi_field_prediction_error")
            },
            SeriesCheck {
                min: Some(0.0),
                max: Some(1.0),
                ..series("density", "psi_field_density")
            },
            SeriesCheck {
                max_age_seconds: Some(300.0),
                ..series("updated", "psi_field_last_update_timestamp_seconds")
            },
        ],
    );
    let results = vec![
        ok(&field("a", Some(1.0), Some(0.75), 1000.0)),
        ok(&field("b", Some(1.5), None, 990.0)),
        ok(&field("c", Some(14.0), Some(0.75), 400.0)),
        ok(
            "# TYPE psi_field_prediction_error gauge\npsi_field_prediction_error{replica=\"d\"} 1.2\npsi_field_density{replica=\"d\" 0.7\n",
        ),
    ];
    let r = c.evaluate(&results, Some(1200.0));
    declared(&r);
    assert!(!r.success);
    assert_eq!(
        r.message.as_deref(),
        Some(
            "scrape_failed (http://127.0.0.1:9104/metrics): line 3: invalid label set (name=\"value\" pairs joined by ',', no blanks) at \"{replica=\\\"d\\\" 0.7\"; \
             drift (prediction_error): ratio 14 is above max_ratio 3 (min 1 at http://127.0.0.1:9101/metrics, max 14 at http://127.0.0.1:9103/metrics; outlier http://127.0.0.1:9103/metrics); \
             absent (density): no series matches psi_field_density at http://127.0.0.1:9102/metrics; \
             stale (updated): timestamp 400 is 800 s old (max_age_seconds 300) at http://127.0.0.1:9103/metrics"
        )
    );

    for (e, up) in [(E1, 1.0), (E2, 1.0), (E3, 1.0), (E4, 0.0)] {
        assert_eq!(
            value(&r, "scrape_compare_up", &[("endpoint", e)]),
            Some(up),
            "{e}"
        );
        assert_eq!(
            value(
                &r,
                "scrape_compare_scrape_duration_seconds",
                &[("endpoint", e)]
            ),
            Some(0.5)
        );
    }
    assert_eq!(
        value(&r, "scrape_compare_scrape_samples", &[("endpoint", E1)]),
        Some(3.0)
    );
    assert_eq!(
        value(&r, "scrape_compare_scrape_samples", &[("endpoint", E2)]),
        Some(2.0)
    );
    assert_eq!(
        value(&r, "scrape_compare_scrape_samples", &[("endpoint", E4)]),
        None
    );

    let pe =
        |name: &str, e: &str| value(&r, name, &[("series", "prediction_error"), ("endpoint", e)]);
    assert_eq!(
        [E1, E2, E3, E4].map(|e| pe("scrape_compare_value", e)),
        [Some(1.0), Some(1.5), Some(14.0), None]
    );
    assert_eq!(
        [E1, E2, E3, E4].map(|e| pe("scrape_compare_series_present", e)),
        [Some(1.0), Some(1.0), Some(1.0), None],
        "an endpoint that failed says nothing about presence"
    );
    assert_eq!(
        value(
            &r,
            "scrape_compare_spread",
            &[("series", "prediction_error")]
        ),
        Some(13.0)
    );
    assert_eq!(
        value(
            &r,
            "scrape_compare_ratio",
            &[("series", "prediction_error")]
        ),
        Some(14.0)
    );
    assert_eq!(
        [E1, E2, E3, E4].map(|e| pe("scrape_compare_deviation", e)),
        [Some(-0.5), Some(0.0), Some(12.5), None]
    );
    assert_eq!(
        [E1, E2, E3, E4].map(|e| pe("scrape_compare_outlier", e)),
        [Some(0.0), Some(0.0), Some(1.0), None]
    );
    assert_eq!(reasons(&r, "prediction_error"), ["scrape_failed", "drift"]);

    let d = |name: &str, e: &str| value(&r, name, &[("series", "density"), ("endpoint", e)]);
    assert_eq!(
        [E1, E2, E3].map(|e| d("scrape_compare_series_present", e)),
        [Some(1.0), Some(0.0), Some(1.0)]
    );
    assert_eq!(d("scrape_compare_value", E2), None);
    assert_eq!(
        value(&r, "scrape_compare_spread", &[("series", "density")]),
        Some(0.0)
    );
    assert_eq!(
        value(&r, "scrape_compare_ratio", &[("series", "density")]),
        Some(1.0)
    );
    assert_eq!(
        [E1, E3].map(|e| d("scrape_compare_outlier", e)),
        [Some(0.0), Some(0.0)],
        "two equal values: no outlier"
    );
    assert_eq!(reasons(&r, "density"), ["scrape_failed", "absent"]);

    let u = |name: &str, e: &str| value(&r, name, &[("series", "updated"), ("endpoint", e)]);
    assert_eq!(
        value(&r, "scrape_compare_spread", &[("series", "updated")]),
        Some(600.0)
    );
    assert_eq!(
        value(&r, "scrape_compare_ratio", &[("series", "updated")]),
        Some(2.5)
    );
    assert_eq!(
        [E1, E2, E3].map(|e| u("scrape_compare_deviation", e)),
        [Some(10.0), Some(0.0), Some(-590.0)]
    );
    assert_eq!(u("scrape_compare_outlier", E3), Some(1.0));
    assert_eq!(reasons(&r, "updated"), ["scrape_failed", "stale"]);
}

/// Report A: the portal's own exporter, one endpoint (the probe's target),
/// checked for `portal_up == 1` and a fresh health check.
#[test]
fn sidecar_portal_up_and_fresh() {
    let c = Check::new(
        Config {
            series: vec![
                SeriesCheck {
                    min: Some(1.0),
                    max: Some(1.0),
                    ..series("portal_up", "portal_up")
                },
                SeriesCheck {
                    max_age_seconds: Some(60.0),
                    ..series("portal_check_fresh", "portal_last_check_timestamp_seconds")
                },
            ],
            ..Config::default()
        },
        "http://127.0.0.1:9300/metrics",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.endpoints(), ["http://127.0.0.1:9300/metrics"]);
    let body = |up: u8, at: u32| {
        format!(
            "# TYPE portal_up gauge\nportal_up {up}\n\n# TYPE portal_last_check_timestamp_seconds gauge\nportal_last_check_timestamp_seconds {at}\n"
        )
    };
    let r = c.evaluate(&[ok(&body(1, 1_700_000_000))], Some(1_700_000_030.0));
    declared(&r);
    assert!(r.success, "{:?}", r.message);
    assert_eq!(r.message, None);
    assert_eq!(
        value(&r, "scrape_compare_spread", &[("series", "portal_up")]),
        None,
        "one endpoint compares nothing"
    );

    let r = c.evaluate(&[ok(&body(0, 1_699_999_000))], Some(1_700_000_030.0));
    assert_eq!(
        r.message.as_deref(),
        Some(
            "out_of_range (portal_up): value 0 is below min 1 at http://127.0.0.1:9300/metrics; \
             stale (portal_check_fresh): timestamp 1699999000 is 1030 s old (max_age_seconds 60) at http://127.0.0.1:9300/metrics"
        )
    );
    assert_eq!(reasons(&r, "portal_up"), ["out_of_range"]);
    assert_eq!(reasons(&r, "portal_check_fresh"), ["stale"]);

    // No clock: freshness cannot be shown, so it fails.
    let r = c.evaluate(&[ok(&body(1, 1_700_000_000))], None);
    assert_eq!(reasons(&r, "portal_check_fresh"), ["stale"]);
}

#[test]
fn http_failures_are_scrape_failed() {
    let c = check(&[E1, E2, E3, E4], vec![series("up", "portal_up")]);
    let mut truncated = answer(200, b"portal_up 1\nportal_do");
    if let Ok(r) = &mut truncated {
        r.body_truncated = true;
    }
    let r = c.evaluate(
        &[
            failed(ErrorKind::Timeout, "no answer within 2000 ms"),
            answer(503, b"busy"),
            truncated,
            answer(200, b"portal_up 1\n\xff"),
        ],
        Some(0.0),
    );
    declared(&r);
    assert_eq!(
        r.message.as_deref(),
        Some(
            "scrape_failed (http://127.0.0.1:9101/metrics): timeout: no answer within 2000 ms; \
             scrape_failed (http://127.0.0.1:9102/metrics): HTTP status 503; \
             scrape_failed (http://127.0.0.1:9103/metrics): the exposition is longer than max_body_bytes or the probe's limits.max_body (kept 21 bytes); a cut one cannot be validated; \
             scrape_failed (http://127.0.0.1:9104/metrics): body is not UTF-8 (invalid byte at offset 12)"
        )
    );
    assert_eq!(
        value(&r, "scrape_compare_up", &[("endpoint", E1)]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &r,
            "scrape_compare_scrape_duration_seconds",
            &[("endpoint", E1)]
        ),
        Some(2.0)
    );
    assert_eq!(reasons(&r, "up"), ["scrape_failed"]);
    // A missing result (a host bug) is a failure, not a panic.
    let r = c.evaluate(&[], Some(0.0));
    assert!(!r.success);
}

#[test]
fn several_matches_are_ambiguous() {
    let c = check(&[E1, E2], vec![series("err", "psi_field_prediction_error")]);
    let two =
        "psi_field_prediction_error{model=\"a\"} 1\npsi_field_prediction_error{model=\"b\"} 14\n";
    let r = c.evaluate(&[ok(two), ok("psi_field_prediction_error 1\n")], Some(0.0));
    assert_eq!(
        r.message.as_deref(),
        Some(
            "ambiguous (err): 2 series match psi_field_prediction_error at http://127.0.0.1:9101/metrics \
             (psi_field_prediction_error{model=\"a\"}, psi_field_prediction_error{model=\"b\"}); narrow the selector to one"
        )
    );
    assert_eq!(
        value(
            &r,
            "scrape_compare_series_present",
            &[("series", "err"), ("endpoint", E1)]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &r,
            "scrape_compare_value",
            &[("series", "err"), ("endpoint", E1)]
        ),
        None
    );
    assert_eq!(reasons(&r, "err"), ["ambiguous"]);
}

#[test]
fn an_optional_series_may_be_missing() {
    let c = check(
        &[E1, E2],
        vec![SeriesCheck {
            required: false,
            max: Some(5.0),
            ..series("queue", "queue_depth")
        }],
    );
    let r = c.evaluate(&[ok("queue_depth 3\n"), ok("other 1\n")], Some(0.0));
    assert!(r.success, "{:?}", r.message);
    assert_eq!(
        value(
            &r,
            "scrape_compare_series_present",
            &[("series", "queue"), ("endpoint", E2)]
        ),
        Some(0.0)
    );
    let r = c.evaluate(&[ok("queue_depth 9\n"), ok("other 1\n")], Some(0.0));
    assert_eq!(reasons(&r, "queue"), ["out_of_range"]);
}

#[test]
fn nan_and_inf_fail_closed_and_reach_the_exposition_unchanged() {
    let c = check(
        &[E1, E2, E3],
        vec![SeriesCheck {
            min: Some(0.0),
            max_spread: Some(1.0),
            ..series("err", "e")
        }],
    );
    let r = c.evaluate(&[ok("e NaN\n"), ok("e 2\n"), ok("e +Inf\n")], Some(0.0));
    declared(&r);
    let v = |e: &str| {
        value(
            &r,
            "scrape_compare_value",
            &[("series", "err"), ("endpoint", e)],
        )
    };
    assert!(v(E1).is_some_and(f64::is_nan));
    assert_eq!(v(E3), Some(f64::INFINITY));
    assert_eq!(
        r.message.as_deref(),
        Some(
            "out_of_range (err): value NaN is not a number to bound at http://127.0.0.1:9101/metrics; \
             drift (err): NaN at http://127.0.0.1:9101/metrics cannot be compared"
        )
    );
    // One finite value: nothing to compare, no spread emitted.
    assert_eq!(
        value(&r, "scrape_compare_spread", &[("series", "err")]),
        None
    );
    assert_eq!(reasons(&r, "err"), ["out_of_range", "drift"]);
}

#[test]
fn ratio_across_zero_and_against_zero() {
    let c = check(
        &[E1, E2],
        vec![SeriesCheck {
            max_ratio: Some(3.0),
            ..series("x", "x")
        }],
    );
    let r = c.evaluate(&[ok("x -1\n"), ok("x 1\n")], Some(0.0));
    assert!(value(&r, "scrape_compare_ratio", &[("series", "x")]).is_some_and(f64::is_nan));
    assert_eq!(
        value(&r, "scrape_compare_spread", &[("series", "x")]),
        Some(2.0)
    );
    assert_eq!(reasons(&r, "x"), ["drift"]);
    let r = c.evaluate(&[ok("x 0\n"), ok("x 2\n")], Some(0.0));
    assert_eq!(
        value(&r, "scrape_compare_ratio", &[("series", "x")]),
        Some(f64::INFINITY)
    );
    assert_eq!(
        r.message.as_deref(),
        Some(
            "drift (x): ratio +Inf is above max_ratio 3 (min 0 at http://127.0.0.1:9101/metrics, max 2 at http://127.0.0.1:9102/metrics)"
        )
    );
    let r = c.evaluate(&[ok("x -2\n"), ok("x -6\n")], Some(0.0));
    assert_eq!(
        value(&r, "scrape_compare_ratio", &[("series", "x")]),
        Some(3.0)
    );
    assert!(r.success, "a ratio of exactly max_ratio passes");
}

#[test]
fn the_batch() {
    let c = check(&[E1, E2, E3], vec![]);
    let (requests, concurrency) = c.requests();
    assert_eq!(concurrency, 3);
    let urls: Vec<&str> = requests.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(urls, [E1, E2, E3]);
    assert!(requests.iter().all(|r| {
        r.method == "GET"
            && r.timeout_ms == Some(2000)
            && r.decompress
            && r.headers
                .iter()
                .any(|(k, v)| k == "accept" && v.starts_with("text/plain;version=0.0.4"))
    }));
    // No series: the probe checks that every exposition parses.
    let r = c.evaluate(&[ok("a 1\n"), ok("b 2\n"), ok("c 3\n")], Some(0.0));
    assert!(r.success);
    assert_eq!(r.samples.len(), 9);
}

#[test]
fn the_sample_budget_is_the_worst_case() {
    let specs: Vec<SeriesCheck> = (0..3)
        .map(|i| series(&format!("s{i}"), &format!("m{i}")))
        .collect();
    let c = check(&[E1, E2, E3, E4], specs);
    let body = "m0 1\nm1 2\nm2 3\n";
    let r = c.evaluate(
        &[ok(body), ok(body), ok(body), ok("m0 2\nm1 3\nm2 4\n")],
        Some(0.0),
    );
    assert_eq!(r.samples.len(), max_samples(3, 4));
    assert_eq!(max_samples(3, 4), 3 * 4 + 4 * 3 * 4 + 8 * 3);
}

#[test]
fn configs_that_cannot_work_are_refused() {
    let one = |s: SeriesCheck| Config {
        endpoints: vec![E1.into(), E2.into()],
        series: vec![s],
        ..Config::default()
    };
    let cases: Vec<(Config, &str, &str)> = vec![
        (
            Config::default(),
            "",
            "no endpoint: set `endpoints` or the probe's target",
        ),
        (
            Config {
                endpoints: vec!["127.0.0.1:9101".into()],
                ..Config::default()
            },
            "",
            "endpoints[0]: \"127.0.0.1:9101\" is not an http:// or https:// URL",
        ),
        (
            Config {
                endpoints: vec!["http://admin:hunter2@127.0.0.1:9101/metrics".into()],
                ..Config::default()
            },
            "",
            "endpoints[0]: \"http://admin:hunter2@127.0.0.1:9101/metrics\" carries user info, which the endpoint label would export; remove it",
        ),
        (
            Config {
                endpoints: vec![E1.into(), E1.into()],
                ..Config::default()
            },
            "",
            "endpoints[1]: \"http://127.0.0.1:9101/metrics\" is listed twice",
        ),
        (
            one(series("x", "rate(x[5m])")),
            "",
            "series[0].selector: \"rate(x[5m])\" is an expression; write a series selector such as name{label=\"v\"}",
        ),
        (
            one(series("has space", "x")),
            "",
            "series[0].name: \"has space\" must be 1 to 64 of A-Z a-z 0-9 _ . : - (it is the series label)",
        ),
        (
            one(SeriesCheck {
                min: Some(2.0),
                max: Some(1.0),
                ..series("x", "x")
            }),
            "",
            "series[0]: min 2 is above max 1: no value could pass",
        ),
        (
            one(SeriesCheck {
                max_ratio: Some(0.5),
                ..series("x", "x")
            }),
            "",
            "series[0]: max_ratio 0.5 is below 1, the smallest ratio there is",
        ),
        (
            Config {
                series: vec![SeriesCheck {
                    max_spread: Some(1.0),
                    ..series("x", "x")
                }],
                ..Config::default()
            },
            E1,
            "series[0]: max_ratio and max_spread compare endpoints: list at least two in `endpoints`",
        ),
        (
            Config {
                endpoints: vec![E1.into()],
                series: vec![series("x", "x"), series("x", "y")],
                ..Config::default()
            },
            "",
            "series[1].name: \"x\" is used twice",
        ),
        (
            Config {
                endpoints: (0..10)
                    .map(|i| format!("http://127.0.0.1:{}/metrics", 9100 + i))
                    .collect(),
                series: (0..24).map(|i| series(&format!("s{i}"), "x")).collect(),
                ..Config::default()
            },
            "",
            "24 series on 10 endpoints can return 1182 samples, above the 1000 a run may return; split them over several probes",
        ),
    ];
    for (config, target, want) in cases {
        match Check::new(config, target) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => assert_eq!(e, want),
        }
    }
}

#[test]
fn the_config_schema_refuses_unknown_keys() {
    let parse = |json: &str| serde_json::from_str::<Config>(json).map_err(|e| e.to_string());
    assert!(parse(r#"{"endpoints": [], "seires": []}"#).is_err());
    assert!(parse(r#"{"series": [{"selector": "x", "name": "x", "max_ratoi": 3}]}"#).is_err());
    let c = parse(r#"{"series": [{"selector": "x", "name": "x", "max_ratio": 3}]}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.series[0].max_ratio, Some(3.0));
    assert!(
        c.series[0].required,
        "series are required unless said otherwise"
    );
}

#[test]
fn families_follow_the_host_rules() {
    for f in families() {
        assert!(f.name.starts_with("scrape_compare_"), "{}", f.name);
        assert!(f.kind == wasmprobe_sdk::MetricKind::Gauge, "{}", f.name);
        assert!(!f.help.is_empty() && f.help.len() < 1024);
        if let Some(unit) = &f.unit {
            assert!(f.name.ends_with(&format!("_{unit}")));
        }
    }
}

/// The demo's three field replicas (`wasmprobe run --demo`), as their
/// expositions read: `c` drifts 14x on prediction error.
#[test]
fn the_demo_field_service() {
    let exposition = |replica: &str, density: f64, error: f64, now: f64| {
        let mut out = String::new();
        for (name, value) in [
            ("psi_field_density", density),
            ("psi_field_prediction_error", error),
            ("psi_field_last_update_timestamp_seconds", now),
        ] {
            out += &format!(
                "# HELP {name} DEMO simulator.\n# TYPE {name} gauge\n{name}{{demo=\"true\",replica=\"{replica}\"}} {value}\n"
            );
        }
        out
    };
    let urls = [
        "http://127.0.0.1:9473/metrics",
        "http://127.0.0.1:9474/metrics",
        "http://127.0.0.1:9475/metrics",
    ];
    let c = check(
        &urls,
        vec![
            SeriesCheck {
                max_ratio: Some(3.0),
                ..series("prediction_error", "psi_field_prediction_error")
            },
            SeriesCheck {
                min: Some(0.0),
                max: Some(1.0),
                max_spread: Some(0.1),
                ..series("density", "psi_field_density")
            },
            SeriesCheck {
                max_age_seconds: Some(60.0),
                ..series("updated", "psi_field_last_update_timestamp_seconds")
            },
        ],
    );
    let now = 1_764_770_000.0;
    let r = c.evaluate(
        &[
            ok(&exposition("a", 0.81, 0.021, now - 1.0)),
            ok(&exposition("b", 0.80, 0.022, now - 2.0)),
            ok(&exposition("c", 0.82, 0.301, now - 1.0)),
        ],
        Some(now),
    );
    declared(&r);
    assert_eq!(
        r.message.as_deref(),
        Some(
            "drift (prediction_error): ratio 14.333333333333332 is above max_ratio 3 \
             (min 0.021 at http://127.0.0.1:9473/metrics, max 0.301 at http://127.0.0.1:9475/metrics; \
             outlier http://127.0.0.1:9475/metrics)"
        )
    );
    let s = |name: &str| value(&r, name, &[("series", "prediction_error")]);
    assert_eq!(s("scrape_compare_ratio"), Some(0.301 / 0.021));
    assert_eq!(s("scrape_compare_spread"), Some(0.301 - 0.021));
    let e = |name: &str, url: &str| {
        value(
            &r,
            name,
            &[("series", "prediction_error"), ("endpoint", url)],
        )
    };
    assert_eq!(
        urls.map(|u| e("scrape_compare_deviation", u)),
        [Some(0.021 - 0.022), Some(0.0), Some(0.301 - 0.022)]
    );
    assert_eq!(
        urls.map(|u| e("scrape_compare_outlier", u)),
        [Some(0.0), Some(0.0), Some(1.0)]
    );
    assert_eq!(reasons(&r, "prediction_error"), ["drift"]);
    assert_eq!(
        urls.map(|u| value(
            &r,
            "scrape_compare_outlier",
            &[("series", "density"), ("endpoint", u)]
        )),
        [Some(0.0); 3],
        "0.80 and 0.82 are as far from 0.81: no outlier"
    );
    assert_eq!(reasons(&r, "density"), Vec::<&str>::new());
    assert_eq!(reasons(&r, "updated"), Vec::<&str>::new());
}

#[test]
fn the_schema_names_every_key() {
    let schema = serde_json::to_string(&schemars::schema_for!(Config)).unwrap_or_default();
    for key in [
        "endpoints",
        "series",
        "timeout_ms",
        "max_body_bytes",
        "selector",
        "name",
        "min",
        "max",
        "max_ratio",
        "max_spread",
        "max_age_seconds",
        "required",
    ] {
        assert!(
            schema.contains(&format!("\"{key}\"")),
            "{key} missing from {schema}"
        );
    }
}
