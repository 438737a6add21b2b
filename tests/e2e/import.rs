//! `wasmprobe import blackbox`: Debian's own blackbox.yml imports and the
//! result passes `wasmprobe check`; a blackbox.yml using every documented
//! option of every prober has each option carried over or reported at its
//! line; and Debian's blackbox_exporter and wasmprobe, running the original
//! and the imported config on the same loopback targets, agree on
//! `probe_success` module by module.

use std::path::Path;
use std::process::{Command, Output};

use crate::blackbox_compat::{both, start_blackbox};
use crate::harness::{Engine, free_port, root};
use crate::targets;

mod every_option;

const DEBIAN_CONFIG: &str = "/etc/prometheus/blackbox.yml";

pub(super) fn wasmprobe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("wasmprobe: {e}"))
}

pub(super) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The plugins this checkout built, for the imported `plugin_dirs`.
pub(super) fn plugin_dir() -> String {
    // Fails loudly, with the command that builds them, when missing.
    crate::harness::wasm("plugins", "http-health");
    root().join("dist").join("plugins").display().to_string()
}

/// Runs `wasmprobe check` on an imported config, with the compile cache
/// the other tests share (the import names no cache directory).
pub(super) fn check(config: &Path) -> String {
    let imported = std::fs::read_to_string(config).unwrap_or_else(|e| panic!("{e}"));
    let cache = root().join("target").join("e2e-cache");
    let with_cache = imported.replacen(
        "[engine]\n",
        &format!("[engine]\ncache_dir = {cache:?}\n"),
        1,
    );
    assert_ne!(with_cache, imported, "no [engine] table in:\n{imported}");
    std::fs::write(config, with_cache).unwrap_or_else(|e| panic!("{e}"));
    let out = wasmprobe(&["check", "--config", &config.display().to_string()]);
    assert!(
        out.status.success(),
        "wasmprobe check refused the imported config:\n{}{}\n--- config ---\n{imported}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The module names of a blackbox.yml, in file order.
fn module_names(yaml: &str) -> Vec<String> {
    let value: yaml_serde::Value = yaml_serde::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
    value["modules"]
        .as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.as_str().map(String::from))
        .collect()
}

#[test]
fn debians_blackbox_yml_imports_and_passes_the_check() {
    let source = Path::new(DEBIAN_CONFIG);
    if !source.is_file() {
        eprintln!(
            "SKIPPED: {DEBIAN_CONFIG} is missing (Debian's prometheus-blackbox-exporter installs it; scripts/test does)"
        );
        return;
    }
    let yaml = std::fs::read_to_string(source).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = dir.path().join("probes.toml");
    let plugins = plugin_dir();
    let out = wasmprobe(&[
        "import",
        "blackbox",
        DEBIAN_CONFIG,
        "--plugin-dir",
        &plugins,
        "--output",
        &output.display().to_string(),
    ]);
    let report = text(&out.stderr);
    println!("--- import report for {DEBIAN_CONFIG} ---\n{report}");
    assert!(out.status.success(), "{report}");
    assert!(out.stdout.is_empty(), "the probes went to --output");
    assert!(
        report.contains(&format!("{DEBIAN_CONFIG}: note: every probe has allow = []: /probe refuses every target until you list what each module may reach")),
        "{report}"
    );

    // Every module is a probe of its name, on demand only, and nothing
    // may be reached until the operator says so.
    let imported = std::fs::read_to_string(&output).unwrap_or_else(|e| panic!("{e}"));
    let table: toml::Table = toml::from_str(&imported).unwrap_or_else(|e| panic!("{e}"));
    let modules = module_names(&yaml);
    assert!(!modules.is_empty());
    let probes = table["probes"].as_table().cloned().unwrap_or_default();
    assert_eq!(probes.len(), modules.len(), "{imported}");
    for m in &modules {
        let p = &probes[m.as_str()];
        assert!(
            p.get("schedule").is_none() && p.get("interval").is_none(),
            "{m}"
        );
        assert_eq!(p["allow"].as_array().map(Vec::len), Some(0), "{m}");
    }
    let summary = format!(
        "{DEBIAN_CONFIG}: {n} modules imported as {n} probes; ",
        n = modules.len()
    );
    assert!(report.contains(&summary), "{report}");

    // --check prints the same report on stdout, writes nothing, and its
    // status says whether everything was carried over.
    let checked = wasmprobe(&[
        "import",
        "blackbox",
        DEBIAN_CONFIG,
        "--check",
        "--plugin-dir",
        &plugins,
    ]);
    let check_report = text(&checked.stdout);
    assert_eq!(check_report.trim_end(), report.trim_end());
    let all_carried = report.trim_end().ends_with("everything carried over");
    assert_eq!(checked.status.code(), Some(if all_carried { 0 } else { 1 }));

    let ok = check(&output);
    println!("wasmprobe check: {ok}");
    assert!(
        ok.contains(&format!(": ok ({} probes,", modules.len())),
        "{ok}"
    );
}

/// One module of the agreement test: its blackbox.yml body, its target,
/// and the `probe_success` both must report.
struct Case {
    module: &'static str,
    yaml: &'static str,
    target: String,
    success: f64,
}

/// Drops the `[engine]` table of an imported config: the harness writes
/// its own, with the plugins this checkout built.
fn probes_only(imported: &str) -> String {
    let mut out = String::new();
    let mut in_engine = false;
    for line in imported.lines() {
        if line.starts_with('[') {
            in_engine = line == "[engine]";
        }
        if !in_engine {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn both_exporters_agree_module_by_module_on_the_imported_config() {
    let pki = targets::pki();
    let http = targets::http();
    let https = targets::https(&pki);
    let ssh = crate::tcp::banner(b"SSH-2.0-OpenSSH_9.6 Debian\r\n");
    let dns = crate::dns_server::start();
    let grpc = crate::grpc_server::start(None);
    let engine = Engine::new();
    let ca = engine.file("ca.pem", &pki.ca_pem);
    let icmp = match crate::netns::unavailable() {
        None => true,
        Some(why) => {
            println!("icmp left out: {why}");
            false
        }
    };
    let mut cases = vec![
        Case {
            module: "http_2xx",
            yaml: "prober: http\n    timeout: 3s\n    http:\n      preferred_ip_protocol: ip4\n",
            target: http.url("/ok"),
            success: 1.0,
        },
        Case {
            module: "http_body_regexp_fails",
            yaml: "prober: http\n    timeout: 3s\n    http:\n      preferred_ip_protocol: ip4\n      fail_if_body_not_matches_regexp: [\"^never\"]\n",
            target: http.url("/ok"),
            success: 0.0,
        },
        // The route answers only GET: a 405 shows the POST was sent.
        Case {
            module: "http_post",
            yaml: "prober: http\n    timeout: 3s\n    http:\n      preferred_ip_protocol: ip4\n      method: POST\n      body: '{}'\n      headers:\n        Content-Type: application/json\n      valid_status_codes: [405]\n",
            target: http.url("/ok"),
            success: 1.0,
        },
        Case {
            module: "http_status_404",
            yaml: "prober: http\n    timeout: 3s\n    http:\n      preferred_ip_protocol: ip4\n      valid_status_codes: [404]\n",
            target: http.url("/status/404"),
            success: 1.0,
        },
        Case {
            module: "https_ca",
            yaml: "prober: http\n    timeout: 3s\n    http:\n      preferred_ip_protocol: ip4\n      fail_if_not_ssl: true\n      tls_config:\n        ca_file: @CA@\n",
            target: https.https_url("/ok"),
            success: 1.0,
        },
        Case {
            module: "tcp_connect",
            yaml: "prober: tcp\n    timeout: 3s\n    tcp:\n      preferred_ip_protocol: ip4\n",
            target: http.addr.to_string(),
            success: 1.0,
        },
        Case {
            module: "tcp_ssh_banner",
            yaml: "prober: tcp\n    timeout: 3s\n    tcp:\n      preferred_ip_protocol: ip4\n      query_response:\n      - expect: \"^SSH-2.0-\"\n",
            target: ssh.to_string(),
            success: 1.0,
        },
        Case {
            module: "tcp_wrong_banner",
            yaml: "prober: tcp\n    timeout: 3s\n    tcp:\n      preferred_ip_protocol: ip4\n      query_response:\n      - expect: \"^220 \"\n",
            target: ssh.to_string(),
            success: 0.0,
        },
        Case {
            module: "tcp_http_query",
            yaml: "prober: tcp\n    timeout: 3s\n    tcp:\n      preferred_ip_protocol: ip4\n      query_response:\n      - send: \"GET /ok HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\"\n      - expect: \"^HTTP/1.1 200\"\n",
            target: http.addr.to_string(),
            success: 1.0,
        },
        Case {
            module: "dns_ok",
            yaml: "prober: dns\n    timeout: 3s\n    dns:\n      preferred_ip_protocol: ip4\n      query_name: ok.example\n      query_type: A\n",
            target: dns.addr.to_string(),
            success: 1.0,
        },
        Case {
            module: "dns_nxdomain",
            yaml: "prober: dns\n    timeout: 3s\n    dns:\n      preferred_ip_protocol: ip4\n      query_name: missing.example\n      query_type: A\n",
            target: dns.addr.to_string(),
            success: 0.0,
        },
        Case {
            module: "dns_answer_rejected",
            yaml: "prober: dns\n    timeout: 3s\n    dns:\n      preferred_ip_protocol: ip4\n      transport_protocol: tcp\n      query_name: ok.example\n      query_type: A\n      validate_answer_rrs:\n        fail_if_matches_regexp: ['127\\.0\\.0\\.2$']\n",
            target: dns.addr.to_string(),
            success: 0.0,
        },
        Case {
            module: "grpc_serving",
            yaml: "prober: grpc\n    timeout: 3s\n    grpc:\n      preferred_ip_protocol: ip4\n      service: api\n",
            target: grpc.addr.to_string(),
            success: 1.0,
        },
        Case {
            module: "grpc_not_serving",
            yaml: "prober: grpc\n    timeout: 3s\n    grpc:\n      preferred_ip_protocol: ip4\n      service: down\n",
            target: grpc.addr.to_string(),
            success: 0.0,
        },
    ];
    if icmp {
        cases.push(Case {
            module: "icmp",
            yaml: "prober: icmp\n    timeout: 3s\n    icmp:\n      preferred_ip_protocol: ip4\n",
            target: "127.0.0.1".into(),
            success: 1.0,
        });
    }
    let mut yaml = String::from("modules:\n");
    for c in &cases {
        yaml.push_str(&format!(
            "  {}:\n    {}",
            c.module,
            c.yaml.replace("@CA@", &ca.display().to_string())
        ));
    }
    let bb_config = engine.file("blackbox.yml", &yaml);
    let out = wasmprobe(&[
        "import",
        "blackbox",
        &bb_config.display().to_string(),
        "--plugin-dir",
        &plugin_dir(),
        "--allow",
        "http://127.0.0.1:*",
        "--allow",
        "https://127.0.0.1:*",
        "--allow",
        "tcp://127.0.0.1:*",
        "--allow",
        "dns://127.0.0.1:*",
        "--allow",
        "icmp://127.0.0.1",
    ]);
    let report = text(&out.stderr);
    let imported = text(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(
        report.trim_end().ends_with("everything carried over"),
        "{report}\n{imported}"
    );
    let e = engine.raw(&probes_only(&imported)).start();
    let port = free_port();
    let _bb = start_blackbox(&bb_config, port);

    let mut rows = Vec::new();
    for c in &cases {
        let (theirs, ours) = both(port, &e, c.module, &c.target);
        rows.push((
            c.module,
            theirs.value("probe_success", &[]),
            ours.value("probe_success", &[("probe", c.module)]),
            c.success,
            theirs.text,
            ours.text,
        ));
    }
    println!("{:<24} {:>10} {:>10}", "module", "blackbox", "wasmprobe");
    for (module, theirs, ours, _, _, _) in &rows {
        println!("{module:<24} {theirs:>10} {ours:>10}");
    }
    for (module, theirs, ours, want, their_text, our_text) in &rows {
        assert_eq!(
            (theirs, ours),
            (want, want),
            "{module}: blackbox_exporter {theirs}, wasmprobe {ours}, expected {want}\n--- blackbox ---\n{their_text}\n--- wasmprobe ---\n{our_text}\n--- imported ---\n{imported}"
        );
    }
}
