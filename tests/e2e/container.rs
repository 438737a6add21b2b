//! What the container image runs, outside a container (no Docker here):
//! the image's layout, user, config and HEALTHCHECK; and the Kubernetes
//! ConfigMap's probes.toml passes `wasmprobe check`.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::{Scrape, free_port, get, root, wasm};

/// The image's user (Dockerfile `USER 10001:10001`).
const UID: &str = "10001";

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The image's file system under `fs`: the plugins, a cache directory
/// owned by the image's user, and the config with its paths moved there.
fn image_root(fs: &Path, port: u16) -> PathBuf {
    let plugins = fs.join("usr/share/wasmprobe/plugins");
    let cache = fs.join("var/cache/wasmprobe");
    let etc = fs.join("etc/wasmprobe");
    for d in [&plugins, &cache, &etc] {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
    }
    for name in ["http-health", "icmp", "treaty-kpis", "anchor-job"] {
        std::fs::copy(wasm("plugins", name), plugins.join(format!("{name}.wasm")))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let config = read(&root().join("deploy/probes.container.toml"))
        .replace("/usr/share/wasmprobe/plugins", &plugins.to_string_lossy())
        .replace("/var/cache/wasmprobe", &cache.to_string_lossy())
        .replace("0.0.0.0:10464", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:10464", &format!("127.0.0.1:{port}"));
    let path = etc.join("probes.toml");
    std::fs::write(&path, config).unwrap_or_else(|e| panic!("{e}"));
    // Readable by everyone, as in the image; only the cache is the user's.
    for d in [
        fs.to_path_buf(),
        fs.join("usr"),
        fs.join("usr/share"),
        fs.join("usr/share/wasmprobe"),
        plugins.clone(),
        fs.join("etc"),
        etc.clone(),
        fs.join("var"),
        fs.join("var/cache"),
    ] {
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755));
    }
    if is_root() {
        let ok = Command::new("chown")
            .args([
                &format!("{UID}:{UID}"),
                &cache.to_string_lossy().into_owned(),
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown the cache directory");
    }
    path
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The Dockerfile's HEALTHCHECK command, as bash runs it.
fn healthcheck(port: u16) -> String {
    let dockerfile = read(&root().join("Dockerfile"));
    let line = dockerfile
        .split("\nHEALTHCHECK ")
        .nth(1)
        .and_then(|rest| rest.split_once("CMD "))
        .and_then(|(_, cmd)| cmd.lines().next())
        .unwrap_or_else(|| panic!("no HEALTHCHECK CMD in the Dockerfile"));
    let argv: Vec<String> = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("HEALTHCHECK CMD: {e}: {line}"));
    assert_eq!(&argv[..2], ["bash", "-c"]);
    argv[2].replace("10464", &port.to_string())
}

fn health_ok(script: &str) -> bool {
    Command::new("bash")
        .args(["-c", script])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_image_layout_runs_as_its_user_and_passes_its_healthcheck() {
    let fs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let config = image_root(fs.path(), port);
    let check = healthcheck(port);
    assert!(
        !health_ok(&check),
        "healthcheck passes with nothing listening"
    );

    let bin = env!("CARGO_BIN_EXE_wasmprobe");
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", UID, "--regid", UID, "--clear-groups", bin]);
        c
    } else {
        println!("not root: running as the current user instead of uid {UID}");
        Command::new(bin)
    };
    let mut child = cmd
        .args(["run", "--config"])
        .arg(&config)
        .current_dir(config.parent().unwrap_or(fs.path()))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start: {e}"));
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("stderr"));
    let pid = child.id();
    let _guard = Kill(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(l) => {
                let done = l.contains(" listening ");
                log.push(l);
                if done {
                    break;
                }
            }
            Err(_) => panic!("did not start:\n{}", log.join("\n")),
        }
    }
    if is_root() {
        let status = read(Path::new(&format!("/proc/{pid}/status")));
        let uid = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap_or_default();
        assert!(uid.split_whitespace().nth(1) == Some(UID), "{uid}");
    }
    assert!(health_ok(&check), "the Dockerfile's HEALTHCHECK fails");
    // The plugins start on baseline code; their optimized code is written
    // to the cache (as the image's user) once it is compiled.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let cached = std::fs::read_dir(fs.path().join("var/cache/wasmprobe"))
            .map(|d| d.count())
            .unwrap_or(0);
        if cached > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing compiled into the cache directory"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = Scrape::parse(&get(&url, None).body);
        if s.get("probe_success", &[("probe", "self-healthz")]) == Some(1.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "self-healthz never succeeded:\n{}",
            s.text
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_kubernetes_configmap_config_passes_check() {
    let manifest = read(&root().join("deploy/kubernetes/configmap.yaml"));
    let mut lines = manifest
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("probes.toml: |"));
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("no probes.toml in the ConfigMap"));
    let indent = head.len() - head.trim_start().len() + 2;
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let plugins = root().join("dist/plugins");
    let text = body
        .join("\n")
        .replace("/usr/share/wasmprobe/plugins", &plugins.to_string_lossy())
        .replace(
            "/var/cache/wasmprobe",
            &dir.path().join("cache").to_string_lossy(),
        );
    let path = dir.path().join("probes.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    // Validation only: nothing is probed (its targets are cluster names).
    let out = Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("ok (6 probes"), "{said}");
}
