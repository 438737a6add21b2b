//! The plugin author's path: a scaffolded plugin builds and runs, and a
//! recorded run replays to the same samples with no network.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::{Engine, root, said};
use crate::targets;

const WAIT: Duration = Duration::from_secs(90);

fn wasmprobe(args: &[&str], config: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmprobe"));
    cmd.args(args);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.output().unwrap_or_else(|e| panic!("wasmprobe: {e}"))
}

/// The plugin's own samples: `# ` lines and the engine's per-run series
/// (durations measured by the host) left out.
fn plugin_samples(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| !l.starts_with("wasmprobe_") && !l.starts_with("probe_duration_seconds"))
        .map(str::to_string)
        .collect()
}

/// A probe `site` of a counting target's `/ok`, its config written: the
/// target (to count what reached it), the engine (which owns the
/// config's folder) and the config's path.
fn site_config() -> (targets::Target, Engine, std::path::PathBuf) {
    let target = targets::counting();
    let engine = Engine::new().probe(
        "site",
        &format!(
            "plugin = \"http-health\"\nschedule = \"0 0 * * * *\"\ntarget = {:?}\n[probes.site.config]\nfail_if_body_not_matches_regexp = [\"ok\"]",
            target.url("/ok")
        ),
    );
    let config = engine.config_path();
    std::fs::write(&config, engine.text()).unwrap_or_else(|e| panic!("{e}"));
    (target, engine, config)
}

#[test]
fn a_recorded_run_replays_to_the_same_samples_without_network() {
    let (target, _engine, config) = site_config();
    // The recording's directory does not exist yet: `probe` makes it.
    let tape = config.with_file_name("tests").join("site.json");
    let tape_arg = tape.to_string_lossy().into_owned();

    let recorded = wasmprobe(
        &["probe", "--probe", "site", "--record", &tape_arg],
        Some(&config),
    );
    let stderr = String::from_utf8_lossy(&recorded.stderr);
    assert_eq!(recorded.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("recorded 1 call(s)"), "{stderr}");
    let seen = target.accepted();
    assert!(seen >= 1);

    let replayed = wasmprobe(
        &["probe", "--probe", "site", "--replay", &tape_arg],
        Some(&config),
    );
    let stderr = String::from_utf8_lossy(&replayed.stderr);
    assert_eq!(replayed.status.code(), Some(0), "{stderr}");
    assert_eq!(target.accepted(), seen, "the replay reached the network");
    let a = plugin_samples(&String::from_utf8_lossy(&recorded.stdout));
    let b = plugin_samples(&String::from_utf8_lossy(&replayed.stdout));
    assert!(
        a.iter().any(|l| l.starts_with("probe_http_status_code")),
        "{a:?}"
    );
    assert_eq!(a, b);
    println!("record/replay: {} plugin samples identical", a.len());

    // A plugin whose calls differ from the recording fails, naming why.
    let other = target.url("/other");
    let changed = wasmprobe(
        &[
            "probe", "--probe", "site", "--replay", &tape_arg, "--target", &other,
        ],
        Some(&config),
    );
    let stderr = String::from_utf8_lossy(&changed.stderr);
    assert_eq!(changed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("differs from the recorded http.send"),
        "{stderr}"
    );
    assert_eq!(target.accepted(), seen);

    let broken = config.with_file_name("broken.json");
    std::fs::write(&broken, "{").unwrap_or_else(|e| panic!("{e}"));
    let out = wasmprobe(
        &[
            "probe",
            "--probe",
            "site",
            "--replay",
            &broken.to_string_lossy(),
        ],
        Some(&config),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("broken.json is not a wasmprobe recording"),
        "{stderr}"
    );
}

/// `wasmprobe` run in `dir`, as an author runs it in a plugin's folder.
fn wasmprobe_in(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("wasmprobe: {e}"));
    (out.status.code(), said(&out))
}

#[test]
fn wasmprobe_test_compares_a_replay_with_its_expectation() {
    let (target, _engine, config) = site_config();
    let dir = config.parent().unwrap_or_else(|| panic!("no dir"));
    let (code, out) = wasmprobe_in(
        dir,
        &["probe", "--probe", "site", "--record", "tests/site.json"],
    );
    assert_eq!(code, Some(0), "{out}");
    let tape = dir.join("tests/site.json");
    let text = std::fs::read_to_string(&tape).unwrap_or_default();
    assert!(
        text.contains("\"utf8\": \"ok\\n\""),
        "the body is readable text: {text}"
    );

    let (code, out) = wasmprobe_in(dir, &["test"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("no expectation file") && out.contains("--update"),
        "{out}"
    );

    let (code, out) = wasmprobe_in(dir, &["test", "--update"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("updated tests/site.expect.toml"), "{out}");
    let expect = std::fs::read_to_string(dir.join("tests/site.expect.toml")).unwrap_or_default();
    assert!(
        expect.contains("success = true")
            && expect.contains("name = \"probe_http_status_code\"\nvalue = 200"),
        "{expect}"
    );
    let seen = target.accepted();
    let (code, out) = wasmprobe_in(dir, &["test"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("test tests/site.json (probe site) ... ok")
            && out.contains("1 passed, 0 failed"),
        "{out}"
    );
    assert_eq!(target.accepted(), seen, "a test never reaches the network");

    // Edit the recorded answer as text: the service now says 503.
    std::fs::write(&tape, text.replace("\"status\": 200", "\"status\": 503"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, out) = wasmprobe_in(dir, &["test"]);
    assert_eq!(code, Some(1), "{out}");
    for line in [
        "FAILED",
        "success: expected true, got false",
        "~ probe_http_status_code{}: expected 200, got 503",
        "0 passed, 1 failed",
    ] {
        assert!(out.contains(line), "{line:?} not in\n{out}");
    }
    println!("wasmprobe test on an edited tape:\n{out}");
    // Accepting the new behaviour makes it the expectation.
    let (code, out) = wasmprobe_in(dir, &["test", "--update"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = wasmprobe_in(dir, &["test", "tests/site.json"]);
    assert_eq!(code, Some(0), "{out}");

    // A tape of a probe the config does not have is bad input.
    let other = text.replace("\"probe\": \"site\"", "\"probe\": \"gone\"");
    std::fs::write(dir.join("tests/gone.json"), other).unwrap_or_else(|e| panic!("{e}"));
    let (code, out) = wasmprobe_in(dir, &["test"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("probe \"gone\""), "{out}");
}

#[test]
fn a_scaffolded_plugin_builds_and_its_metrics_reach_metrics() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path().join("hello-probe");
    // As a binary moved away from its checkout (or the container image)
    // does: the SDK travels inside the plugin's folder.
    scaffold("hello-probe", &dir, &["--carry-sdk"]);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    assert!(
        manifest.contains("path = \"vendor/wasmprobe/plugins/sdk\""),
        "{manifest}"
    );
    assert!(dir.join("vendor/wasmprobe/wit/world.wit").is_file());
    let again = wasmprobe(
        &[
            "new",
            "plugin",
            "hello-probe",
            "--dir",
            &dir.to_string_lossy(),
        ],
        None,
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // The one command the scaffold's README gives. Its own target dir,
    // kept between test runs.
    let target_dir = root().join("target").join("e2e-cache").join("scaffold");
    let started = std::time::Instant::now();
    let build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap_or_else(|e| panic!("cargo: {e}"));
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    println!(
        "scaffolded plugin built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let built = target_dir.join("wasm32-wasip2/release/hello_probe.wasm");
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(&built, plugins.join("hello-probe.wasm")).unwrap_or_else(|e| panic!("{e}"));

    // Where the folder's own probes.toml looks (the build above used a
    // shared target dir): its tape test passes as written.
    let local = dir.join("target/wasm32-wasip2/release");
    std::fs::create_dir_all(&local).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(&built, local.join("hello_probe.wasm")).unwrap_or_else(|e| panic!("{e}"));
    assert_scaffold_test_passes(&dir);

    assert_metrics_reach_metrics(&plugins, "hello-probe", "hello_probe");
}

/// `wasmprobe check` and `wasmprobe test` in a freshly built scaffold
/// folder, as its README says; then an edited tape fails with a diff.
fn assert_scaffold_test_passes(dir: &Path) {
    let (code, out) = wasmprobe_in(dir, &["check"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = wasmprobe_in(dir, &["test"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("... ok") && out.contains("1 passed, 0 failed"),
        "{out}"
    );
    let tape = dir.join("tests/up.json");
    let text = std::fs::read_to_string(&tape).unwrap_or_default();
    let down = dir.join("tests/down.json");
    std::fs::write(&down, text.replace("\"status\": 200", "\"status\": 503"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, out) = wasmprobe_in(dir, &["test", "tests/down.json"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no expectation file"), "{out}");
    let (code, out) = wasmprobe_in(dir, &["test", "--update", "tests/down.json"]);
    assert_eq!(code, Some(0), "{out}");
    let expect = std::fs::read_to_string(dir.join("tests/down.expect.toml")).unwrap_or_default();
    assert!(
        expect.contains("success = false") && expect.contains("value = 503"),
        "{expect}"
    );
    let (code, out) = wasmprobe_in(dir, &["test"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("2 passed, 0 failed"), "{out}");
    println!("scaffold's wasmprobe test:\n{out}");
}

#[test]
fn a_scaffolded_python_plugin_builds_and_its_metrics_reach_metrics() {
    build_script_plugin("python", "py-check", "py_check");
}

#[test]
fn a_scaffolded_js_plugin_builds_and_its_metrics_reach_metrics() {
    build_script_plugin("js", "js-check", "js_check");
}

/// Scaffolds a `lang` plugin, builds it with its `build.sh` (the one
/// command its README gives) and reads its metrics from a running engine.
fn build_script_plugin(lang: &str, name: &str, prefix: &str) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path().join(name);
    scaffold(name, &dir, &["--lang", lang]);
    let mut build = Command::new(dir.join("build.sh"));
    // componentize-js as scripts/build-js-plugin installed it, when it did:
    // saves a 390 MB npm install into the scaffold.
    let js_tools = root().join("target/js-tools/node_modules/.bin/componentize-js");
    if js_tools.is_file() {
        build.env("COMPONENTIZE_JS", &js_tools);
    }
    let started = std::time::Instant::now();
    let built = build.output().unwrap_or_else(|e| panic!("build.sh: {e}"));
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    println!(
        "scaffolded {lang} plugin built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_scaffold_test_passes(&dir);
    // The plugin's pure logic, tested natively as its README says.
    let (program, args): (&str, &[&str]) = match lang {
        "python" => ("python3", &["-m", "unittest"]),
        _ => ("node", &["--test"]),
    };
    let native = Command::new(program)
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        native.status.success(),
        "{}{}",
        String::from_utf8_lossy(&native.stdout),
        String::from_utf8_lossy(&native.stderr)
    );
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap_or_else(|e| panic!("{e}"));
    let file = format!("{name}.wasm");
    std::fs::copy(dir.join(&file), plugins.join(&file)).unwrap_or_else(|e| panic!("{e}"));
    assert_metrics_reach_metrics(&plugins, name, prefix);
}

/// `wasmprobe new plugin NAME --dir DIR` with `extra` arguments, which
/// must succeed.
fn scaffold(name: &str, dir: &Path, extra: &[&str]) {
    let dir = dir.to_string_lossy();
    let mut args = vec!["new", "plugin", name, "--dir", &dir];
    args.extend_from_slice(extra);
    let out = wasmprobe(&args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the scaffolded plugin `plugin` from `plugins` against a local
/// site with the template's config and checks its `PREFIX_*` metrics.
fn assert_metrics_reach_metrics(plugins: &Path, plugin: &str, prefix: &str) {
    let site = targets::http();
    let e = Engine::new()
        .engine_key(&format!("plugin_dirs = [{plugins:?}]"))
        .probe(
            "hello",
            &format!(
                "plugin = \"{plugin}\"\nschedule = \"* * * * * *\"\ntarget = {:?}\n[probes.hello.config]\nexpect_body = \"ok\"",
                site.url("/ok")
            ),
        )
        .start();
    let up = format!("{prefix}_up");
    let s = e.wait_for("the scaffolded plugin's metrics", WAIT, |s| {
        s.get(&up, &[("probe", "hello")]).is_some()
    });
    assert_eq!(s.value(&up, &[("probe", "hello")]), 1.0, "{}", s.text);
    assert_eq!(
        s.value(&format!("{prefix}_status_code"), &[("probe", "hello")]),
        200.0
    );
    assert!(s.value(&format!("{prefix}_response_seconds"), &[("probe", "hello")]) > 0.0);
    assert_eq!(s.value("probe_success", &[("probe", "hello")]), 1.0);
}

/// A plugin author runs `probe` to see what the plugin says: its info log
/// lines are shown without setting a log filter.
#[test]
fn probe_shows_the_plugins_own_log_lines() {
    let engine = Engine::new().probe(
        "chatty",
        "plugin = \"misbehave\"\ntarget = \"http://127.0.0.1:9/\"\n[probes.chatty.config]\nbehaviour = \"log_spam\"\ncount = 2",
    );
    let config = engine.config_path();
    std::fs::write(&config, engine.text()).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmprobe"));
    cmd.args(["probe", "--probe", "chatty"])
        .arg("--config")
        .arg(&config)
        .env_remove("WASMPROBE_LOG");
    let out = cmd.output().unwrap_or_else(|e| panic!("wasmprobe: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("line 0") && stderr.contains("line 1"),
        "{stderr}"
    );
}

/// A sample the host drops is named with its family and why, so a
/// misspelled family is found at once.
#[test]
fn probe_names_every_rejected_sample() {
    let engine = Engine::new().probe(
        "sloppy",
        "plugin = \"misbehave\"\ntarget = \"http://127.0.0.1:9/\"\n[probes.sloppy.config]\nbehaviour = \"undeclared\"",
    );
    let config = engine.config_path();
    std::fs::write(&config, engine.text()).unwrap_or_else(|e| panic!("{e}"));
    let out = wasmprobe(&["probe", "--probe", "sloppy"], Some(&config));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in [
        "rejected sample not_declared (unknown_family)",
        "rejected sample misbehave_value (undeclared_label)",
        "rejected sample misbehave_runs_total (invalid_value)",
    ] {
        assert!(stderr.contains(line), "{line:?} not in:\n{stderr}");
    }
}
