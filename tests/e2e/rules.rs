//! The shipped Prometheus rules and Grafana dashboard: promtool checks and
//! unit-tests the rules, and every metric they name is one the engine or a
//! bundled plugin really declares.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;

use wasmprobe::config::PluginName;
use wasmprobe::exposition::{Exposition, FamilyDef, Kind};
use wasmprobe::runtime::engine::PoolSize;
use wasmprobe::runtime::{Plugin, WasmEngine};

use crate::harness::{root, said, wasm};

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("promtool is missing ({e}): install Debian's `prometheus` package (scripts/test does)"));
    assert!(out.status.success(), "promtool {args:?}:\n{}", said(&out));
}

fn files(dir: &str, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(Result::ok)
        .map(|e| format!("{dir}/{}", e.file_name().to_string_lossy()))
        .filter(|f| f.ends_with(suffix))
        .collect();
    v.sort();
    v
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let rules = files("rules", ".rules.yml");
    assert!(rules.len() >= 2);
    let mut args = vec!["check", "rules"];
    args.extend(rules.iter().map(String::as_str));
    promtool(&args);
    let tests = files("rules/tests", ".test.yml");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    promtool(&args);
}

/// Every series name the engine and the bundled plugins can emit.
fn declared_names() -> BTreeSet<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let engine = Arc::new(
        WasmEngine::new(
            PoolSize {
                instances: 4,
                max_memory: 64 << 20,
            },
            Some(&root().join("target").join("e2e-cache")),
        )
        .unwrap_or_else(|e| panic!("engine: {e}")),
    );
    let mut defs = Exposition::new()
        .families()
        .snapshot()
        .iter()
        .map(|d| (**d).clone())
        .collect::<Vec<_>>();
    for name in [
        "http-health",
        "icmp",
        "tcp",
        "dns",
        "grpc",
        "scrape-compare",
        "treaty-kpis",
        "anchor-job",
    ] {
        let plugin_name = PluginName::try_from(name.to_string()).unwrap_or_else(|e| panic!("{e}"));
        let plugin = rt
            .block_on(Plugin::load(
                &engine,
                &plugin_name,
                &wasm("plugins", name),
                None,
            ))
            .unwrap_or_else(|e| panic!("{e}"));
        defs.extend(
            FamilyDef::declared(plugin.info.families).unwrap_or_else(|e| panic!("{name}: {e}")),
        );
    }
    let mut names = BTreeSet::new();
    for d in defs {
        names.insert(d.name.clone());
        if d.kind == Kind::Histogram {
            for s in ["_bucket", "_count", "_sum"] {
                names.insert(format!("{}{s}", d.name));
            }
        }
    }
    names
}

/// Metric-looking names in a text: our prefixes followed by name characters.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes: Vec<char> = text.chars().collect();
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut i = 0;
    while i < bytes.len() {
        let starts = i == 0 || !(is_name(bytes[i - 1]) || bytes[i - 1] == ':');
        if starts && bytes[i].is_ascii_alphabetic() {
            let mut j = i;
            while j < bytes.len() && (is_name(bytes[j]) || bytes[j] == ':') {
                j += 1;
            }
            let word: String = bytes[i..j].iter().collect();
            let ours = [
                "probe_",
                "treaty_",
                "anchor_",
                "wasmprobe_",
                "scrape_compare_",
            ]
            .iter()
            .any(|p| word.starts_with(p));
            if ours && !word.contains(':') {
                out.insert(word);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn rules_and_dashboard_name_only_real_metrics() {
    let declared = declared_names();
    let mut texts = Vec::new();
    for f in files("rules", ".rules.yml") {
        texts.push((
            f.clone(),
            std::fs::read_to_string(root().join(&f)).unwrap_or_default(),
        ));
    }
    let dashboard =
        std::fs::read_to_string(root().join("dashboards/wasmprobe.json")).unwrap_or_default();
    let parsed: serde_json::Value =
        serde_json::from_str(&dashboard).unwrap_or_else(|e| panic!("dashboard is not JSON: {e}"));
    let mut exprs = String::new();
    for p in parsed["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push_str(t["expr"].as_str().unwrap_or_default());
            exprs.push('\n');
        }
    }
    assert!(exprs.contains("anchor_attempts_total") && exprs.contains("anchor_failures_total"));
    // The board narrows by job, instance, probe and target; "All" of
    // `$target` is `.*`, which also matches series without the label.
    let variables: Vec<(&str, &str)> = parsed["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or_default(),
                v["allValue"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    for name in ["job", "instance", "probe", "target"] {
        assert!(
            variables.contains(&(name, ".*")),
            "dashboard variable ${name} with allValue .*: {variables:?}"
        );
    }
    for expr in exprs.lines().filter(|e| e.contains("probe=~\"$probe\"")) {
        assert!(expr.contains("target=~\"$target\""), "{expr}");
    }
    texts.push(("dashboards/wasmprobe.json".into(), exprs));
    let mut unknown = Vec::new();
    for (file, text) in &texts {
        for name in referenced(text) {
            if !declared.contains(&name) {
                unknown.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "not declared by the engine or a bundled plugin:\n{}",
        unknown.join("\n")
    );
}

/// Every shipped alert links to its section of docs/runbooks.md, under
/// the project's repository URL: a link that leads nowhere at 3 a.m. is
/// worse than none.
#[test]
fn every_alert_has_a_runbook_that_exists() {
    let rules: String = files("rules", ".rules.yml")
        .iter()
        .map(|f| std::fs::read_to_string(root().join(f)).unwrap_or_else(|e| panic!("{f}: {e}")))
        .collect::<Vec<_>>()
        .join("\n");
    let runbooks =
        std::fs::read_to_string(root().join("docs/runbooks.md")).unwrap_or_else(|e| panic!("{e}"));
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap_or_default();
    let repository = manifest
        .lines()
        .find_map(|l| l.strip_prefix("repository = "))
        .map(|r| r.trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("no repository in Cargo.toml"));
    let prefix = format!("{repository}/blob/main/docs/runbooks.md#");
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    let urls: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
        .map(|u| u.trim_matches('"'))
        .collect();
    assert_eq!(alerts.len(), urls.len(), "an alert without runbook_url");
    for (alert, url) in alerts.iter().zip(&urls) {
        let anchor = url
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{alert}: {url} is not under {prefix}"));
        assert_eq!(anchor, alert.to_lowercase(), "{alert}: {url}");
        assert!(
            anchors.contains(anchor),
            "{alert}: docs/runbooks.md has no section {anchor}"
        );
    }
}
