//! Plugins and packages installed by pinned OCI reference from a real
//! registry on loopback (Debian's `docker-registry`, the distribution
//! registry): push, pull, a pin the registry does not have, a missing
//! tag, a registry that hangs, a tag that moves under a pin, and a
//! package bound to its repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Engine, Peer, free_port, wasm};
use crate::targets;

const WAIT: Duration = Duration::from_secs(60);
const REGISTRY: &str = "/usr/bin/docker-registry";

/// A distribution registry on a loopback port, storing under `dir`.
struct Registry {
    host: String,
    _peer: Peer,
}

impl Registry {
    fn start(dir: &Path) -> Option<Registry> {
        if !Path::new(REGISTRY).is_file() {
            eprintln!("skipped: {REGISTRY} is missing (scripts/test installs docker-registry)");
            return None;
        }
        let port = free_port();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("storage").display()
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{REGISTRY}: {e}"));
        let peer = Peer(child);
        let host = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Registry { host, _peer: peer })
    }
}

/// `wasmprobe ARGS` in `dir`: exit code, stdout, stderr.
fn wasmprobe(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(args)
        .current_dir(dir)
        .env_remove("WASMPROBE_REGISTRY_USERNAME")
        .output()
        .unwrap_or_else(|e| panic!("wasmprobe: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn push(dir: &Path, file: &Path, reference: &str) -> String {
    let (code, out, err) = wasmprobe(dir, &["push", &file.to_string_lossy(), reference]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(reference) && out.contains("@sha256:"),
        "{out}"
    );
    out
}

fn check(config: &Path) -> (Option<i32>, String) {
    let dir = config.parent().unwrap_or(Path::new("."));
    let (code, out, err) = wasmprobe(dir, &["check", "--config", &config.to_string_lossy()]);
    (code, format!("{out}{err}"))
}

/// A registry under `dir` holding http-health as `team/health:v1`: the
/// registry, the repository and the pinned reference push printed.
fn with_health_v1(dir: &Path) -> Option<(Registry, String, String)> {
    let registry = Registry::start(dir)?;
    let repo = format!("{}/team/health", registry.host);
    let v1 = push(dir, &wasm("plugins", "http-health"), &format!("{repo}:v1"));
    Some((registry, repo, v1))
}

#[test]
fn a_plugin_installed_by_digest_runs_and_keeps_its_pin() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let Some((registry, repo, v1)) = with_health_v1(tmp.path()) else {
        return;
    };
    println!("pushed {v1}");

    // `pull` of the tag prints the pinned reference, and verifies.
    let (code, pinned, err) = wasmprobe(tmp.path(), &["pull", &format!("{repo}:v1")]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(pinned, v1);

    let target = targets::counting();
    let engine = Engine::new()
        .raw(&format!("[plugins.remote-health]\noci = {v1:?}\n"))
        .probe(
            "remote",
            &format!(
                "plugin = \"remote-health\"\nschedule = \"* * * * * *\"\ntarget = {:?}",
                target.url("/ok")
            ),
        );
    let config = engine.config_path();
    std::fs::write(&config, engine.text()).unwrap_or_else(|e| panic!("{e}"));
    let (code, out) = check(&config);
    assert_eq!(code, Some(0), "{out}");

    let running = engine.start();
    running.wait_for("the pulled plugin's run", WAIT, |s| {
        s.get("probe_http_status_code", &[("probe", "remote")]) == Some(200.0)
    });

    // The tag moves to other bytes; the pin does not, and a reload with
    // the registry gone still loads the pinned plugin from the cache.
    let v2 = push(tmp.path(), &wasm("plugins", "tcp"), &format!("{repo}:v1"));
    assert_ne!(v1, v2);
    drop(registry);
    // Reloading reads the config again, pin and all: from the cache.
    let (status, body) = running.post("/-/reload");
    assert_eq!(status, 200, "{body}");
    let s = running.wait_for("runs after the reload", WAIT, |s| {
        s.get("probe_http_status_code", &[("probe", "remote")]) == Some(200.0)
    });
    assert!(
        s.get("probe_tcp_connect_success", &[("probe", "remote")])
            .is_none()
    );
    assert!(!running.log().contains("pulling"), "{}", running.log());
}

#[test]
fn bad_references_are_refused_with_what_was_wrong() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let Some((_registry, repo, v1)) = with_health_v1(tmp.path()) else {
        return;
    };

    // A missing tag.
    let (code, _, err) = wasmprobe(tmp.path(), &["pull", &format!("{repo}:nope")]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("has no tag nope"), "{err}");

    let config_with = |plugin: &str| -> PathBuf {
        let engine = Engine::new().raw(plugin).probe(
            "remote",
            "plugin = \"remote-health\"\ntarget = \"http://127.0.0.1:1/\"",
        );
        let config = tmp
            .path()
            .join(format!("probes-{}.toml", fastrand::u32(..)));
        std::fs::write(&config, engine.text()).unwrap_or_else(|e| panic!("{e}"));
        config
    };

    // Not pinned: refused, with the command that prints the pin.
    let (code, out) = check(&config_with(&format!(
        "[plugins.remote-health]\noci = \"{repo}:v1\"\n"
    )));
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("plugins.remote-health.oci") && out.contains("not pinned by digest"),
        "{out}"
    );

    // A pin the registry does not have (another artifact's digest).
    let other = format!("{repo}:v1@sha256:{}", "ab".repeat(32));
    let (code, out) = check(&config_with(&format!(
        "[plugins.remote-health]\noci = {other:?}\n"
    )));
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("plugins.remote-health.oci") && out.contains(&"ab".repeat(32)),
        "{out}"
    );

    // The pinned plugin pulled as a package: the wrong kind.
    let (code, _, err) = wasmprobe(tmp.path(), &["pull", "--package", &v1]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("not a probe package") || err.contains("is a plugin"),
        "{err}"
    );

    // A registry that accepts and never answers: the configured timeout.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let hung_host = hung.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let held = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for conn in hung.incoming().take(4) {
            kept.push(conn);
        }
        std::thread::sleep(Duration::from_secs(5));
    });
    // A pin no cache holds (content is cached by digest whatever the
    // registry, so v1's would be served without asking).
    let pin = format!("sha256:{}", "cd".repeat(32));
    let started = Instant::now();
    let (code, out) = check(&config_with(&format!(
        "[registries.\"{hung_host}\"]\ntimeout = \"1s\"\n\n[plugins.remote-health]\noci = \"{hung_host}/team/health:v1@{pin}\"\n"
    )));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("did not answer within 1s"), "{out}");
    println!(
        "a hung registry was given up on after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(held);
}

#[test]
fn a_package_from_a_registry_is_bound_to_its_repository() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let Some(registry) = Registry::start(tmp.path()) else {
        return;
    };
    // A package folder: one plugin, pinned by its hash, and one probe
    // that needs no network.
    let dir = tmp.path().join("team-web");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(wasm("fixtures", "misbehave")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("health.wasm"), &bytes).unwrap_or_else(|e| panic!("{e}"));
    let sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    std::fs::write(
        dir.join("package.toml"),
        format!(
            "name = \"team-web\"\nteam = \"web\"\n\n[plugins.health]\npath = \"health.wasm\"\nsha256 = \"{sha}\"\n\n[probes.web]\nplugin = \"health\"\nschedule = \"* * * * * *\"\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let archive = tmp.path().join("team-web.tar.gz");
    let tar = Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir)
        .args(["package.toml", "health.wasm"])
        .output()
        .unwrap_or_else(|e| panic!("tar: {e}"));
    assert!(tar.status.success());
    let repo = format!("{}/team/web", registry.host);
    let pinned = push(tmp.path(), &archive, &format!("{repo}:1.0"));

    let with_grant = |bound: &str| {
        Engine::new().raw(&format!(
            "[packages]\ninclude = [\"oci://{pinned}\"]\n\n[packages.grants.team-web]\npath = \"oci://{bound}\"\n"
        ))
    };
    // Bound to another repository: refused, naming both.
    let engine = with_grant(&format!("{}/other/web", registry.host));
    let config = engine.config_path();
    std::fs::write(&config, engine.text()).unwrap_or_else(|e| panic!("{e}"));
    let (code, out) = check(&config);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("is bound by the operator to oci://") && out.contains("/other/web"),
        "{out}"
    );

    let running = with_grant(&repo).start();
    let s = running.wait_for("the pulled package's probe", WAIT, |s| {
        s.get(
            "probe_success",
            &[
                ("probe", "team-web:web"),
                ("package", "team-web"),
                ("team", "web"),
            ],
        )
        .is_some()
    });
    assert_eq!(
        s.value("wasmprobe_package_loaded", &[("package", "team-web")]),
        1.0
    );
}
