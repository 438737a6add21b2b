//! Config parsing and cross-checks, wasm-free.

use std::path::Path;

use super::*;

fn parse_str(text: &str) -> Result<Config, ConfigError> {
    parse(Path::new("probes.toml"), text.to_string())
}

fn errors(text: &str) -> Vec<String> {
    match parse_str(text) {
        Err(ConfigError::Invalid(d)) => d.0.iter().map(ToString::to_string).collect(),
        Err(e) => vec![e.to_string()],
        Ok(_) => vec![],
    }
}

const PLUGIN: &str = "[plugins.http-health]\npath = \"Cargo.toml\"\n";

#[test]
fn defaults_are_loopback_and_sane() {
    let c = parse_str("").ok();
    let c = c.as_ref();
    assert_eq!(
        c.map(|c| c.server.listen.to_string()).as_deref(),
        Some(DEFAULT_LISTEN)
    );
    assert!(c.is_some_and(|c| c.probes.is_empty()));
}

#[test]
fn a_probe_resolves_with_its_origin_allowed() {
    let text = format!(
        "{PLUGIN}[probes.api]\nplugin = \"http-health\"\nschedule = \"*/5 * * * * *\"\ntarget = \"http://127.0.0.1:8080/health\"\nlabels = {{ env = \"dev\" }}\n"
    );
    let c = parse_str(&text).ok();
    let p = c.as_ref().and_then(|c| c.probes.values().next());
    assert!(p.is_some_and(|p| p.allow.check_target("http://127.0.0.1:8080/x").is_ok()));
    assert!(p.is_some_and(|p| p.allow.check_target("http://127.0.0.1:8081/x").is_err()));
    assert_eq!(p.map(|p| p.labels.len()), Some(1));
}

#[test]
fn every_error_is_collected_with_its_location() {
    let text = format!(
        "{PLUGIN}[probes.a]\nplugin = \"nope\"\nschedule = \"*/5 * * * * *\"\ntarget = \"http://127.0.0.1:1/\"\n\n[probes.b]\nplugin = \"http-health\"\nschedule = \"*/5 * * * * *\"\ntarget = \"http://127.0.0.1:2/\"\nallow = []\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("probes.toml:4:10: probes.a.plugin: unknown plugin \"nope\""),
        "{e:#?}"
    );
    assert!(
        e[1].starts_with("probes.toml:11:10: probes.b.target: target \"http://127.0.0.1:2\" is not allowed (allow = [])"),
        "{e:#?}"
    );
}

#[test]
fn parse_errors_name_the_key() {
    let e = errors("[probes.api]\nplugin = \"x\"\nschedule = \"* * * * *\"\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(
            "probes.toml:3:12: probes.api.schedule: schedule \"* * * * *\" has 5 fields"
        ),
        "{e:#?}"
    );
    let e = errors("[server]\nlisten_on = \"x\"\n");
    assert!(
        e[0].starts_with("probes.toml:2:1: server.listen_on: unknown field `listen_on`"),
        "{e:#?}"
    );
}
