//! Hostile plugins, one attack per test: each leaves the engine alive,
//! `/metrics` valid and prompt while the attack runs, a canary probe on its
//! once-a-second schedule, and the failure visible as one bounded reason.
//! Each test prints its numbers (time to trap, `/metrics` latency during
//! the attack, RSS delta).

use std::time::{Duration, Instant};

use crate::harness::{Engine, Running, Scrape, get, promtool_check, wasm};
use crate::targets;

const WAIT: Duration = Duration::from_secs(120);

fn misbehave(name: &str, schedule: &str, config: &str, extra: &str) -> String {
    format!(
        "[probes.{name}]\nplugin = \"misbehave\"\nschedule = \"{schedule}\"\n{extra}\n[probes.{name}.config]\n{config}\n"
    )
}

/// An engine with a canary probe beside the attackers.
fn engine() -> Engine {
    Engine::new().raw(&misbehave(
        "canary",
        "* * * * * *",
        "behaviour = \"ok\"",
        "",
    ))
}

fn runs(s: &Scrape, probe: &str, result: &str) -> f64 {
    s.get(
        "wasmprobe_probe_runs_total",
        &[("probe", probe), ("result", result)],
    )
    .unwrap_or(0.0)
}

fn traps(s: &Scrape, probe: &str, reason: &str) -> f64 {
    s.get(
        "wasmprobe_probe_traps_total",
        &[("probe", probe), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

/// Checks what every attack must leave: a valid, prompt `/metrics` (parsed
/// by promtool and the OpenMetrics parser), a live canary that kept its
/// schedule, `/healthz` 200. Prints the latency and RSS numbers.
fn survived(e: &Running, what: &str, rss_before: u64) -> Scrape {
    let before = runs(&e.scrape(), "canary", "success");
    let (p50, worst) = e.scrape_latency(20);
    let after = e.wait_for("the canary to keep running", WAIT, |s| {
        runs(s, "canary", "success") >= before + 2.0
    });
    promtool_check(&after.text);
    let om = get(
        &e.url("/metrics"),
        Some("application/openmetrics-text; version=1.0.0"),
    );
    let _ = Scrape::parse_openmetrics(&om.body);
    assert_eq!(get(&e.url("/healthz"), None).status, 200);
    assert!(
        after
            .get("wasmprobe_probe_runs_skipped_total", &[("probe", "canary")])
            .is_none(),
        "the canary missed its schedule during {what}:\n{}",
        after.text
    );
    let rss = e.rss_kib();
    println!(
        "{what}: /metrics p50 {p50:.1} ms, worst {worst:.1} ms during the attack; RSS {} -> {} MiB ({:+} MiB)",
        rss_before / 1024,
        rss / 1024,
        (rss as i64 - rss_before as i64) / 1024
    );
    after
}

#[test]
fn cpu_attacks_end_at_their_deadline() {
    let mut e = engine().engine_key("worker_threads = 2");
    // More spinners than worker threads, and bulk memory loops.
    for i in 0..4 {
        e = e.raw(&misbehave(
            &format!("spin{i}"),
            "* * * * * *",
            "behaviour = \"spin\"",
            "timeout = \"1s\"",
        ));
    }
    for i in 0..2 {
        e = e.raw(&misbehave(
            &format!("bulk{i}"),
            "* * * * * *",
            "behaviour = \"bulk_memory\"",
            "timeout = \"1s\"",
        ));
    }
    let e = e.start();
    let rss = e.rss_kib();
    let s = e.wait_for("two timeouts of every attacker", WAIT, |s| {
        (0..4).all(|i| runs(s, &format!("spin{i}"), "timeout") >= 2.0)
            && (0..2).all(|i| runs(s, &format!("bulk{i}"), "timeout") >= 2.0)
            && runs(s, "canary", "success") >= 5.0
    });
    let s2 = survived(&e, "6 CPU attackers on 2 worker threads", rss);
    for p in ["spin0", "bulk0"] {
        println!(
            "{p}: run ended after {:.3} s (timeout 1 s)",
            s.value("probe_duration_seconds", &[("probe", p)])
        );
    }
    assert_eq!(s2.value("probe_success", &[("probe", "canary")]), 1.0);
}

/// A plugin floods its target through one `send-batch` and hoards big
/// bodies: the run's request budget refuses every request past it before
/// a connection opens, the transfer budget bounds what the host keeps for
/// the batch, each refusal is a `denied` error naming the budget, and the
/// probe's refusals are counted by reason.
#[test]
fn floods_are_held_to_the_run_budgets() {
    let target = targets::counting();
    let allow = format!("allow = [\"{}\"]", target.origin("http"));
    let e = engine()
        .raw(&misbehave(
            "flood",
            "*/2 * * * * *",
            &format!(
                "behaviour = \"flood\"\ncount = 40\nurl = \"{}\"",
                target.url("/ok")
            ),
            &format!("{allow}\n[probes.flood.limits]\nmax_requests = 25"),
        ))
        .raw(&misbehave(
            "hoard",
            "*/2 * * * * *",
            &format!(
                "behaviour = \"flood\"\ncount = 40\nurl = \"{}\"",
                target.url("/bytes/262144")
            ),
            &format!("{allow}\n[probes.hoard.limits]\nmax_transfer = \"1MiB\""),
        ))
        .start();
    let rss_before = e.rss_kib();
    let value = |s: &Scrape, probe: &str, v: &str| {
        s.get("misbehave_value", &[("probe", probe), ("v", v)])
            .unwrap_or(-1.0)
    };
    let refused = |s: &Scrape, probe: &str, reason: &str| {
        s.get(
            "wasmprobe_probe_refusals_total",
            &[("probe", probe), ("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    let s = e.wait_for("a run of each", WAIT, |s| {
        runs(s, "flood", "success") >= 1.0 && runs(s, "hoard", "success") >= 1.0
    });
    // 41 requests asked, 25 admitted, 16 refused before connecting.
    assert_eq!(value(&s, "flood", "ok"), 25.0, "{}", s.text);
    assert_eq!(value(&s, "flood", "denied"), 16.0);
    assert_eq!(
        refused(&s, "flood", "max_requests"),
        16.0 * runs(&s, "flood", "success")
    );
    // 256 KiB bodies under a 1 MiB budget: at most four are kept.
    let kept = value(&s, "hoard", "ok");
    assert!((1.0..=4.0).contains(&kept), "kept {kept}\n{}", s.text);
    assert_eq!(kept + value(&s, "hoard", "denied"), 41.0, "{}", s.text);
    assert!(refused(&s, "hoard", "max_transfer") >= 37.0);
    let received = s.value(
        "wasmprobe_probe_network_bytes_total",
        &[("probe", "hoard"), ("direction", "received")],
    );
    println!("hoard kept {kept} bodies, received {received} B over its runs");
    let status = get(&e.url("/"), None).body;
    assert!(
        status.contains("limits.max_requests = 25"),
        "the refusal names its budget:\n{status}"
    );
    let _ = survived(&e, "a request flood", rss_before);
}

#[test]
fn memory_attacks_are_refused_at_their_limits() {
    let e = engine()
        .engine_key("max_memory = \"1GiB\"")
        .raw(&misbehave(
            "hoard",
            "*/2 * * * * *",
            "behaviour = \"grow_memory\"",
            "[probes.hoard.limits]\nmemory = \"32MiB\"",
        ))
        .raw(&misbehave(
            "huge-output",
            "*/3 * * * * *",
            "behaviour = \"big_output\"\ncount = 41943040",
            "timeout = \"20s\"\n[probes.huge-output.limits]\nmemory = \"256MiB\"",
        ))
        .raw(&misbehave(
            "cardinality-bomb",
            "*/5 * * * * *",
            "behaviour = \"many_series\"\ncount = 1000000",
            "timeout = \"30s\"\n[probes.cardinality-bomb.limits]\nmemory = \"1GiB\"",
        ))
        .raw(&misbehave(
            "log-spam",
            "*/5 * * * * *",
            "behaviour = \"log_spam\"\ncount = 10000000",
            "timeout = \"20s\"",
        ))
        .start();
    let rss = e.rss_kib();
    let s = e.wait_for("every memory attack, refused", WAIT, |s| {
        traps(s, "hoard", "memory_limit") >= 1.0
            && runs(s, "huge-output", "rejected") >= 1.0
            && runs(s, "cardinality-bomb", "rejected") >= 1.0
            && (runs(s, "log-spam", "success") + runs(s, "log-spam", "timeout")) >= 1.0
    });
    let s2 = survived(&e, "memory attacks", rss);
    for p in ["hoard", "huge-output", "cardinality-bomb", "log-spam"] {
        println!(
            "{p}: run ended after {:.3} s",
            s.value("probe_duration_seconds", &[("probe", p)])
        );
    }
    for p in ["hoard", "huge-output", "cardinality-bomb"] {
        assert_eq!(s2.value("probe_success", &[("probe", p)]), 0.0, "{p}");
    }
    // Nothing of the rejected runs reached the exposition.
    assert!(
        s2.all("misbehave_value").iter().all(|x| {
            let p = x.labels.get("probe").map(String::as_str);
            p != Some("huge-output") && p != Some("cardinality-bomb")
        }),
        "a rejected run's samples were exposed"
    );
    assert!(
        s2.text.len() < 1 << 20,
        "the exposition grew to {} bytes",
        s2.text.len()
    );
    // The log kept at most its cap of the 10^7 lines per run.
    let lines = e.log().matches("line ").count();
    println!("log-spam: 10^7 log calls per run, {lines} lines reached the log");
    assert!(lines <= 100 * 4, "{lines} log lines");
}

#[test]
fn stack_overflows_trap_a_thousand_times_with_flat_memory() {
    let e = engine()
        .raw("[probes.recurse]\nplugin = \"misbehave\"\ntarget = \"http://127.0.0.1:9/\"\n[probes.recurse.config]\nbehaviour = \"recurse\"\n")
        .raw("[probes.frames]\nplugin = \"misbehave\"\ntarget = \"http://127.0.0.1:9/\"\n[probes.frames.config]\nbehaviour = \"deep_frames\"\n")
        .start();
    // From the start: the first traps must not cost memory either (a debug
    // log of a trap once symbolised a native backtrace: +400 MiB).
    let rss = e.rss_kib();
    let started = Instant::now();
    for i in 0..1000 {
        let m = if i % 2 == 0 { "recurse" } else { "frames" };
        let r = get(&e.url(&format!("/probe?module={m}")), None);
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.body.contains("probe_success{probe=\"") && r.body.contains("} 0"),
            "{}",
            r.body
        );
    }
    let per_run = started.elapsed().as_secs_f64() * 1000.0 / 1000.0;
    let grown = (e.rss_kib() as i64 - rss as i64) / 1024;
    println!("1000 stack overflows: {per_run:.1} ms per trapped run, RSS {grown:+} MiB");
    let s = survived(&e, "after 1000 stack overflows", rss);
    let total = s.value("wasmprobe_ondemand_runs_total", &[("result", "trap")]);
    assert!(total >= 1000.0, "{}", s.text);
    assert!(grown < 64, "RSS grew by {grown} MiB over 1000 traps");
}

#[test]
fn injected_names_and_labels_never_reach_the_exposition() {
    let e = engine()
        .raw(&misbehave(
            "inject",
            "* * * * * *",
            "behaviour = \"inject\"",
            "",
        ))
        .raw(&misbehave(
            "undeclared",
            "* * * * * *",
            "behaviour = \"undeclared\"",
            "",
        ))
        .raw(&misbehave(
            "impersonate",
            "* * * * * *",
            "behaviour = \"impersonate\"",
            "",
        ))
        .raw(&misbehave(
            "victim",
            "* * * * * *",
            "behaviour = \"ok\"",
            "",
        ))
        .start();
    let rss = e.rss_kib();
    e.wait_for("two runs of every injector", WAIT, |s| {
        ["inject", "undeclared", "impersonate"]
            .iter()
            .all(|p| runs(s, p, "success") >= 2.0)
    });
    let s = survived(&e, "exposition injection", rss);
    // Only real newlines end lines: no injected line, and in OpenMetrics
    // one `# EOF`, the last line.
    assert!(s.all("injected_series").is_empty());
    assert!(!s.text.contains("not_declared"));
    assert!(
        !s.text
            .lines()
            .any(|l| l.starts_with("# EOF") || l.starts_with("injected"))
    );
    let om = get(
        &e.url("/metrics"),
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .body;
    let eofs: Vec<usize> = om
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("# EOF"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(eofs, vec![om.lines().count() - 1]);
    assert!(!om.lines().any(|l| l.starts_with("injected")));
    // Impersonation: no sample of `impersonate` wears another probe's or a
    // package's labels; its own sample stays.
    for x in s.all("misbehave_value") {
        let probe = x.labels.get("probe").map(String::as_str);
        assert_ne!(
            x.labels.get("package").map(String::as_str),
            Some("payments")
        );
        assert_ne!(
            x.labels.get("team").map(String::as_str),
            Some("payments-sre")
        );
        if probe == Some("victim") {
            assert_eq!(x.labels.get("v").map(String::as_str), Some("ok"), "{x:?}");
        }
    }
    assert_eq!(
        s.value("misbehave_value", &[("probe", "impersonate"), ("v", "own")]),
        3.0
    );
    let rejected = s.value(
        "wasmprobe_probe_samples_rejected_total",
        &[("probe", "impersonate"), ("reason", "undeclared_label")],
    );
    assert!(rejected >= 8.0, "{}", s.text);
    // Negative and NaN counter increments are refused, not summed.
    assert!(
        s.value(
            "wasmprobe_probe_samples_rejected_total",
            &[("probe", "undeclared"), ("reason", "invalid_value")]
        ) >= 4.0
    );
    // The label values that tried to break out are escaped and kept.
    assert!(
        s.get(
            "misbehave_value",
            &[("probe", "inject"), ("v", "new\nline")]
        )
        .is_some()
    );
}

#[test]
fn a_family_declared_with_two_types_keeps_its_first_type() {
    let impostor = wasm("fixtures", "impostor");
    let e = engine()
        .raw(&format!("[plugins.impostor]\npath = {impostor:?}\n"))
        .raw("[probes.twin]\nplugin = \"impostor\"\nschedule = \"* * * * * *\"\n")
        .start();
    let rss = e.rss_kib();
    e.wait_for("two runs of the impostor", WAIT, |s| {
        runs(s, "twin", "success") >= 2.0
    });
    let s = survived(&e, "a family declared with two types", rss);
    // The family keeps the type it was first declared with; the impostor's
    // declaration is left out and its samples are refused, counted.
    assert_eq!(
        s.families
            .get("misbehave_observed_seconds")
            .map(|f| f.0.as_str()),
        Some("histogram"),
        "{}",
        s.text
    );
    assert!(
        s.all("misbehave_observed_seconds").iter().all(|x| x
            .labels
            .get("probe")
            .map(String::as_str)
            != Some("twin"))
    );
    assert!(
        s.value(
            "wasmprobe_probe_samples_rejected_total",
            &[("probe", "twin"), ("reason", "unknown_family")]
        ) >= 2.0,
        "{}",
        s.text
    );
    let log = e.log();
    let line = log
        .lines()
        .find(|l| l.contains("metric family left out") && l.contains("impostor"))
        .unwrap_or_else(|| panic!("no warning in the log:\n{log}"));
    println!("two types for one family: {line}");
}

#[test]
fn wasi_sockets_and_files_are_closed_to_plugins() {
    let forbidden = targets::counting();
    let e = engine()
        .raw(&misbehave(
            "sockets",
            "* * * * * *",
            &format!("behaviour = \"sockets\"\nurl = \"{}\"", forbidden.addr),
            "",
        ))
        .raw(&misbehave(
            "files",
            "* * * * * *",
            "behaviour = \"files\"",
            "",
        ))
        .start();
    let rss = e.rss_kib();
    e.wait_for("two runs of both", WAIT, |s| {
        runs(s, "sockets", "success") >= 2.0 && runs(s, "files", "success") >= 2.0
    });
    let s = survived(&e, "WASI sockets and files", rss);
    assert_eq!(forbidden.accepted(), 0, "a plugin opened a socket");
    for x in s.all("misbehave_value") {
        let p = x.labels.get("probe").map(String::as_str);
        if p == Some("sockets") || p == Some("files") {
            let v = x.labels.get("v").cloned().unwrap_or_default();
            assert!(v.starts_with("refused:"), "{p:?}: {v}");
            println!("{}: {v}", p.unwrap_or_default());
        }
    }
    assert!(!std::path::Path::new("/tmp/misbehave-was-here").exists());
}
