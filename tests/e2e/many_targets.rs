//! Probes with many targets: `targets = [...]` and Prometheus `file_sd`
//! files changing under a running engine. Each target is its own run and
//! its own series, told apart by a `target` label.

use std::time::Duration;

use crate::harness::{Engine, Scrape};
use crate::targets;

const WAIT: Duration = Duration::from_secs(90);

/// `probe_success` of each target of `probe`, by target.
fn successes(s: &Scrape, probe: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = s
        .all("probe_success")
        .iter()
        .filter(|x| x.labels.get("probe").map(String::as_str) == Some(probe))
        .map(|x| (x.labels.get("target").cloned().unwrap_or_default(), x.value))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn each_listed_target_is_its_own_run_and_series() {
    let t = targets::http();
    let (ok, bad) = (t.url("/ok"), t.url("/status/503"));
    let e = Engine::new()
        .probe(
            "web",
            &format!(
                "plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntargets = [{ok:?}, {bad:?}]\nlabels = {{ team_name = \"edge\" }}"
            ),
        )
        .start();
    let s = e.wait_for("both targets' results", WAIT, |s| {
        successes(s, "web").len() == 2
    });
    assert_eq!(
        successes(&s, "web"),
        vec![(ok.clone(), 1.0), (bad.clone(), 0.0)],
        "{}",
        s.text
    );
    // Every series of the probe says which target, the plugin's own too,
    // after the probe's labels.
    let codes = s.all("probe_http_status_code");
    assert_eq!(codes.len(), 2, "{}", s.text);
    for series in codes {
        assert_eq!(
            series.labels.get("team_name").map(String::as_str),
            Some("edge")
        );
        let target = series.labels.get("target").cloned().unwrap_or_default();
        let want = if target == ok { 200.0 } else { 503.0 };
        assert_eq!(series.value, want, "{target}");
    }
    assert_eq!(s.value("wasmprobe_probe_targets", &[("probe", "web")]), 2.0);
    crate::harness::promtool_check(&s.text);
}

#[test]
fn a_listed_target_outside_the_allow_list_is_an_error_at_its_line() {
    let t = targets::http();
    let e = Engine::new().probe(
        "web",
        &format!(
            "plugin = \"http-health\"\nschedule = \"* * * * * *\"\nallow = [{:?}]\ntargets = [\n  {:?},\n  \"http://127.0.0.2:9/\",\n]",
            t.origin("http"),
            t.url("/ok")
        ),
    );
    let config = e.config_path();
    std::fs::write(&config, e.text()).unwrap_or_else(|err| panic!("{err}"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let line = e
        .text()
        .lines()
        .position(|l| l.contains("127.0.0.2"))
        .map(|i| i + 1)
        .unwrap_or_default();
    assert!(
        text.contains(&format!("probes.toml:{line}:")) && text.contains("127.0.0.2"),
        "{text}"
    );
}

#[test]
fn file_sd_targets_come_and_go_while_the_engine_runs() {
    let t = targets::http();
    let engine = Engine::new().engine_key("watch = \"200ms\"");
    let groups = |targets: &[String], env: &str| {
        serde_json::json!([{ "targets": targets, "labels": { "env": env, "__meta_source": "x" } }])
            .to_string()
    };
    let (a, b) = (t.url("/ok"), t.url("/status/404"));
    let outside = "http://127.0.0.2:9/".to_string();
    let file = engine.file("web.json", &groups(&[a.clone(), outside.clone()], "prod"));
    let e = engine
        .probe(
            "web",
            &format!(
                "plugin = \"http-health\"\nschedule = \"* * * * * *\"\nallow = [{:?}]\nfile_sd = [\"web.json\", \"later.yml\"]",
                t.origin("http")
            ),
        )
        .start();
    let s = e.wait_for("the discovered target", WAIT, |s| {
        successes(s, "web") == vec![(a.clone(), 1.0)]
    });
    assert_eq!(
        s.value(
            "probe_success",
            &[("probe", "web"), ("target", &a), ("env", "prod")]
        ),
        1.0
    );
    assert!(!s.text.contains("__meta_source"), "{}", s.text);
    // The target outside the allow-list was never probed, and says why.
    assert!(!s.text.contains("127.0.0.2"), "{}", s.text);
    assert_eq!(
        s.value("wasmprobe_probe_targets_refused", &[("probe", "web")]),
        1.0
    );
    assert!(e.log().contains("discovered target refused"), "{}", e.log());

    // The file changes: a target is added and another removed; a second
    // file (YAML) appears.
    std::fs::write(&file, groups(std::slice::from_ref(&b), "prod"))
        .unwrap_or_else(|err| panic!("{err}"));
    let yml = file.with_file_name("later.yml");
    let c = t.url("/json");
    std::fs::write(
        &yml,
        format!("- targets: [{c:?}]\n  labels: {{env: dev}}\n"),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let s = e.wait_for("the new targets and the old one's series gone", WAIT, |s| {
        successes(s, "web") == vec![(c.clone(), 1.0), (b.clone(), 0.0)]
    });
    assert_eq!(
        s.value(
            "probe_success",
            &[("probe", "web"), ("target", &c), ("env", "dev")]
        ),
        1.0
    );
    assert_eq!(s.value("wasmprobe_probe_targets", &[("probe", "web")]), 2.0);

    // A file that no longer parses keeps the running targets.
    std::fs::write(&yml, "- targets: {not: a list}\n").unwrap_or_else(|err| panic!("{err}"));
    let s = e.wait_for("the failed reload", WAIT, |s| {
        s.get("wasmprobe_config_last_reload_successful", &[]) == Some(0.0)
    });
    assert_eq!(successes(&s, "web").len(), 2, "{}", s.text);
    assert!(e.log().contains("later.yml"), "{}", e.log());
}

/// An http_sd server whose answer the test sets: a status and a body.
fn discovery_server(answer: std::sync::Arc<std::sync::Mutex<(u16, String)>>) -> targets::Target {
    use axum::routing::get;
    targets::serve(axum::Router::new().route(
        "/targets",
        get(move || {
            let answer = answer.clone();
            async move {
                let (status, body) = answer
                    .lock()
                    .map(|a| a.clone())
                    .unwrap_or((500, String::new()));
                (
                    axum::http::StatusCode::from_u16(status)
                        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    ))
}

#[test]
fn an_http_sd_server_that_fails_keeps_the_last_good_targets_until_it_recovers() {
    let t = targets::http();
    let (a, b) = (t.url("/ok"), t.url("/json"));
    let list = |targets: &[&String]| {
        serde_json::json!([{ "targets": targets, "labels": { "zone": "a" } }]).to_string()
    };
    let answer = std::sync::Arc::new(std::sync::Mutex::new((200u16, list(&[&a]))));
    let sd = discovery_server(answer.clone());
    let e = Engine::new()
        .probe(
            "fleet",
            &format!(
                "plugin = \"http-health\"\nschedule = \"* * * * * *\"\nallow = [{:?}]\nhttp_sd = {:?}\nhttp_sd_refresh = \"1s\"",
                t.origin("http"),
                sd.url("/targets")
            ),
        )
        .start();
    e.wait_for("the discovered target", WAIT, |s| {
        successes(s, "fleet") == vec![(a.clone(), 1.0)]
    });

    // The server fails: refreshes are counted, the target stays.
    if let Ok(mut g) = answer.lock() {
        *g = (503, "down for maintenance".into());
    }
    let s = e.wait_for("failed refreshes", WAIT, |s| {
        s.get(
            "wasmprobe_http_sd_refresh_failures_total",
            &[("probe", "fleet")],
        )
        .unwrap_or(0.0)
            >= 2.0
    });
    assert_eq!(s.value("wasmprobe_http_sd_up", &[("probe", "fleet")]), 0.0);
    assert_eq!(successes(&s, "fleet"), vec![(a.clone(), 1.0)], "{}", s.text);
    assert!(
        e.log().contains("keeping the last good targets"),
        "{}",
        e.log()
    );

    // It recovers with one more target.
    if let Ok(mut g) = answer.lock() {
        *g = (200, list(&[&a, &b]));
    }
    let s = e.wait_for("the new target", WAIT, |s| successes(s, "fleet").len() == 2);
    assert_eq!(s.value("wasmprobe_http_sd_up", &[("probe", "fleet")]), 1.0);
    assert_eq!(
        s.value(
            "probe_success",
            &[("probe", "fleet"), ("target", &b), ("zone", "a")]
        ),
        1.0
    );
}

/// `wasmprobe_probe_runs_total` of one target, over every result.
fn target_runs(s: &Scrape, probe: &str, target: &str) -> f64 {
    s.all("wasmprobe_probe_runs_total")
        .iter()
        .filter(|x| {
            x.labels.get("probe").map(String::as_str) == Some(probe)
                && x.labels.get("target").map(String::as_str) == Some(target)
        })
        .map(|x| x.value)
        .sum()
}

#[test]
fn a_failing_target_runs_on_the_failing_interval_and_a_passing_one_on_its_schedule() {
    let t = targets::http();
    let (ok, bad) = (t.url("/ok"), t.url("/status/500"));
    let e = Engine::new()
        .probe(
            "web",
            &format!(
                "plugin = \"http-health\"\nschedule = \"0/10 * * * * *\"\nfailing_interval = \"1s\"\ntargets = [{ok:?}, {bad:?}]"
            ),
        )
        .start();
    let s = e.wait_for("four runs of the failing target", WAIT, |s| {
        target_runs(s, "web", &bad) >= 4.0
    });
    // The passing target kept its ten-second rhythm meanwhile.
    assert!(target_runs(&s, "web", &ok) <= 2.0, "{}", s.text);
    let list: serde_json::Value =
        serde_json::from_str(&crate::harness::get(&e.url("/api/v1/probes?q=web"), None).body)
            .unwrap_or_default();
    let schedules: Vec<(String, String)> = list["probes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["target"].as_str().unwrap_or_default().to_string(),
                p["schedule"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        schedules.contains(&(bad.clone(), "every 1s while failing".to_string())),
        "{schedules:?}"
    );
    assert!(
        schedules.contains(&(ok.clone(), "0/10 * * * * *".to_string())),
        "{schedules:?}"
    );
}

/// Answers every connection on `listener` with `status`, in a thread.
fn answer_with(listener: std::net::TcpListener, status: u16) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = stream.read(&mut buf);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
                );
            });
        }
    });
}

/// A load-balanced name with three loopback addresses (an `/etc/hosts` of
/// the engine's own mount namespace), one of whose backends fails: with
/// `fan_out` each address is its own run and series, so the bad one shows.
#[test]
fn fan_out_runs_once_per_address_and_the_bad_backend_shows() {
    if crate::netns::skip("fan_out_runs_once_per_address_and_the_bad_backend_shows") {
        return;
    }
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = first.local_addr().map(|a| a.port()).unwrap_or_default();
    let (second, third) = match (
        std::net::TcpListener::bind(("127.0.0.2", port)),
        std::net::TcpListener::bind(("127.0.0.3", port)),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            println!("SKIPPED: cannot bind 127.0.0.2 and 127.0.0.3 on port {port}");
            return;
        }
    };
    answer_with(first, 200);
    answer_with(second, 200);
    answer_with(third, 503);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n127.0.0.1 lb.test\n127.0.0.2 lb.test\n127.0.0.3 lb.test\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let script = format!("mount --bind {} /etc/hosts && exec \"$@\"", hosts.display());
    let target = format!("http://lb.test:{port}/health");
    let e = Engine::new()
        .wrap(&["unshare", "--mount", "--propagation", "private", "sh", "-c", &script, "sh"])
        .probe(
            "lb",
            &format!(
                "plugin = \"http-health\"\nschedule = \"* * * * * *\"\nfan_out = true\ntarget = {target:?}\nallow = [\"http://lb.test:{port}\", \"http://127.0.0.0/8:{port}\"]"
            ),
        )
        .start();
    let by_ip = |s: &Scrape| -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = s
            .all("probe_success")
            .iter()
            .filter(|x| x.labels.get("probe").map(String::as_str) == Some("lb"))
            .map(|x| (x.labels.get("ip").cloned().unwrap_or_default(), x.value))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let s = e.wait_for("a run per address", WAIT, |s| by_ip(s).len() == 3);
    assert_eq!(
        by_ip(&s),
        vec![
            ("127.0.0.1".to_string(), 1.0),
            ("127.0.0.2".to_string(), 1.0),
            ("127.0.0.3".to_string(), 0.0)
        ],
        "{}",
        s.text
    );
    // Each run reached its own address: the status code says which.
    assert_eq!(
        s.value(
            "probe_http_status_code",
            &[("probe", "lb"), ("ip", "127.0.0.3")]
        ),
        503.0
    );
}
