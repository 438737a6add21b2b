//! The exposition as a whole: commits, budgets and both encodings.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::runtime::outcome::{RunRecord, RunResult, Sample};

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
    }
}

fn name(s: &str) -> crate::config::ProbeName {
    crate::config::ProbeName::try_from(s.to_string()).unwrap_or_else(|_| unreachable!())
}

#[test]
fn one_family_header_for_many_probes() {
    let (exp, fams) = setup();
    let budget = SeriesBudget::new(100);
    for p in ["a", "b"] {
        let slot =
            Arc::new(exp.detached_slot(name(p), vec![("probe".into(), p.into())], budget.clone()));
        exp.attach(slot.clone());
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
    let slot = Arc::new(exp.detached_slot(name("a"), vec![("probe".into(), "a".into())], budget));
    exp.attach(slot.clone());
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
    let slot = Arc::new(exp.detached_slot(
        name("gone"),
        vec![("probe".into(), "gone".into())],
        SeriesBudget::new(10),
    ));
    exp.attach(slot.clone());
    exp.commit(&slot, &fams, record(vec![], false));
    assert!(exp.encode(Format::Classic).contains("probe=\"gone\""));
    exp.remove_probe(&name("gone"));
    assert!(!exp.encode(Format::Classic).contains("probe=\"gone\""));
}
