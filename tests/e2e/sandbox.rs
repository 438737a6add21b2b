//! Plugins that trap, spin, hoard memory or recurse end their own run with
//! a bounded reason; the host and every other probe go on.

use std::time::Duration;

use crate::harness::{Engine, Scrape, get, promtool_check, said};

const WAIT: Duration = Duration::from_secs(90);

/// A misbehave probe running every second with `config` (TOML keys of
/// its config table) and `extra` keys of the probe's own table.
fn fixture(name: &str, config: &str, extra: &str) -> String {
    format!(
        "[probes.{name}]\nplugin = \"misbehave\"\nschedule = \"* * * * * *\"\ntarget = \"http://127.0.0.1:9/\"\n{extra}\n[probes.{name}.config]\n{config}\n"
    )
}

fn count(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.get(name, labels).unwrap_or(0.0)
}

#[test]
fn hostile_plugins_end_only_their_own_runs() {
    let e = Engine::new()
        .raw(&fixture("good", "behaviour = \"ok\"", ""))
        .raw(&fixture("panics", "behaviour = \"panic\"", ""))
        .raw(&fixture(
            "spins",
            "behaviour = \"spin\"",
            "timeout = \"1s\"",
        ))
        .raw(&fixture(
            "hoards",
            "behaviour = \"grow_memory\"",
            "[probes.hoards.limits]\nmemory = \"16MiB\"",
        ))
        .raw(&fixture("recurses", "behaviour = \"recurse\"", ""))
        .raw(&fixture("smashes", "behaviour = \"deep_frames\"", ""))
        .start();
    let s = e.wait_for(
        "every failure mode, twice, while good keeps running",
        WAIT,
        |s| {
            count(
                s,
                "wasmprobe_probe_traps_total",
                &[("probe", "panics"), ("reason", "unreachable")],
            ) >= 2.0
                && count(
                    s,
                    "wasmprobe_probe_runs_total",
                    &[("probe", "spins"), ("result", "timeout")],
                ) >= 2.0
                && count(
                    s,
                    "wasmprobe_probe_traps_total",
                    &[("probe", "hoards"), ("reason", "memory_limit")],
                ) >= 2.0
                && count(
                    s,
                    "wasmprobe_probe_traps_total",
                    &[("probe", "recurses"), ("reason", "stack_overflow")],
                ) >= 2.0
                && count(
                    s,
                    "wasmprobe_probe_traps_total",
                    &[("probe", "smashes"), ("reason", "out_of_bounds")],
                ) >= 2.0
                && count(
                    s,
                    "wasmprobe_probe_runs_total",
                    &[("probe", "good"), ("result", "success")],
                ) >= 5.0
        },
    );
    for p in ["panics", "spins", "hoards", "recurses", "smashes"] {
        assert_eq!(s.value("probe_success", &[("probe", p)]), 0.0, "{p}");
    }
    assert_eq!(s.value("probe_success", &[("probe", "good")]), 1.0);
    // The good probe keeps its once-a-second rhythm: no skipped starts.
    assert!(
        s.get("wasmprobe_probe_runs_skipped_total", &[("probe", "good")])
            .is_none(),
        "{}",
        s.text
    );
    assert_eq!(get(&e.url("/healthz"), None).status, 200);
    promtool_check(&s.text);
    let lag_count = s.value("wasmprobe_schedule_lag_seconds_count", &[]);
    assert!(lag_count >= 5.0);
    println!(
        "spin run ended after {:.3}s (timeout 1s); memory trap after {:.3}s",
        s.value("probe_duration_seconds", &[("probe", "spins")]),
        s.value("probe_duration_seconds", &[("probe", "hoards")])
    );
}

#[test]
fn more_spinning_plugins_than_threads_do_not_stall_the_others() {
    let e = Engine::new()
        .engine_key("worker_threads = 1")
        .raw(&fixture("good", "behaviour = \"ok\"", ""))
        .raw(&fixture(
            "spin1",
            "behaviour = \"spin\"",
            "timeout = \"3s\"",
        ))
        .raw(&fixture(
            "spin2",
            "behaviour = \"spin\"",
            "timeout = \"3s\"",
        ))
        .raw(&fixture(
            "spin3",
            "behaviour = \"spin\"",
            "timeout = \"3s\"",
        ))
        .start();
    let s = e.wait_for(
        "spinners timing out while good runs every second",
        WAIT,
        |s| {
            ["spin1", "spin2", "spin3"].iter().all(|p| {
                count(
                    s,
                    "wasmprobe_probe_runs_total",
                    &[("probe", p), ("result", "timeout")],
                ) >= 2.0
            }) && count(
                s,
                "wasmprobe_probe_runs_total",
                &[("probe", "good"), ("result", "success")],
            ) >= 6.0
        },
    );
    // Three plugins spin on one worker thread, yet the good probe keeps
    // its once-a-second schedule.
    assert!(
        s.get("wasmprobe_probe_runs_skipped_total", &[("probe", "good")])
            .is_none(),
        "{}",
        s.text
    );
    let p99_bucket = s.value("wasmprobe_schedule_lag_seconds_bucket", &[("le", "0.5")]);
    let total = s.value("wasmprobe_schedule_lag_seconds_count", &[]);
    println!(
        "schedule lag with 3 spinners on 1 thread: {p99_bucket} of {total} starts within 0.5s"
    );
    assert_eq!(get(&e.url("/healthz"), None).status, 200);
}

#[test]
fn state_survives_between_runs_of_a_probe() {
    let e = Engine::new()
        .raw(&fixture("counter", "behaviour = \"state\"", ""))
        .start();
    let s = e.wait_for("three runs", WAIT, |s| {
        s.get("misbehave_state_runs", &[("probe", "counter")])
            .is_some_and(|v| v >= 3.0)
    });
    let runs = s.value(
        "wasmprobe_probe_runs_total",
        &[("probe", "counter"), ("result", "success")],
    );
    assert_eq!(
        s.value("misbehave_state_runs", &[("probe", "counter")]),
        runs
    );
}

#[test]
fn gauges_replace_counters_and_histograms_accumulate() {
    let e = Engine::new()
        .raw(&fixture("acc", "behaviour = \"ok\"", ""))
        .start();
    let s = e.wait_for("three runs", WAIT, |s| {
        s.get("misbehave_runs_total", &[("probe", "acc")])
            .is_some_and(|v| v >= 3.0)
    });
    let runs = s.value(
        "wasmprobe_probe_runs_total",
        &[("probe", "acc"), ("result", "success")],
    );
    assert_eq!(s.value("misbehave_runs_total", &[("probe", "acc")]), runs);
    assert_eq!(
        s.value("misbehave_observed_seconds_count", &[("probe", "acc")]),
        runs
    );
    assert_eq!(
        s.value(
            "misbehave_observed_seconds_bucket",
            &[("probe", "acc"), ("le", "0.1")]
        ),
        0.0
    );
    assert_eq!(
        s.value(
            "misbehave_observed_seconds_bucket",
            &[("probe", "acc"), ("le", "1")]
        ),
        runs
    );
    assert_eq!(
        s.value("misbehave_value", &[("probe", "acc"), ("v", "ok")]),
        1.0
    );
}

#[test]
fn bad_samples_are_dropped_and_counted() {
    let e = Engine::new()
        .raw(&fixture("sloppy", "behaviour = \"undeclared\"", ""))
        .start();
    let s = e.wait_for("a run", WAIT, |s| {
        s.get("probe_success", &[("probe", "sloppy")]).is_some()
    });
    assert_eq!(
        s.value("misbehave_value", &[("probe", "sloppy"), ("v", "kept")]),
        2.0
    );
    assert!(s.all("not_declared").is_empty());
    let r = |reason: &str| {
        s.value(
            "wasmprobe_probe_samples_rejected_total",
            &[("probe", "sloppy"), ("reason", reason)],
        )
    };
    // `probe_success` from a plugin is just another undeclared family.
    assert!(r("unknown_family") >= 2.0, "{}", s.text);
    assert!(r("undeclared_label") >= 1.0);
    assert!(r("invalid_value") >= 2.0);
    assert_eq!(s.value("probe_success", &[("probe", "sloppy")]), 1.0);
}

#[test]
fn oversized_output_rejects_the_run() {
    let e = Engine::new()
        .raw(&fixture(
            "wide",
            "behaviour = \"many_series\"\ncount = 5000",
            "[probes.wide.limits]\nmax_series = 100",
        ))
        .raw(&fixture(
            "big",
            "behaviour = \"big_output\"\ncount = 200000",
            "[probes.big.limits]\nmax_output = \"64KiB\"",
        ))
        .start();
    let s = e.wait_for("rejections", WAIT, |s| {
        ["wide", "big"].iter().all(|p| {
            s.get(
                "wasmprobe_probe_runs_total",
                &[("probe", p), ("result", "rejected")],
            )
            .is_some()
        })
    });
    assert!(s.all("misbehave_value").is_empty(), "{}", s.text);
    assert!(e.log().contains("limits.max_series is 100"), "{}", e.log());
}

#[test]
fn injected_label_values_cannot_forge_series() {
    let e = Engine::new()
        .raw(&fixture("inject", "behaviour = \"inject\"", ""))
        .start();
    let s = e.wait_for("a run", WAIT, |s| {
        s.get("probe_success", &[("probe", "inject")]).is_some()
    });
    assert!(s.all("injected_series").is_empty(), "{}", s.text);
    let values: Vec<&str> = s
        .all("misbehave_value")
        .iter()
        .filter_map(|x| x.labels.get("v").map(String::as_str))
        .collect();
    assert!(values.contains(&"quote\"d"), "{values:?}");
    assert!(values.contains(&"back\\slash"), "{values:?}");
    assert!(values.contains(&"new\nline"), "{values:?}");
    assert!(
        values.contains(&"x\"} 1\ninjected_series 666\n# EOF\n"),
        "{values:?}"
    );
    assert!(values.contains(&"nul\u{FFFD}byte"), "{values:?}");
    promtool_check(&s.text);
    let om = get(
        &e.url("/metrics"),
        Some("application/openmetrics-text; version=1.0.0"),
    );
    assert_eq!(
        om.body.lines().filter(|l| *l == "# EOF").count(),
        1,
        "{}",
        om.body
    );
    assert!(
        om.body.lines().all(|l| !l.starts_with("injected_series")),
        "{}",
        om.body
    );
    assert!(om.body.ends_with("# EOF\n"));
    let parsed = Scrape::parse_openmetrics(&om.body);
    assert!(parsed.all("injected_series").is_empty());
    assert!(
        parsed
            .all("misbehave_value")
            .iter()
            .any(|x| x.labels.get("v").map(String::as_str)
                == Some("x\"} 1\ninjected_series 666\n# EOF\n"))
    );
}

#[test]
fn no_run_finds_a_trace_of_the_run_before_it() {
    // On-demand runs of one module reuse the same pool slot (checked
    // below where the kernel allows it), so each run reads the memory the previous one marked
    // (statics, initialised data and 4 MiB of heap) after the host has
    // reset it.
    let e = Engine::new()
        .probe(
            "residue",
            "plugin = \"misbehave\"\nallow = [\"http://127.0.0.1:9\"]\n[probes.residue.config]\nbehaviour = \"residue\"",
        )
        .start();
    // With an empty compile cache the plugin starts on the baseline tier,
    // which has no pool; the runs below are meant for pool slots.
    e.wait_for_log("misbehave on optimized code", WAIT, |l| {
        l.contains("plugin=misbehave")
            && (l.contains("plugin optimized")
                || (l.contains("plugin load steps") && l.contains("optimized=true")))
    });
    let url = e.url("/probe?module=residue&target=http://127.0.0.1:9/");
    let runs = 60;
    let mut checked = (f64::MAX, 0.0f64);
    let started = std::time::Instant::now();
    let mut in_runs = 0.0;
    for i in 0..runs {
        let r = get(&url, None);
        assert_eq!(r.status, 200, "run {i}: {}", r.body);
        let s = Scrape::parse(&r.body);
        in_runs += s.value("probe_duration_seconds", &[("probe", "residue")]);
        assert_eq!(
            s.value("misbehave_residue_bytes", &[("probe", "residue")]),
            0.0,
            "run {i} found bytes an earlier run left:\n{}",
            s.text
        );
        checked.0 = checked.0.min(s.value(
            "misbehave_residue_checked",
            &[("probe", "residue"), ("end", "low")],
        ));
        checked.1 = checked.1.max(s.value(
            "misbehave_residue_checked",
            &[("probe", "residue"), ("end", "high")],
        ));
    }
    // The pool keeps per-thread shards, each with its own slots: one
    // request's run after another takes the slot its shard used last, so
    // the runs shared at most one slot per shard. That holds where the
    // kernel reports dirtied pages (PAGEMAP_SCAN, Linux 6.7+); elsewhere
    // freed slots are decommitted in batches of 64 and come back later.
    let metrics = e.scrape();
    let warm = metrics.value("wasmprobe_pool_warm_slots", &[]);
    if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        let shards = std::thread::available_parallelism().map_or(1, |n| n.get().min(16));
        assert!(
            (1.0..=shards as f64).contains(&warm),
            "{runs} runs left {warm} warm slots, expected 1..={shards} (one per pool shard):\n{}",
            metrics.text
        );
        assert!(metrics.value("wasmprobe_pool_warm_resident_bytes", &[]) > 0.0);
    } else {
        println!("no PAGEMAP_SCAN here: slot reuse between runs not checked");
    }
    println!(
        "{runs} runs in {warm} slot(s), 0 bytes of residue in linear memory {:#x}..{:#x}; \
         {:.1} ms per request, {:.1} ms in the run",
        checked.0 as u64,
        checked.1 as u64,
        started.elapsed().as_secs_f64() * 1e3 / f64::from(runs),
        in_runs * 1e3 / f64::from(runs)
    );
}

/// Plugin code carries no native unwind info: wasmtime walks wasm frames
/// by frame pointer, so a trap still names where in the plugin it was,
/// for the plugin's author running `wasmprobe probe`.
#[test]
fn a_trap_is_reported_with_its_wasm_backtrace() {
    let engine = Engine::new().raw(&fixture("panics", "behaviour = \"panic\"", ""));
    let config = engine.file("probes.toml", &engine.text());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(["probe", "--probe", "panics", "--log", "debug", "--config"])
        .arg(&config)
        .env_remove("WASMPROBE_LOG")
        .output()
        .unwrap_or_else(|e| panic!("wasmprobe probe: {e}"));
    let all = said(&out);
    assert!(all.contains("trap (unreachable)"), "{all}");
    assert!(all.contains("wasm backtrace:"), "{all}");
    assert!(all.matches("<wasm function ").count() >= 2, "{all}");
}
