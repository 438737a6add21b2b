//! Hot reload and drop-in plugins: all or nothing, in-flight runs finish,
//! counters of surviving probes keep their totals, scrapes never fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::harness::{Engine, Scrape, get, wasm};
use crate::targets;

const WAIT: Duration = Duration::from_secs(90);

fn runs(s: &Scrape, probe: &str) -> f64 {
    s.all("wasmprobe_probe_runs_total")
        .iter()
        .filter(|x| x.labels.get("probe").map(String::as_str) == Some(probe))
        .map(|x| x.value)
        .sum()
}

#[test]
fn a_dropped_in_plugin_swaps_under_load_without_a_failed_scrape() {
    let target = targets::http();
    let engine = Engine::new().engine_key("watch = \"200ms\"");
    let dir = engine.file("placeholder", "");
    let plugins = dir.parent().map(|d| d.join("plugins")).unwrap_or_default();
    std::fs::create_dir_all(&plugins).unwrap_or_else(|e| panic!("{e}"));
    let slot = plugins.join("swap.wasm");
    std::fs::copy(wasm("fixtures", "misbehave"), &slot).unwrap_or_else(|e| panic!("{e}"));
    let e = engine
        .engine_key(&format!("plugin_dirs = [{plugins:?}]"))
        .probe(
            "swapped",
            &format!(
                "plugin = \"swap\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"",
                target.url("/ok")
            ),
        )
        .start();
    let s = e.wait_for("the first version's metrics", WAIT, |s| {
        !s.all("misbehave_value").is_empty()
    });
    let before = runs(&s, "swapped");

    // Scrape as fast as possible for the whole swap.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let scraper = {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), e.url("/metrics"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if get(&url, None).status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // A new version appears in the directory: another plugin's bytes under
    // the same name.
    let tmp = plugins.join("swap.wasm.new");
    std::fs::copy(wasm("plugins", "http-health"), &tmp).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, &slot).unwrap_or_else(|e| panic!("{e}"));
    let s = e.wait_for("the second version's metrics", WAIT, |s| {
        s.get("probe_http_status_code", &[("probe", "swapped")]) == Some(200.0)
    });
    stop.store(true, Ordering::Relaxed);
    let _ = scraper.join();
    assert!(
        s.all("misbehave_value").is_empty(),
        "the old version's gauges are gone:\n{}",
        s.text
    );
    assert!(
        runs(&s, "swapped") > before,
        "run counters kept their totals"
    );
    assert_eq!(s.value("wasmprobe_config_last_reload_successful", &[]), 1.0);
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("hot swap: {ok} scrapes during the swap, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 10);

    // A broken version is refused; the running one goes on.
    std::fs::write(&slot, b"\0asm\x0d\0\x01\0 this is not a component")
        .unwrap_or_else(|e| panic!("{e}"));
    let s = e.wait_for("the refusal", WAIT, |s| {
        s.get("wasmprobe_config_last_reload_successful", &[]) == Some(0.0)
    });
    let after_refusal = runs(&s, "swapped");
    let s = e.wait_for("the probe to keep running", WAIT, |s| {
        runs(s, "swapped") >= after_refusal + 2.0
    });
    assert_eq!(
        s.value("probe_http_status_code", &[("probe", "swapped")]),
        200.0
    );
    assert!(e.log().contains("reload refused"), "{}", e.log());

    // Removing the plugin stops its probes and their series disappear.
    std::fs::remove_file(&slot).unwrap_or_else(|e| panic!("{e}"));
    let s = e.wait_for("the probe to go", WAIT, |s| {
        s.get("probe_success", &[("probe", "swapped")]).is_none()
    });
    assert!(s.all("probe_http_status_code").is_empty(), "{}", s.text);
    assert_eq!(s.value("wasmprobe_config_last_reload_successful", &[]), 1.0);
    assert!(
        e.log().contains("plugin removed: probe stopped"),
        "{}",
        e.log()
    );
}

#[test]
fn twenty_alternating_good_and_bad_reloads_keep_the_running_config() {
    let target = targets::http();
    let engine = Engine::new().engine_key("watch = \"0s\"").probe(
        "stable",
        &format!(
            "plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"",
            target.url("/ok")
        ),
    );
    let base = engine.text();
    let path = engine.config_path();
    let e = engine.start();
    e.wait_for("a run", WAIT, |s| {
        s.get("probe_success", &[("probe", "stable")]).is_some()
    });
    let mut last_good_time = 0.0;
    for i in 0..20 {
        let good = i % 2 == 0;
        let text = if good {
            format!(
                "{base}\n[probes.extra{i}]\nplugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\n",
                target.url("/ok")
            )
        } else {
            format!(
                "{base}\n[probes.broken{i}]\nplugin = \"http-health\"\nschedule = \"every now and then\"\n"
            )
        };
        std::fs::write(&path, &text).unwrap_or_else(|err| panic!("{err}"));
        let (status, body) = e.post("/-/reload");
        let s = e.scrape();
        let gauge = s.value("wasmprobe_config_last_reload_successful", &[]);
        let time = s.value(
            "wasmprobe_config_last_reload_success_timestamp_seconds",
            &[],
        );
        if good {
            assert_eq!(status, 200, "reload {i}: {body}");
            assert_eq!(gauge, 1.0, "reload {i}");
            assert!(time >= last_good_time);
            last_good_time = time;
            // The new probe is configured (it appears once it has run).
            let page = get(&e.url("/"), None).body;
            assert!(page.contains(&format!("extra{i}")), "reload {i}");
            assert!(!page.contains(&format!("extra{}", i.max(2) - 2)) || i == 0);
        } else {
            assert_eq!(status, 400, "reload {i}: {body}");
            assert!(
                body.contains(&format!("probes.broken{i}.schedule")),
                "reload {i}: {body}"
            );
            assert_eq!(gauge, 0.0, "reload {i}");
            assert_eq!(
                time, last_good_time,
                "a failed reload keeps the last success time"
            );
            let page = get(&e.url("/"), None).body;
            assert!(
                page.contains(&format!("extra{}", i - 1)),
                "the last good config runs on"
            );
        }
        assert!(s.get("probe_success", &[("probe", "stable")]).is_some());
    }
    // Content identical to what runs changes nothing (and is a success).
    let s = e.scrape();
    let before = s.value(
        "wasmprobe_probe_runs_total",
        &[("probe", "stable"), ("result", "success")],
    );
    let with = |n: usize| {
        format!(
            "{base}\n[probes.extra{n}]\nplugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"\n",
            target.url("/ok")
        )
    };
    std::fs::write(&path, with(18)).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(e.post("/-/reload"), (200, "unchanged\n".to_string()));
    assert_eq!(
        e.scrape()
            .value("wasmprobe_config_last_reload_successful", &[]),
        1.0
    );
    std::fs::write(&path, with(20)).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        e.post("/-/reload"),
        (200, "reloaded: 2 probes\n".to_string())
    );
    assert_eq!(e.post("/-/reload"), (200, "unchanged\n".to_string()));
    let s = e.wait_for("more runs", WAIT, |s| {
        s.get(
            "wasmprobe_probe_runs_total",
            &[("probe", "stable"), ("result", "success")],
        )
        .is_some_and(|v| v > before)
    });
    assert_eq!(s.value("wasmprobe_config_last_reload_successful", &[]), 1.0);
}
