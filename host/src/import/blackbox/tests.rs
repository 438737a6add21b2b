//! Whole-file imports: modules, names, timeouts, the allow-list, the
//! report and the probes.toml it checks; and the helper the per-prober
//! tests share.

use std::path::{Path, PathBuf};

use super::*;
use crate::import::Options;

/// Converts one prober section written as `yaml` (its options, unindented),
/// as module `m` of b.yml whose options start on line 5; the icmp prober
/// gets a 5 s timeout. The section and the report's text.
pub(super) fn convert_section(prober: &str, yaml: &str) -> (Section, String) {
    let mut text = format!("modules:\n  m:\n    prober: {prober}\n    {prober}:\n");
    for line in yaml.lines() {
        text.push_str(&format!("      {line}\n"));
    }
    let value: Value = yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let lines = YamlLines::scan(&text);
    let mut ctx = Ctx::new(&lines, Report::new("b.yml"));
    let path = KeyPath::root().key("modules").key("m").key(prober);
    let v = &value["modules"]["m"][prober];
    let section = match prober {
        "http" => http::convert(&mut ctx, &path, v),
        "tcp" => tcp::convert(&mut ctx, &path, v),
        "icmp" => icmp::convert(&mut ctx, &path, v, Duration::from_secs(5)),
        "grpc" => grpc::convert(&mut ctx, &path, v),
        "dns" => dns::convert(&mut ctx, &path, v).unwrap_or_else(|why| panic!("{why}")),
        other => panic!("no prober {other}"),
    };
    (section, ctx.report.to_string())
}

/// A plugin directory holding the bundled plugins' names, so the config
/// check finds them (it only looks for the files).
fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for name in ["http-health", "tcp", "icmp", "dns", "grpc"] {
        std::fs::write(dir.path().join(format!("{name}.wasm")), b"")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    dir
}

fn options(allow: &[&str], plugins: &Path) -> Options {
    let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
    Options::new(&allow, plugins, PathBuf::from("probes.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn run(yaml: &str, allow: &[&str]) -> Imported {
    let plugins = plugin_dir();
    import(Path::new("b.yml"), yaml, &options(allow, plugins.path()))
        .unwrap_or_else(|e| panic!("{e:#?}"))
}

fn table(imported: &Imported) -> toml::Table {
    toml::from_str(&imported.toml).unwrap_or_else(|e| panic!("{e}\n{}", imported.toml))
}

/// A config in the shape of the one Debian installs: modules of every
/// prober, a sequence at its key's indentation, a regex Go reads (an
/// octal escape) and Rust's syntax refuses.
const SAMPLE: &str = "modules:
  web:
    prober: http
  web_post:
    prober: http
    timeout: 1500ms
    http:
      method: POST
  port:
    prober: tcp
  greeting:
    prober: tcp
    tcp:
      query_response:
      - expect: '^\\101 READY'
      tls: true
  health:
    prober: grpc
    grpc:
      service: \"svc\"
  ping:
    prober: icmp
    timeout: 3s
    icmp:
      ttl: 9
";

#[test]
fn a_whole_config_becomes_on_demand_probes() {
    let imported = run(SAMPLE, &[]);
    let report = imported.report.to_string();
    assert_eq!(
        report,
        "b.yml:15: greeting.tcp.query_response[0].expect: not carried over: regular expression \"^\\\\101 READY\" does not compile in the plugins' syntax (Rust regex: backreferences are not supported); written as is, every run fails until it is fixed\n\
         b.yml: note: every probe has allow = []: /probe refuses every target until you list what each module may reach (--allow RULE, or allow = [...] on each probe)\n\
         b.yml: 6 modules imported as 6 probes; 1 item not carried over"
    );
    let expected: toml::Table = toml::from_str(
        r#"
[probes.web]
plugin = "http-health"
allow = []

[probes.web_post]
plugin = "http-health"
timeout = "1500ms"
allow = []
[probes.web_post.config]
method = "POST"

[probes.port]
plugin = "tcp"
allow = []

[probes.greeting]
plugin = "tcp"
allow = []
[probes.greeting.config]
tls = true
query_response = [{ expect = '^\101 READY' }]

[probes.health]
plugin = "grpc"
allow = []
[probes.health.config]
service = "svc"

[probes.ping]
plugin = "icmp"
timeout = "3s"
allow = []
[probes.ping.config]
count = 1
timeout_ms = 3000
ttl = 9
"#,
    )
    .unwrap_or_default();
    let got = table(&imported);
    assert_eq!(
        got["probes"],
        expected["probes"].clone(),
        "{}",
        imported.toml
    );
    assert!(got["probes"]["web"].get("schedule").is_none());
    assert!(
        imported.toml.starts_with(
            "# Imported from the blackbox_exporter config b.yml by `wasmprobe import blackbox`.\n"
        ),
        "{}",
        imported.toml
    );
    assert!(
        imported
            .toml
            .contains("\n# b.yml:21: module \"ping\"\n[probes.ping]\n")
    );
}

#[test]
fn allow_rules_go_to_the_probes_whose_plugin_speaks_their_scheme() {
    let imported = run(
        SAMPLE,
        &[
            "http://10.0.0.0/8:*",
            "https://10.0.0.0/8:*",
            "tcp://10.0.0.0/8:*",
        ],
    );
    let t = table(&imported);
    let allow = |p: &str| -> Vec<String> {
        t["probes"][p]["allow"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    assert_eq!(
        allow("web"),
        ["http://10.0.0.0/8:*", "https://10.0.0.0/8:*"]
    );
    assert_eq!(
        allow("health"),
        ["http://10.0.0.0/8:*", "https://10.0.0.0/8:*"]
    );
    assert_eq!(allow("port"), ["tcp://10.0.0.0/8:*"]);
    assert!(allow("ping").is_empty());
    let report = imported.report.to_string();
    assert!(
        report.contains("b.yml:21: ping: note: no --allow rule is icmp://: allow = [] refuses every target of this probe"),
        "{report}"
    );
    assert!(!report.contains("every probe has allow = []"), "{report}");
}

#[test]
fn invalid_module_names_are_renamed_and_reported() {
    let imported = run(
        "modules:\n  \"http 2xx\":\n    prober: http\n  http_2xx:\n    prober: http\n  _internal/check:\n    prober: tcp\n  \"é\":\n    prober: icmp\n",
        &["tcp://127.0.0.1:*"],
    );
    let t = table(&imported);
    let names: Vec<&String> = t["probes"]
        .as_table()
        .map(|p| p.keys().collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        ["http_2xx", "http_2xx_2", "internal_check", "module"]
    );
    let report = imported.report.to_string();
    for line in [
        "b.yml:2: http 2xx: renamed to probe \"http_2xx_2\": a probe name is 1-128 letters",
        "b.yml:6: _internal/check: renamed to probe \"internal_check\"",
        "b.yml:8: é: renamed to probe \"module\"",
    ] {
        assert!(report.contains(line), "{line}\n---\n{report}");
    }
    assert!(!imported.report.all_carried());
}

#[test]
fn modules_that_cannot_be_imported_are_reported_and_the_rest_go_on() {
    let imported = run(
        "modules:
  noprober:
    timeout: 5s
  weird:
    prober: unix
  noname:
    prober: dns
    dns:
      query_type: A
  mixed:
    prober: http
    tcp:
      tls: true
    retries: 3
  text: just a string
extra_top_level: 1
",
        &[],
    );
    let report = imported.report.to_string();
    for line in [
        "b.yml:2: noprober: module not imported: it has no `prober`",
        "b.yml:5: weird.prober: module not imported: prober \"unix\" is not one of http, tcp, icmp, dns, grpc",
        "b.yml:6: noname: module not imported: it has no dns.query_name",
        "b.yml:12: mixed.tcp: note: ignored: the module's prober is http",
        "b.yml:14: mixed.retries: unknown key: not carried over",
        "b.yml:15: text: module not imported: a module is a mapping",
        "b.yml:16: extra_top_level: unknown key: not carried over",
        "b.yml: 5 modules imported as 1 probe; 6 items not carried over",
    ] {
        assert!(report.contains(line), "{line}\n---\n{report}");
    }
    let t = table(&imported);
    assert_eq!(t["probes"].as_table().map(|p| p.len()), Some(1));
}

#[test]
fn merge_keys_and_anchors_are_applied_as_go_applies_them() {
    let imported = run(
        "base: &base\n  prober: http\n  timeout: 4s\nmodules:\n  a:\n    <<: *base\n    http:\n      method: HEAD\n",
        &[],
    );
    let t = table(&imported);
    assert_eq!(t["probes"]["a"]["timeout"].as_str(), Some("4s"));
    assert_eq!(t["probes"]["a"]["config"]["method"].as_str(), Some("HEAD"));
    // `base` is not a blackbox_exporter key: reported, not fatal.
    assert!(
        imported
            .report
            .to_string()
            .contains("b.yml:1: base: unknown key")
    );
}

#[test]
fn timeouts_read_as_prometheus_durations() {
    let d = prometheus_duration;
    assert_eq!(d("5s"), Some(Duration::from_secs(5)));
    assert_eq!(d("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(d("1500ms"), Some(Duration::from_millis(1500)));
    assert_eq!(d("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(d("0"), Some(Duration::ZERO));
    assert_eq!(d("5"), None);
    assert_eq!(d("5 s"), None);
    assert_eq!(d("5µs"), None);
    assert_eq!(d(""), None);
    assert_eq!(show_duration(Duration::from_secs(90)), "90s");
    assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");

    let imported = run(
        "modules:\n  a:\n    prober: tcp\n    timeout: 0s\n  b:\n    prober: tcp\n    timeout: soon\n",
        &[],
    );
    let t = table(&imported);
    assert!(t["probes"]["a"].get("timeout").is_none());
    assert!(t["probes"]["b"].get("timeout").is_none());
    assert!(
        imported
            .report
            .to_string()
            .contains("b.yml:7: b.timeout: not carried over: \"soon\" is not a duration")
    );
}

#[test]
fn probe_names_are_made_valid_and_unique() {
    let taken: BTreeSet<String> = ["a_b".to_string()].into();
    assert_eq!(probe_name("a b", &taken), "a_b_2");
    assert_eq!(probe_name("a b", &BTreeSet::new()), "a_b");
    assert_eq!(probe_name("--x", &BTreeSet::new()), "x");
    assert_eq!(probe_name("", &BTreeSet::new()), "module");
    let long = "é".repeat(200);
    let name = probe_name(&long, &BTreeSet::new());
    assert!(ProbeName::try_from(name).is_ok());
    let long = format!("a{}", " ".repeat(300));
    assert!(ProbeName::try_from(probe_name(&long, &BTreeSet::new())).is_ok());
}

#[test]
fn bad_files_are_errors_that_name_them() {
    let plugins = plugin_dir();
    let o = options(&[], plugins.path());
    let err = |text: &str| {
        import(Path::new("b.yml"), text, &o)
            .err()
            .map(|e| format!("{:#}", anyhow::Error::from(e)))
            .unwrap_or_default()
    };
    assert!(err("modules: [unclosed").starts_with("b.yml is not valid YAML: "));
    assert!(err("").starts_with("b.yml has no modules"));
    assert!(err("modules: {}").starts_with("b.yml has no modules"));
    assert!(err("- a list").starts_with("b.yml has no modules"));
    let missing = import_file(Path::new("/nonexistent/blackbox.yml"), &o).err();
    assert!(
        missing
            .map(|e| e.to_string())
            .is_some_and(|e| e.starts_with("cannot read /nonexistent/blackbox.yml")),
    );
}

#[test]
fn what_only_this_machine_knows_is_noted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let o = Options::new(
        &[],
        &dir.path().join("no-plugins-here"),
        dir.path().join("probes.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let imported = import(
        Path::new("b.yml"),
        "modules:\n  a:\n    prober: http\n    http:\n      tls_config:\n        ca_file: /nonexistent/ca.pem\n",
        &o,
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    let report = imported.report.to_string();
    assert!(
        report
            .contains("b.yml:2: a: note: on this machine: cannot read CA file /nonexistent/ca.pem"),
        "{report}"
    );
    assert!(
        report.contains("b.yml: note: on this machine: cannot read plugin directory"),
        "{report}"
    );
    assert!(
        report.contains("(--plugin-dir DIR names another directory)"),
        "{report}"
    );
    assert!(imported.report.all_carried(), "{report}");
}

#[test]
fn the_output_is_a_valid_config_with_the_plugin_dir_and_icmp_sources() {
    let plugins = plugin_dir();
    let o = options(&["icmp://192.0.2.0/24"], plugins.path());
    let imported = import(
        Path::new("b.yml"),
        "modules:\n  ping:\n    prober: icmp\n    icmp:\n      source_ip_address: 192.0.2.1\n  ping2:\n    prober: icmp\n    icmp:\n      source_ip_address: 192.0.2.1\n",
        &o,
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    let config = crate::config::parse(Path::new("probes.toml"), imported.toml.clone())
        .unwrap_or_else(|e| panic!("{e}\n{}", imported.toml));
    assert_eq!(config.probes.len(), 2);
    assert_eq!(
        config.engine.icmp_sources,
        ["192.0.2.1"
            .parse::<std::net::IpAddr>()
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]))]
    );
    assert_eq!(config.engine.plugin_dirs, [plugins.path().to_path_buf()]);
    assert!(config.probes.values().all(|p| p.schedule.is_none()));
}
