//! The container image itself: built from the repository's Dockerfile with
//! podman and run, as a user would run it.
//!
//! `container.rs` checks what the image runs without a container; this
//! checks what only a real image shows: that the runtime stage builds, that
//! the process runs as uid/gid 10001, that the default config's probes all
//! succeed inside the container (ICMP included, given
//! `net.ipv4.ping_group_range`), that the HEALTHCHECK passes and that
//! `stop` ends it with exit code 0.
//!
//! The builder stage (`FROM rust:...`) cannot run here: its image cannot be
//! pulled and it would compile the workspace a second time. It is replaced
//! by a stage holding the host's build (stripped) in the same `/out/` layout;
//! the runtime stage is the repository's, byte for byte, and the test
//! asserts so. The image it produces is removed at the end.
//!
//! Ignored by default: it needs podman, runc and the base image
//! `debian:bookworm-slim` in local storage, and network for the runtime
//! stage's `apt-get`. `scripts/test-container` provides all of them and runs
//! it.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::{Scrape, free_port, get, root, said};

/// The image's user and group (Dockerfile `USER 10001:10001`).
const ID: &str = "10001";

/// The port the image listens on (Dockerfile `EXPOSE`).
const CONTAINER_PORT: u16 = 10464;

/// The runtime stage's base, which must be in local storage (`--pull=never`).
const BASE: &str = "docker.io/library/debian:bookworm-slim";

/// What replaces the builder stage: the host's artifacts, laid out as the
/// builder's `install` lines leave them.
const PREBUILT_BUILDER: &str = "FROM scratch AS builder\nCOPY out/ /out/\n\n";

/// podman with runc: crun cannot run here (cgroups in hybrid mode).
fn try_podman(args: &[&str]) -> std::io::Result<Output> {
    Command::new("podman")
        .args(["--runtime", "runc"])
        .args(args)
        .output()
}

fn podman(args: &[&str]) -> Output {
    try_podman(args).unwrap_or_else(|e| {
        panic!("podman is missing ({e}): install podman and runc (scripts/test-container does)")
    })
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The byte offset of the first line at or after `from` that starts with
/// `prefix`.
fn line_at(text: &str, from: usize, prefix: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset >= from && line.starts_with(prefix) {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

/// Where the runtime stage starts: its `# Runtime` heading, else its `FROM`.
fn runtime_start(text: &str, after: usize) -> Option<usize> {
    line_at(text, after, "# Runtime").or_else(|| line_at(text, after, "FROM "))
}

/// The Dockerfile with its builder stage (from `FROM rust:` up to the
/// runtime stage) replaced by [`PREBUILT_BUILDER`], and the original's
/// runtime stage.
fn with_prebuilt_builder(original: &str) -> (String, String) {
    let builder = line_at(original, 0, "FROM rust:")
        .unwrap_or_else(|| panic!("no `FROM rust:` builder stage in the Dockerfile"));
    let runtime = runtime_start(original, builder + 1)
        .unwrap_or_else(|| panic!("no runtime stage after the builder in the Dockerfile"));
    let replaced = &original[builder..runtime];
    assert_eq!(
        replaced.lines().filter(|l| l.starts_with("FROM ")).count(),
        1,
        "only the builder stage may be replaced:\n{replaced}"
    );
    let runtime_stage = &original[runtime..];
    assert_eq!(
        runtime_stage
            .lines()
            .filter(|l| l.starts_with("FROM "))
            .count(),
        1,
        "the Dockerfile should have one stage after the builder:\n{runtime_stage}"
    );
    let generated = format!("{}{PREBUILT_BUILDER}{runtime_stage}", &original[..builder]);
    (generated, runtime_stage.to_string())
}

/// Copies `from` to `to`, creating `to`'s directory.
fn copy(from: &Path, to: &Path) {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

/// The status of a plain HTTP GET, or why there is none yet. The harness's
/// `get` panics on a refused connection; before the engine listens that is
/// expected.
fn status(port: u16, path: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    let line = reply.lines().next().unwrap_or_default();
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line: {line:?}"))
}

/// The probes of a config: name, plugin, and whether it is scheduled (a
/// probe without `schedule` runs only through `/probe`).
fn probes(config: &str) -> Vec<(String, String, bool)> {
    let table = toml::from_str::<toml::Table>(config)
        .unwrap_or_else(|e| panic!("deploy/probes.container.toml: {e}"));
    let probes = table
        .get("probes")
        .and_then(|p| p.as_table())
        .unwrap_or_else(|| panic!("deploy/probes.container.toml has no [probes]"));
    probes
        .iter()
        .map(|(name, probe)| {
            let plugin = probe
                .get("plugin")
                .and_then(|p| p.as_str())
                .unwrap_or_else(|| panic!("probe {name} has no plugin"));
            (
                name.clone(),
                plugin.to_string(),
                probe.get("schedule").is_some() || probe.get("interval").is_some(),
            )
        })
        .collect()
}

/// The container and image of this test, removed on drop so a failed
/// assertion still cleans up; on a panic not raised through
/// [`Image::fail`] it prints the container's log first.
struct Image {
    tag: String,
    container: String,
    logs_shown: Cell<bool>,
}

impl Image {
    fn logs(&self) -> String {
        try_podman(&["logs", &self.container]).map_or_else(|e| format!("podman: {e}"), |o| said(&o))
    }

    /// A failure message with the container's log.
    fn fail(&self, what: &str) -> ! {
        self.logs_shown.set(true);
        panic!(
            "{what}\n--- podman logs {} ---\n{}",
            self.container,
            self.logs()
        )
    }

    fn running(&self) -> bool {
        stdout(&podman(&[
            "inspect",
            "--format",
            "{{.State.Running}}",
            &self.container,
        ])) == "true"
    }

    fn exec(&self, argv: &[&str]) -> String {
        let mut args = vec!["exec", self.container.as_str()];
        args.extend_from_slice(argv);
        let out = podman(&args);
        if !out.status.success() {
            self.fail(&format!("podman exec {argv:?} failed:\n{}", said(&out)));
        }
        stdout(&out)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.logs_shown.get() {
            eprintln!("--- podman logs {} ---\n{}", self.container, self.logs());
        }
        // Never panics: a panic while unwinding would abort the test binary.
        let _ = try_podman(&["rm", "-f", "-t", "0", &self.container]);
        let _ = try_podman(&["rmi", "-f", &self.tag]);
    }
}

#[test]
#[ignore = "builds and runs the image: scripts/test-container"]
fn the_image_built_from_the_dockerfile_runs_its_default_probes() {
    // The host's build and plugins stand in for the builder's: the
    // release build, or the stripped binary `WASMPROBE_IMAGE_BINARY` names
    // (scripts/test-container strips the test build's, so the test command
    // compiles the workspace once).
    let bin = std::env::var_os("WASMPROBE_IMAGE_BINARY")
        .map_or_else(|| root().join("target/release/wasmprobe"), PathBuf::from);
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --release -p wasmprobe --locked` \
         (scripts/test-container --release does)",
        bin.display()
    );
    let plugin_dir = root().join("dist/plugins");
    let mut plugins: Vec<PathBuf> = std::fs::read_dir(&plugin_dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: build the plugins with `scripts/build-plugins` (scripts/test-container does)",
                plugin_dir.display()
            )
        })
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    plugins.sort();

    let config_path = root().join("deploy/probes.container.toml");
    let config = read(&config_path);
    let probes = probes(&config);
    for (name, plugin, _) in &probes {
        assert!(
            plugin_dir.join(format!("{plugin}.wasm")).is_file(),
            "probe {name} needs {plugin}.wasm in {}: build it with `scripts/build-plugins`",
            plugin_dir.display()
        );
    }
    assert!(
        probes
            .iter()
            .any(|(_, plugin, scheduled)| plugin == "icmp" && *scheduled),
        "the default config should probe ICMP: {probes:?}"
    );

    // The image ships the binary as the builder installs it: no symbol
    // table, no debug info. `.debug_gdb_scripts` is no debug info: rustc
    // emits it whenever `debug` is on, as a loaded section (34 bytes naming
    // the pretty-printer script) that stripping keeps.
    let sections = Command::new("readelf")
        .args(["-S", "--wide"])
        .arg(&bin)
        .output()
        .unwrap_or_else(|e| {
            panic!("readelf is missing ({e}): install binutils (scripts/test-container does)")
        });
    assert!(sections.status.success(), "readelf: {}", said(&sections));
    let sections = String::from_utf8_lossy(&sections.stdout);
    let unstripped: Vec<&str> = sections
        .lines()
        .filter(|l| {
            (l.contains(".debug_") && !l.contains(".debug_gdb_scripts")) || l.contains(".symtab")
        })
        .collect();
    assert!(
        unstripped.is_empty(),
        "{} is not stripped; the image would carry these sections:\n{}",
        bin.display(),
        unstripped.join("\n")
    );
    let bin_size = std::fs::metadata(&bin)
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()))
        .len();
    println!("binary size: {:.1} MB (stripped)", mb(bin_size));
    println!("plugins: {}", plugins.len());

    // The build context: the artifacts under out/, the default config, and
    // the Dockerfile with only its builder stage replaced. No .dockerignore:
    // the repository's leaves out every *.wasm, the plugins included.
    let ctx = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    copy(&bin, &ctx.path().join("out/bin/wasmprobe"));
    for p in &plugins {
        let name = p.file_name().unwrap_or_default();
        copy(p, &ctx.path().join("out/plugins").join(name));
    }
    copy(
        &config_path,
        &ctx.path().join("deploy/probes.container.toml"),
    );
    let original = read(&root().join("Dockerfile"));
    let (dockerfile, runtime_stage) = with_prebuilt_builder(&original);
    let dockerfile_path = ctx.path().join("Dockerfile");
    std::fs::write(&dockerfile_path, &dockerfile)
        .unwrap_or_else(|e| panic!("{}: {e}", dockerfile_path.display()));
    let written = read(&dockerfile_path);
    let start = runtime_start(&written, 0)
        .unwrap_or_else(|| panic!("no runtime stage in the generated Dockerfile:\n{written}"));
    assert_eq!(
        &written[start..],
        runtime_stage,
        "the runtime stage must be the repository's, unchanged"
    );
    println!(
        "Dockerfile: builder stage replaced by {PREBUILT_BUILDER:?}; runtime stage unchanged ({} lines)",
        runtime_stage.lines().count()
    );

    let base = podman(&["image", "exists", BASE]);
    assert!(
        base.status.success(),
        "{BASE} is not in local storage: scripts/test-container pulls or builds it"
    );

    let unique = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    );
    let image = Image {
        tag: format!("localhost/wasmprobe-test:{unique}"),
        container: format!("wasmprobe-test-{unique}"),
        logs_shown: Cell::new(false),
    };

    // --layers=false: no intermediate images (the builder stage's included)
    // outlive the build, so removing the tag removes everything it made.
    let ctx_arg = ctx.path().to_string_lossy().into_owned();
    let t = Instant::now();
    let build = podman(&[
        "build",
        "--format",
        "docker",
        "--pull=never",
        "--layers=false",
        "-t",
        &image.tag,
        &ctx_arg,
    ]);
    assert!(
        build.status.success(),
        "podman build failed:\n{}\n--- Dockerfile ---\n{dockerfile}",
        said(&build)
    );
    println!(
        "podman build: ok in {:.0} s ({})",
        t.elapsed().as_secs_f64(),
        image.tag
    );
    let size = |name: &str| -> u64 {
        let out = podman(&["image", "inspect", "--format", "{{.Size}}", name]);
        stdout(&out)
            .parse()
            .unwrap_or_else(|e| panic!("podman image inspect {name}: {e}: {}", said(&out)))
    };
    let image_size = size(&image.tag);
    let base_size = size(BASE);
    println!("image size: {:.1} MB", mb(image_size));
    println!(
        "base image size: {:.1} MB ({BASE} as stored here); added by the Dockerfile: {:.1} MB",
        mb(base_size),
        mb(image_size.saturating_sub(base_size))
    );

    // Datagram ICMP sockets for the image's group, as Docker (20.10 and
    // later) grants by default and podman does not.
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:{CONTAINER_PORT}");
    let started = Instant::now();
    let run = podman(&[
        "run",
        "-d",
        "--name",
        &image.container,
        "-p",
        &publish,
        "--sysctl",
        "net.ipv4.ping_group_range=0 2147483647",
        &image.tag,
    ]);
    if !run.status.success() {
        image.fail(&format!("podman run failed:\n{}", said(&run)));
    }
    println!("podman run: {} on 127.0.0.1:{port}", image.container);

    let uid = image.exec(&["id", "-u"]);
    let gid = image.exec(&["id", "-g"]);
    if uid != ID || gid != ID {
        image.fail(&format!("runs as uid {uid} gid {gid}, not {ID}:{ID}"));
    }
    println!("user: uid {uid} gid {gid}");

    // The first start compiles every plugin before the port opens.
    let t = Instant::now();
    loop {
        match status(port, "/healthz") {
            Ok(200) => break,
            last => {
                if !image.running() {
                    image.fail(&format!(
                        "the container exited before /healthz was 200 ({last:?})"
                    ));
                }
                if t.elapsed() > Duration::from_secs(90) {
                    image.fail(&format!("/healthz not 200 after 90 s: {last:?}"));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "/healthz: 200 {:.0} ms after `podman run` was called ({:.0} ms of polling)",
        started.elapsed().as_secs_f64() * 1000.0,
        t.elapsed().as_secs_f64() * 1000.0
    );
    // What each plugin's load took: the image ships them compiled
    // (`wasmprobe compile` at build time), so a load is a cache read.
    for line in image.logs().lines().filter(|l| l.contains("plugin loaded")) {
        println!("  {}", line.trim());
    }

    // Every scheduled probe has run, then every one succeeded.
    let scheduled: Vec<&str> = probes
        .iter()
        .filter(|(_, _, scheduled)| *scheduled)
        .map(|(name, _, _)| name.as_str())
        .collect();
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let t = Instant::now();
    let scrape = loop {
        let reply = get(&metrics, None);
        if reply.status != 200 {
            image.fail(&format!("/metrics: {}\n{}", reply.status, reply.body));
        }
        let s = Scrape::parse(&reply.body);
        if scheduled
            .iter()
            .all(|p| s.get("probe_success", &[("probe", *p)]).is_some())
        {
            break s;
        }
        if t.elapsed() > Duration::from_secs(90) {
            image.fail(&format!(
                "not every probe of {scheduled:?} ran within 90 s:\n{}",
                s.text
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    for (name, plugin, _) in probes.iter().filter(|(_, _, scheduled)| *scheduled) {
        let success = scrape.value("probe_success", &[("probe", name.as_str())]);
        if success != 1.0 {
            image.fail(&format!(
                "probe {name} ({plugin}) failed in the container:\n{}",
                scrape.text
            ));
        }
        println!("probe {name} ({plugin}): probe_success 1");
    }

    // On-demand modules, against the engine's own liveness endpoint inside
    // the container.
    for (name, plugin, _) in probes.iter().filter(|(_, _, scheduled)| !*scheduled) {
        assert_eq!(
            plugin, "http-health",
            "on-demand probe {name}: this test knows a target only for http-health"
        );
        let target = format!("http://127.0.0.1:{CONTAINER_PORT}/healthz");
        let reply = get(
            &format!("http://127.0.0.1:{port}/probe?module={name}&target={target}"),
            None,
        );
        if reply.status != 200 {
            image.fail(&format!(
                "/probe?module={name}: {}\n{}",
                reply.status, reply.body
            ));
        }
        let s = Scrape::parse(&reply.body);
        if s.get("probe_success", &[("probe", name.as_str())]) != Some(1.0) {
            image.fail(&format!(
                "/probe?module={name}&target={target} failed:\n{}",
                s.text
            ));
        }
        println!("module {name} ({plugin}) on {target}: probe_success 1");
    }

    // The Dockerfile's HEALTHCHECK, run by podman in the container. Without
    // systemd podman logs that it cannot set up the timer; that is harmless.
    let health = podman(&["healthcheck", "run", &image.container]);
    if !health.status.success() {
        image.fail(&format!(
            "podman healthcheck run failed:\n{}",
            said(&health)
        ));
    }
    println!("podman healthcheck run: exit 0");

    // SIGTERM drains and exits 0 well within the stop timeout.
    let t = Instant::now();
    let stop = podman(&["stop", "-t", "20", &image.container]);
    if !stop.status.success() {
        image.fail(&format!("podman stop failed:\n{}", said(&stop)));
    }
    let stopped_in = t.elapsed();
    let code = stdout(&podman(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &image.container,
    ]));
    if code != "0" {
        image.fail(&format!(
            "exit code {code} after podman stop ({:.1} s)",
            stopped_in.as_secs_f64()
        ));
    }
    println!(
        "podman stop -t 20: exit code 0 after {:.1} s",
        stopped_in.as_secs_f64()
    );
}
