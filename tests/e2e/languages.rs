//! Plugins in other languages: Python (`plugins/python-example`, made a
//! component by componentize-py through `scripts/build-python-plugin`) and
//! JavaScript (`plugins/js-example`, componentize-js through
//! `scripts/build-js-plugin`) load, are described and run like the Rust
//! plugins: their declared families reach `/metrics`, their HTTP goes
//! through the host, their log lines reach the log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crate::harness::{Engine, Scrape, root};
use crate::targets;

/// The first start compiles a 12-18 MB component: give it time.
const WAIT: Duration = Duration::from_secs(180);

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

/// The built plugin, rebuilt only when it is older than its sources (the
/// build takes several seconds). It lives outside `target/e2e-cache`:
/// wasmtime's cache cleanup deletes files it does not recognise there.
fn built(plugin: &str, script: &str, source: &str) -> PathBuf {
    let root = root();
    let out = root
        .join("target")
        .join("e2e-plugins")
        .join(format!("{plugin}.wasm"));
    let script = root.join("scripts").join(script);
    let mut sources = vec![root.join(source), script.clone()];
    let wit = std::fs::read_dir(root.join("wit")).unwrap_or_else(|e| panic!("read wit/: {e}"));
    sources.extend(
        wit.filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "wit")),
    );
    let newest = sources.iter().filter_map(|p| modified(p)).max();
    let fresh = modified(&out).is_some_and(|built| newest.is_some_and(|n| built > n));
    if !fresh {
        // The script writes a temporary file and renames it, so a
        // concurrent test process never loads half a plugin.
        let started = std::time::Instant::now();
        // The source's directory: the scripts build whatever it holds.
        let dir = root.join(source);
        let dir = dir.parent().unwrap_or(&root);
        let status = Command::new(&script)
            .arg(&out)
            .arg(dir)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(status.success(), "{} failed: {status}", script.display());
        println!(
            "{plugin}: built in {:.1} s, {} bytes",
            started.elapsed().as_secs_f64(),
            out.metadata().map(|m| m.len()).unwrap_or(0)
        );
    }
    out
}

/// A plugin of another language, its metric prefix.
struct Lang {
    plugin: &'static str,
    prefix: &'static str,
    path: PathBuf,
}

fn python() -> Lang {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    Lang {
        plugin: "py-keyword",
        prefix: "pyprobe",
        path: BUILT
            .get_or_init(|| {
                built(
                    "py-keyword",
                    "build-python-plugin",
                    "plugins/python-example/app.py",
                )
            })
            .clone(),
    }
}

fn python_redis() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            built(
                "py-redis",
                "build-python-plugin",
                "plugins/python-redis/app.py",
            )
        })
        .clone()
}

fn javascript() -> Lang {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    Lang {
        plugin: "js-keyword",
        prefix: "jsprobe",
        path: BUILT
            .get_or_init(|| {
                built(
                    "js-keyword",
                    "build-js-plugin",
                    "plugins/js-example/probe.js",
                )
            })
            .clone(),
    }
}

fn probe(lang: &Lang, name: &str, target: &str, keyword: &str) -> String {
    format!(
        "plugin = \"{}\"\nschedule = \"* * * * * *\"\ntarget = \"{target}\"\n\
         [probes.{name}.config]\nkeyword = \"{keyword}\"",
        lang.plugin
    )
}

#[test]
fn a_python_plugin_checks_a_local_target_for_a_keyword() {
    checks_a_keyword(&python());
}

#[test]
fn a_javascript_plugin_checks_a_local_target_for_a_keyword() {
    checks_a_keyword(&javascript());
}

#[test]
fn check_refuses_a_python_probe_without_its_keyword() {
    refuses_a_probe_without_its_keyword(&python());
}

#[test]
fn check_refuses_a_javascript_probe_without_its_keyword() {
    refuses_a_probe_without_its_keyword(&javascript());
}

fn checks_a_keyword(lang: &Lang) {
    let t = targets::http();
    let p = lang.prefix;
    let metric = |m: &str| format!("{p}_{m}");
    let ran =
        |s: &Scrape, probe: &str| s.get(&metric("http_status"), &[("probe", probe)]).is_some();
    let e = Engine::new()
        .raw(&format!(
            "[plugins.{}]\npath = {:?}\n",
            lang.plugin, lang.path
        ))
        // /json answers `{"status": "ok"}`; /status/503 answers `status`.
        .probe("found", &probe(lang, "found", &t.url("/json"), "status"))
        .probe(
            "missing",
            &probe(lang, "missing", &t.url("/json"), "absent"),
        )
        .probe(
            "down",
            &probe(lang, "down", &t.url("/status/503"), "status"),
        )
        .start();
    let s = e.wait_for("a run of every probe", WAIT, |s| {
        ["found", "missing", "down"].iter().all(|p| ran(s, p))
    });

    let found = [("probe", "found")];
    assert_eq!(
        s.value("probe_success", &found),
        1.0,
        "{}\n{}",
        s.text,
        e.log()
    );
    assert_eq!(s.value(&metric("keyword_found"), &found), 1.0);
    assert_eq!(s.value(&metric("http_status"), &found), 200.0);
    assert_eq!(s.value(&metric("body_bytes"), &found), 16.0);
    assert!(s.value(&metric("http_duration_seconds"), &found) > 0.0);

    let missing = [("probe", "missing")];
    assert_eq!(s.value("probe_success", &missing), 0.0);
    assert_eq!(s.value(&metric("keyword_found"), &missing), 0.0);
    assert_eq!(s.value(&metric("http_status"), &missing), 200.0);

    let down = [("probe", "down")];
    assert_eq!(s.value("probe_success", &down), 0.0);
    assert_eq!(s.value(&metric("keyword_found"), &down), 1.0);
    assert_eq!(s.value(&metric("http_status"), &down), 503.0);

    // The host owns the families the plugin declared in describe().
    for family in [
        "http_status",
        "keyword_found",
        "body_bytes",
        "http_duration_seconds",
    ]
    .map(metric)
    {
        assert_eq!(
            s.families.get(&family).map(|f| f.0.as_str()),
            Some("gauge"),
            "{family}"
        );
    }
    assert!(
        s.text
            .contains(&format!("# HELP {p}_keyword_found 1 if the body contains")),
        "{}",
        s.text
    );
    // The plugin's `log` call reaches the host's log with the reason.
    let log = e.log();
    assert!(
        log.contains("plugin_log") && log.contains("absent") && log.contains("not found"),
        "{log}"
    );
}

fn refuses_a_probe_without_its_keyword(lang: &Lang) {
    let engine = Engine::new()
        .raw(&format!("[plugins.{}]\npath = {:?}\n", lang.plugin, lang.path))
        .probe(
            "bad",
            &format!(
                "plugin = \"{}\"\ntarget = \"http://127.0.0.1:9/\"\n[probes.bad.config]\nkeywords = \"typo\"",
                lang.plugin
            ),
        );
    let config = engine.config_path();
    std::fs::write(&config, engine.text()).unwrap_or_else(|e| panic!("write config: {e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(["check", "--config"])
        .arg(&config)
        .env_remove("WASMPROBE_LOG")
        .output()
        .unwrap_or_else(|e| panic!("wasmprobe check: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("probes.bad.config"), "{stderr}");
    assert!(stderr.contains("keyword"), "{stderr}");
}

/// A Redis server in miniature: `AUTH` with one password, then `PING` is
/// answered `+PONG`; without `AUTH` it answers `-NOAUTH`.
fn redis(password: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (listener, addr) = targets::bind();
    targets::rt().spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                let mut authed = false;
                loop {
                    // A RESP array: `*N`, then `$len` and the word, N times.
                    let mut line = String::new();
                    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let n: usize = line.trim().trim_start_matches('*').parse().unwrap_or(0);
                    let mut words = Vec::new();
                    for _ in 0..n * 2 {
                        line.clear();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if !line.starts_with('$') {
                            words.push(line.trim_end().to_string());
                        }
                    }
                    let reply: &[u8] = match words.first().map(String::as_str) {
                        Some("AUTH") if words.get(1).map(String::as_str) == Some(password) => {
                            authed = true;
                            b"+OK\r\n"
                        }
                        Some("AUTH") => b"-WRONGPASS invalid password\r\n",
                        Some("PING") if authed => b"+PONG\r\n",
                        Some("PING") => b"-NOAUTH Authentication required.\r\n",
                        _ => b"-ERR unknown command\r\n",
                    };
                    if stream.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A Python plugin speaks a TCP protocol through the host's `tcp`
/// capability, with a credential from `secrets`: Redis `AUTH` and `PING`.
#[test]
fn a_python_plugin_pings_redis_over_the_tcp_capability() {
    let server = redis("s3cret");
    let path = python_redis();
    let probe = |name: &str, secret: &str| {
        format!(
            "[probes.{name}]\nplugin = \"py-redis\"\nschedule = \"* * * * * *\"\ntarget = \"{server}\"\nallow = [\"tcp://{server}\"]\nsecrets = {{ password = {{ env = \"{secret}\" }} }}\n"
        )
    };
    let e = Engine::new()
        .raw(&format!("[plugins.py-redis]\npath = {path:?}\n"))
        .env("WASMPROBE_TEST_REDIS_GOOD", "s3cret")
        .env("WASMPROBE_TEST_REDIS_BAD", "wrong")
        .raw(&probe("redis", "WASMPROBE_TEST_REDIS_GOOD"))
        .raw(&probe("redis_bad_password", "WASMPROBE_TEST_REDIS_BAD"))
        .start();
    let s = e.wait_for("a run of both", WAIT, |s| {
        ["redis", "redis_bad_password"]
            .iter()
            .all(|p| s.get("pyredis_up", &[("probe", p)]).is_some())
    });
    assert_eq!(
        s.value("probe_success", &[("probe", "redis")]),
        1.0,
        "{}\n{}",
        s.text,
        e.log()
    );
    assert_eq!(s.value("pyredis_up", &[("probe", "redis")]), 1.0);
    assert!(s.value("pyredis_ping_seconds", &[("probe", "redis")]) > 0.0);
    assert_eq!(
        s.value("probe_success", &[("probe", "redis_bad_password")]),
        0.0
    );
    assert!(
        s.value(
            "wasmprobe_probe_host_calls_total",
            &[("probe", "redis"), ("capability", "tcp")]
        ) >= 5.0
    );
    let status = crate::harness::get(&e.url("/"), None).body;
    assert!(status.contains("AUTH refused"), "{status}");
    assert!(!status.contains("s3cret"), "{status}");
}
