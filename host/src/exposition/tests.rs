//! The exposition as a whole: commits, budgets and both encodings.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::runtime::record::{RunRecord, RunResult, Sample};

fn setup() -> (Exposition, PluginFamilies) {
    let exp = Exposition::new();
    let def = FamilyDef {
        name: "probe_http_status_code".into(),
        help: "Response \"status\" code\nof the last request".into(),
        kind: Kind::Gauge,
        unit: None,
        labels: vec!["phase".into()],
        buckets: vec![],
    };
    let mut fams = PluginFamilies::default();
    let id = exp.families().register(def, "http-health").unwrap_or(0);
    if let Some(d) = exp.families().get(id) {
        fams.insert(id, d);
    }
    (exp, fams)
}

fn record(samples: Vec<Sample>, success: bool) -> RunRecord {
    RunRecord {
        logs: Vec::new(),
        calls: Vec::new(),
        optimized: true,
        result: if success {
            RunResult::Success
        } else {
            RunResult::Failure
        },
        trap: None,
        success,
        duration: Duration::from_millis(250),
        finished_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        message: None,
        samples,
        usage: Default::default(),
    }
}

fn name(s: &str) -> crate::config::ProbeName {
    crate::config::ProbeName::try_from(s.to_string()).unwrap_or_else(|_| unreachable!())
}

/// Probe `p`'s only run (labelled `probe="p"`), attached to `exp`.
fn attached(exp: &Exposition, p: &str, budget: Arc<SeriesBudget>) -> Arc<ProbeSlot> {
    let slot = Arc::new(exp.detached_slot(name(p), "", vec![("probe".into(), p.into())], budget));
    exp.attach(slot.clone());
    slot
}

#[test]
fn one_family_header_for_many_probes() {
    let (exp, fams) = setup();
    let budget = SeriesBudget::new(100);
    for p in ["a", "b"] {
        let slot = attached(&exp, p, budget.clone());
        let s = Sample {
            name: "probe_http_status_code".into(),
            labels: vec![("phase".into(), "x\"y".into())],
            value: 200.0,
        };
        exp.commit(&slot, &fams, record(vec![s], true));
    }
    let text = exp.encode(Format::Classic);
    assert_eq!(
        text.matches("# TYPE probe_http_status_code gauge").count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("probe_http_status_code{probe=\"a\",phase=\"x\\\"y\"} 200\n"),
        "{text}"
    );
    assert!(
        text.contains("probe_http_status_code{probe=\"b\",phase=\"x\\\"y\"} 200\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "# HELP probe_http_status_code Response \"status\" code\\nof the last request\n"
        ),
        "{text}"
    );
    assert!(text.contains("probe_success{probe=\"a\"} 1\n"), "{text}");
    assert!(
        text.contains("wasmprobe_probe_runs_total{probe=\"a\",result=\"success\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains("# EOF"));
    let om = exp.encode(Format::OpenMetrics);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE wasmprobe_probe_runs counter\n"), "{om}");
}

#[test]
fn budget_refuses_a_run_as_a_whole() {
    let (exp, fams) = setup();
    let budget = SeriesBudget::new(1);
    let slot = attached(&exp, "a", budget);
    let samples = (0..3)
        .map(|i| Sample {
            name: "probe_http_status_code".into(),
            labels: vec![("phase".into(), i.to_string())],
            value: 1.0,
        })
        .collect();
    let result = exp.commit(&slot, &fams, record(samples, true));
    assert_eq!(result, RunResult::Rejected);
    let text = exp.encode(Format::Classic);
    assert!(!text.contains("probe_http_status_code{"), "{text}");
    assert!(text.contains("probe_success{probe=\"a\"} 0\n"), "{text}");
}

#[test]
fn removed_probes_disappear() {
    let (exp, fams) = setup();
    let slot = attached(&exp, "gone", SeriesBudget::new(10));
    exp.commit(&slot, &fams, record(vec![], false));
    assert!(exp.encode(Format::Classic).contains("probe=\"gone\""));
    exp.remove_slot(&name("gone"), "");
    assert!(!exp.encode(Format::Classic).contains("probe=\"gone\""));
}

/// Gauges are held only as their rendered lines: they survive a skipped
/// start, are replaced by the next run's, count against the budget, go
/// with a run that reports nothing, and with their family on a reload.
#[test]
fn gauges_kept_as_lines_follow_runs_skips_and_reloads() {
    let (exp, fams) = setup();
    let budget = SeriesBudget::new(10);
    let slot = attached(&exp, "a", budget.clone());
    let status = |phase: &str, v: f64| Sample {
        name: "probe_http_status_code".into(),
        labels: vec![("phase".into(), phase.into())],
        value: v,
    };
    let line = |phase: &str, v: &str| {
        format!("probe_http_status_code{{probe=\"a\",phase=\"{phase}\"}} {v}\n")
    };
    exp.commit(
        &slot,
        &fams,
        record(vec![status("x", 200.0), status("y", 301.0)], true),
    );
    assert_eq!(slot.series(), 2);
    assert_eq!(budget.used(), 2);
    exp.count_skip(&slot);
    let text = exp.encode(Format::Classic);
    assert!(
        text.contains(&line("x", "200")) && text.contains(&line("y", "301")),
        "{text}"
    );

    exp.commit(&slot, &fams, record(vec![status("x", 503.0)], true));
    let text = exp.encode(Format::Classic);
    assert!(text.contains(&line("x", "503")), "{text}");
    assert!(!text.contains("phase=\"y\""), "{text}");
    assert_eq!(budget.used(), 1);

    exp.retain_families(&slot, &fams);
    assert!(exp.encode(Format::Classic).contains(&line("x", "503")));
    assert_eq!(slot.series(), 1);
    exp.retain_families(&slot, &PluginFamilies::default());
    assert!(
        !exp.encode(Format::Classic)
            .contains("probe_http_status_code{")
    );
    assert_eq!(budget.used(), 0);

    exp.commit(&slot, &fams, record(vec![status("x", 200.0)], true));
    exp.commit(&slot, &fams, record(vec![], false));
    assert!(
        !exp.encode(Format::Classic)
            .contains("probe_http_status_code{")
    );
    assert_eq!(budget.used(), 0);
}

/// Sample lines of an exposition: (name, labels as written, value).
fn samples(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            Some((name.to_string(), labels.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn process_families_as_go_exporters_write_them() {
    let exp = Exposition::new();
    let text = exp.encode(Format::Classic);
    for (name, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name}\n{text}"
        );
        let found: Vec<_> = samples(&text)
            .into_iter()
            .filter(|(n, _, _)| n == name)
            .collect();
        assert_eq!(found.len(), 1, "{name}\n{text}");
        assert_eq!(found[0].1, "", "{name}\n{text}");
        assert!(found[0].2 >= 0.0, "{name}\n{text}");
    }
    assert!(
        text.contains("# HELP process_open_fds Number of open file descriptors.\n"),
        "{text}"
    );
    let om = exp.encode(Format::OpenMetrics);
    assert!(
        om.contains("# TYPE process_cpu_seconds counter\n# UNIT process_cpu_seconds seconds\n"),
        "{om}"
    );
}

#[test]
fn build_info_names_the_revision() {
    let exp = Exposition::new();
    let text = exp.encode(Format::Classic);
    let info: Vec<_> = samples(&text)
        .into_iter()
        .filter(|(n, _, _)| n == "wasmprobe_build_info")
        .collect();
    let labels = format!(
        "version=\"{}\",wasmtime=\"{}\",revision=\"{}\"",
        env!("CARGO_PKG_VERSION"),
        crate::runtime::WASMTIME_VERSION,
        env!("WASMPROBE_REVISION")
    );
    assert_eq!(
        info,
        vec![("wasmprobe_build_info".into(), labels, 1.0)],
        "{text}"
    );
    assert!(!env!("WASMPROBE_REVISION").is_empty());
}

#[test]
fn engine_events_show_in_the_scrape() {
    let exp = Exposition::new();
    let g = &exp.global;
    g.probes_installed(3, 1, 2);
    g.ondemand_refused_busy();
    g.ondemand_run_finished(RunResult::Success);
    g.plugin_load_failed("broken");
    g.reload_succeeded(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    g.reload_failed();
    g.scheduled_run_started_late(Duration::ZERO);
    let running = g.run_started();
    assert_eq!(g.runs_in_flight(), 1);
    let text = exp.encode(Format::Classic);
    drop(running);
    assert_eq!(g.runs_in_flight(), 0);
    // One scheduled run and one on demand; the refused request ran nothing.
    assert_eq!(g.runs_total(), 2);
    let got = samples(&text);
    for (name, labels, value) in [
        ("wasmprobe_probes", "scheduled=\"true\"", 3.0),
        ("wasmprobe_probes", "scheduled=\"false\"", 1.0),
        ("wasmprobe_plugins_loaded", "", 2.0),
        ("wasmprobe_ondemand_rejected_total", "", 1.0),
        ("wasmprobe_ondemand_runs_total", "result=\"success\"", 1.0),
        (
            "wasmprobe_plugin_load_failures_total",
            "plugin=\"broken\"",
            1.0,
        ),
        ("wasmprobe_config_last_reload_successful", "", 0.0),
        (
            "wasmprobe_config_last_reload_success_timestamp_seconds",
            "",
            1_700_000_000.0,
        ),
        ("wasmprobe_runs_in_flight", "", 1.0),
    ] {
        assert!(
            got.contains(&(name.to_string(), labels.to_string(), value)),
            "{name}{{{labels}}} {value}\n{text}"
        );
    }
}

#[test]
fn a_scrape_in_pieces_is_the_text_written_whole() {
    let (exp, fams) = setup();
    let budget = SeriesBudget::new(1000);
    for p in 0..40 {
        let p = format!("p{p:02}");
        let slot = attached(&exp, &p, budget.clone());
        // Some probes fail without samples: families with gaps.
        let samples = if p.ends_with('3') {
            Vec::new()
        } else {
            vec![Sample {
                name: "probe_http_status_code".into(),
                labels: vec![("phase".into(), p.clone())],
                value: 200.0,
            }]
        };
        exp.commit(&slot, &fams, record(samples, !p.ends_with('3')));
    }
    for format in [Format::Classic, Format::OpenMetrics] {
        let whole = exp.encode(format);
        for limit in [0, 1, 64, 1000, 4096] {
            let mut scrape = exp.scrape(format);
            let (mut text, mut pieces) = (String::new(), 0);
            loop {
                let mut piece = String::new();
                let more = scrape.fill(&mut piece, limit);
                text.push_str(&piece);
                pieces += 1;
                if !more {
                    break;
                }
            }
            // The process's own gauges (RSS, CPU) move between scrapes.
            let steady = |t: &str| {
                t.lines()
                    .filter(|l| !l.starts_with("process_"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            assert!(steady(&text) == steady(&whole), "limit {limit}");
            assert!(
                limit > 1000 || pieces > 10,
                "limit {limit}: {pieces} pieces"
            );
        }
        // Every family is one block: its header once, its lines after it.
        let mut seen = std::collections::BTreeSet::new();
        let mut current = String::new();
        for line in whole.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap_or_default().to_string();
                assert!(seen.insert(current.clone()), "{current} twice:\n{whole}");
            } else if !line.starts_with('#') {
                assert!(
                    line.starts_with(current.as_str()),
                    "{line} outside {current}"
                );
            }
        }
        assert!(
            whole.matches("probe_http_status_code{").count() == 36,
            "{whole}"
        );
    }
}

#[test]
fn a_probe_shows_host_lines_from_its_first_publish_with_its_own_labels() {
    let (exp, fams) = setup();
    let budget = SeriesBudget::new(100);
    let slot = |p: &str| attached(&exp, p, budget.clone());
    let (ran, waiting) = (slot("ran"), slot("waiting"));
    let text = exp.encode(Format::Classic);
    assert!(!text.contains("wasmprobe_probe_runs_total"), "{text}");
    exp.commit(&ran, &fams, record(Vec::new(), true));
    exp.commit(&ran, &fams, record(Vec::new(), false));
    let text = exp.encode(Format::Classic);
    for line in [
        "wasmprobe_probe_runs_total{probe=\"ran\",result=\"success\"} 1\n",
        "wasmprobe_probe_runs_total{probe=\"ran\",result=\"failure\"} 1\n",
        "probe_success{probe=\"ran\"} 0\n",
        "wasmprobe_probe_series{probe=\"ran\"} 0\n",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    assert!(!text.contains("probe=\"waiting\""), "{text}");
    assert_eq!(text.matches("# TYPE wasmprobe_probe_runs_total").count(), 1);
    exp.count_skip(&waiting);
    let text = exp.encode(Format::Classic);
    assert!(
        text.contains("wasmprobe_probe_runs_skipped_total{probe=\"waiting\"} 1\n"),
        "{text}"
    );
}

/// A plugin's gauge label value written as an attack (a line break and
/// quotes to end the line and forge another series, a value past the
/// length bound): the scrape escapes the one, drops the other, and stays
/// one valid series per gauge under the host's own `probe` label.
#[test]
fn a_gauge_label_value_cannot_forge_a_line_or_outgrow_its_bound() {
    let (exp, fams) = setup();
    let slot = attached(&exp, "a", SeriesBudget::new(10));
    let gauge = |phase: String| Sample {
        name: "probe_http_status_code".into(),
        labels: vec![("phase".into(), phase)],
        value: 200.0,
    };
    let forged = "x\"} 1\nwasmprobe_forged{probe=\"b\"} 1\n#".to_string();
    let long = "y".repeat(crate::names::MAX_LABEL_VALUE + 1);
    exp.commit(
        &slot,
        &fams,
        record(vec![gauge(forged), gauge(long.clone())], true),
    );
    let text = exp.encode(Format::Classic);
    assert!(
        text.contains(
            "probe_http_status_code{probe=\"a\",phase=\"x\\\"} 1\\nwasmprobe_forged{probe=\\\"b\\\"} 1\\n#\"} 200\n"
        ),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("wasmprobe_forged")),
        "{text}"
    );
    assert!(!text.contains(&long), "{text}");
    assert_eq!(slot.series(), 1);
    assert!(
        text.contains(
            "wasmprobe_probe_samples_rejected_total{probe=\"a\",reason=\"label_too_long\"} 1\n"
        ),
        "{text}"
    );
}
