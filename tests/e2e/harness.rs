//! A small fluent harness: write a probes.toml, start the real `wasmprobe`
//! binary on 127.0.0.1:0, wait for it to listen, scrape and parse.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// A command's stdout then stderr: what it said, for assertions and
/// failure messages.
pub fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A built plugin or fixture; fails loudly with the command that builds it.
pub fn wasm(kind: &str, name: &str) -> PathBuf {
    let path = root().join("dist").join(kind).join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build it with `scripts/build-plugins --fixtures` (the test script does)",
        path.display()
    );
    path
}

/// A config under construction.
pub struct Engine {
    args: Vec<String>,
    /// A command the engine runs under (`unshare ...`), then the binary.
    wrap: Vec<String>,
    engine_keys: String,
    env: Vec<(String, String)>,
    toml: String,
    /// The compile cache; `None` is the one every test shares.
    cache: Option<PathBuf>,
    dir: tempfile::TempDir,
}

impl Engine {
    /// Bundled plugins and fixtures are known by name; the compile cache is
    /// shared by every test.
    pub fn new() -> Engine {
        let toml = format!(
            "[plugins.http-health]\npath = {:?}\n\n[plugins.icmp]\npath = {:?}\n\n\
             [plugins.treaty-kpis]\npath = {:?}\n\n[plugins.anchor-job]\npath = {:?}\n\n\
             [plugins.tcp]\npath = {:?}\n\n[plugins.dns]\npath = {:?}\n\n\
             [plugins.grpc]\npath = {:?}\n\n[plugins.scrape-compare]\npath = {:?}\n\n\
             [plugins.misbehave]\npath = {:?}\n\n",
            wasm("plugins", "http-health"),
            wasm("plugins", "icmp"),
            wasm("plugins", "treaty-kpis"),
            wasm("plugins", "anchor-job"),
            wasm("plugins", "tcp"),
            wasm("plugins", "dns"),
            wasm("plugins", "grpc"),
            wasm("plugins", "scrape-compare"),
            wasm("fixtures", "misbehave"),
        );
        Engine {
            args: Vec::new(),
            wrap: Vec::new(),
            engine_keys: String::new(),
            env: Vec::new(),
            toml,
            cache: None,
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
        }
    }

    /// Runs the engine as `PREFIX... wasmprobe run ...`.
    pub fn wrap(mut self, prefix: &[&str]) -> Engine {
        self.wrap = prefix.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Adds an argument to `wasmprobe run`.
    pub fn arg(mut self, arg: &str) -> Engine {
        self.args.push(arg.to_string());
        self
    }

    /// Sets an environment variable of the engine process.
    pub fn env(mut self, key: &str, value: &str) -> Engine {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds a key to the `[engine]` table.
    pub fn engine_key(mut self, line: &str) -> Engine {
        self.engine_keys.push_str(line);
        self.engine_keys.push('\n');
        self
    }

    /// A compile cache of this engine's own (an empty one: every plugin
    /// compiled at start) instead of the shared one.
    pub fn cache_dir(mut self, dir: &Path) -> Engine {
        self.cache = Some(dir.to_path_buf());
        self
    }

    /// Adds raw TOML.
    pub fn raw(mut self, text: &str) -> Engine {
        self.toml.push_str(text);
        self.toml.push('\n');
        self
    }

    /// Adds `[probes.NAME]` with `body` as its keys.
    pub fn probe(self, name: &str, body: &str) -> Engine {
        self.raw(&format!("[probes.{name}]\n{body}\n"))
    }

    /// A file next to the config (CA files and the like).
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("probes.toml")
    }

    fn write(&self) -> PathBuf {
        let p = self.config_path();
        std::fs::write(&p, self.text()).unwrap_or_else(|e| panic!("write config: {e}"));
        p
    }

    /// The config text as it will be written, to derive variants from.
    pub fn text(&self) -> String {
        let mut engine_keys = self.engine_keys.clone();
        if !engine_keys.contains("max_concurrent_runs") {
            engine_keys.push_str("max_concurrent_runs = 32\n");
        }
        let cache = self
            .cache
            .clone()
            .unwrap_or_else(|| root().join("target").join("e2e-cache"));
        format!(
            "[engine]\ncache_dir = {cache:?}\n{engine_keys}\n{}",
            self.toml
        )
    }

    /// Starts `wasmprobe run` and waits until it listens.
    pub fn start(self) -> Running {
        let config = self.write();
        let bin = env!("CARGO_BIN_EXE_wasmprobe");
        let mut cmd = match self.wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--drain",
                "3s",
                "--config",
            ])
            .arg(&config)
            .args(&self.args)
            .env("WASMPROBE_LOG", "info,wasmprobe=debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start wasmprobe: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains(" listening ")
                        && let Some(addr) = line
                            .split_whitespace()
                            .find_map(|w| w.strip_prefix("addr="))
                            .and_then(|a| a.parse::<SocketAddr>().ok())
                    {
                        let _ = tx.send(addr);
                    }
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let lines = log.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
                panic!("wasmprobe did not start listening:\n{lines}");
            }
        };
        Running {
            addr,
            child,
            log,
            _dir: self.dir,
        }
    }
}

/// A running engine, killed on drop.
pub struct Running {
    pub addr: SocketAddr,
    pub child: Child,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A peer process (Prometheus, blackbox_exporter), killed on drop.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free right now, for peers that cannot listen on :0
/// and report the port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("free port: {e}"))
}

/// An HTTP response as the tests need it.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// GET `url` with optional Accept header.
pub fn get(url: &str, accept: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
    get_with(url, &headers)
}

/// GET `url` with these request headers.
pub fn get_with(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = agent().get(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // Up to 256 MiB: the exposition of 100,000 targets is larger than
    // the client's default limit.
    let body = resp
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_string()
        .unwrap_or_else(|e| panic!("GET {url}: body: {e}"));
    Reply {
        status,
        content_type,
        body,
    }
}

impl Running {
    /// Sends a signal (`TERM`, `HUP`) to the engine.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -s {name} failed");
    }

    /// Resident memory of the engine process, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Times `n` scrapes of `/metrics` (each checked to be a 200 that
    /// parses); median and worst, milliseconds.
    pub fn scrape_latency(&self, n: usize) -> (f64, f64) {
        let mut times: Vec<f64> = (0..n)
            .map(|_| {
                let t = Instant::now();
                let r = get(&self.url("/metrics"), None);
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                assert_eq!(r.status, 200, "{}", r.body);
                ms
            })
            .collect();
        times.sort_by(f64::total_cmp);
        (times[times.len() / 2], times[times.len() - 1])
    }

    /// Waits for the engine to exit; its status, or `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// POSTs to `path`; status and body.
    pub fn post(&self, path: &str) -> (u16, String) {
        let mut resp = agent()
            .post(&self.url(path))
            .send_empty()
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        (resp.status().as_u16(), body)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Scrapes `/metrics` in the classic format and parses it.
    pub fn scrape(&self) -> Scrape {
        let r = get(&self.url("/metrics"), None);
        assert_eq!(r.status, 200, "{}", r.body);
        Scrape::parse(&r.body)
    }

    /// Waits until a line of the engine's log satisfies `line`; panics
    /// with the log after `timeout`.
    pub fn wait_for_log(&self, what: &str, timeout: Duration, line: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        while !self.log().lines().any(&line) {
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}\n--- log ---\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Scrapes until `cond` holds, or panics with the last scrape and log.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&Scrape) -> bool,
    ) -> Scrape {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.scrape();
            if cond(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}\n--- scrape ---\n{}\n--- log ---\n{}",
                    s.text,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One parsed series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A scrape, parsed by the official Prometheus Python client's parser.
pub struct Scrape {
    pub text: String,
    pub series: Vec<Series>,
    /// Family name → (type, label names of its samples).
    pub families: BTreeMap<String, (String, Vec<String>)>,
}

impl Scrape {
    /// Parses the classic text format with the official Prometheus Python
    /// client's parser (`tests/e2e/parse_exposition.py`).
    pub fn parse(text: &str) -> Scrape {
        Scrape::parse_as(text, "classic")
    }

    /// Parses OpenMetrics with the Python client's strict OpenMetrics parser.
    pub fn parse_openmetrics(text: &str) -> Scrape {
        Scrape::parse_as(text, "openmetrics")
    }

    fn parse_as(text: &str, format: &str) -> Scrape {
        use std::io::Write;
        let script = root().join("tests").join("e2e").join("parse_exposition.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(format)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("python3: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(text.as_bytes());
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("python3: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("ModuleNotFoundError"),
            "the Prometheus Python client is missing: pip install prometheus-client (scripts/test does)\n{stderr}"
        );
        assert!(
            out.status.success(),
            "{format} exposition does not parse: {stderr}\n{text}"
        );
        let parsed: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("parser output: {e}"));
        let mut series = Vec::new();
        for s in parsed["samples"].as_array().into_iter().flatten() {
            let labels: BTreeMap<String, String> = s[1]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| {
                    v.as_str()
                        .filter(|v| !v.is_empty())
                        .map(|v| (k.clone(), v.to_string()))
                })
                .collect();
            let value = match &s[2] {
                serde_json::Value::String(x) if x == "+Inf" => f64::INFINITY,
                serde_json::Value::String(x) if x == "-Inf" => f64::NEG_INFINITY,
                serde_json::Value::String(_) => f64::NAN,
                v => v.as_f64().unwrap_or(f64::NAN),
            };
            series.push(Series {
                name: s[0].as_str().unwrap_or_default().to_string(),
                labels,
                value,
            });
        }
        let mut families = BTreeMap::new();
        for (name, kind) in parsed["families"].as_object().into_iter().flatten() {
            let kind = kind.as_str().unwrap_or_default().to_string();
            let member = |s: &Series| {
                s.name == *name
                    || s.name.strip_prefix(name.as_str()).is_some_and(|rest| {
                        ["_total", "_bucket", "_count", "_sum", "_created", "_info"].contains(&rest)
                    })
            };
            let labels: BTreeSet<String> = series
                .iter()
                .filter(|s| member(s))
                .flat_map(|s| s.labels.keys().cloned())
                .filter(|l| l != "le" && l != "quantile")
                .collect();
            let labels: Vec<String> = labels.into_iter().collect();
            // The client names a counter family without `_total`; keep both.
            if kind == "counter" {
                families.insert(format!("{name}_total"), (kind.clone(), labels.clone()));
            }
            families.insert(name.clone(), (kind, labels));
        }
        Scrape {
            text: text.to_string(),
            series,
            families,
        }
    }

    /// The value of the series with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.series
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// The value, or a panic that prints the whole exposition.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in:\n{}", self.text))
    }

    /// Every series of a family (any labels).
    pub fn all(&self, name: &str) -> Vec<&Series> {
        self.series.iter().filter(|s| s.name == name).collect()
    }
}

/// `promtool check metrics` on an exposition; panics with its output.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is missing ({e}): install Debian's `prometheus` package (scripts/test does)")
        });
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("promtool: {e}"));
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}\n--- exposition ---\n{text}",
        said(&out)
    );
}
