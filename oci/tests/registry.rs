//! The client against real and scripted registries, all on loopback.
//!
//! - `real`: Debian's `docker-registry` (the CNCF distribution registry),
//!   one instance per test on a free port, anonymous or with htpasswd
//!   Basic auth. Skipped, with the reason printed, only when the binary
//!   is absent (`apt-get install docker-registry`).
//! - `scripted`: a few-line HTTP server for what distribution cannot be
//!   configured to do here: Bearer token auth, blob redirects to another
//!   host, and a registry that accepts connections and never answers.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed expectation in a test harness is a test failure"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use wasmprobe_oci::{Cache, Client, ClientOptions, Credentials, Digest, Kind, OciError, Reference};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

fn reference(s: &str) -> Reference {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn client() -> Client {
    Client::new(ClientOptions::default())
}

fn client_with(username: &str, password: &str) -> Client {
    Client::new(ClientOptions {
        credentials: Some(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        }),
        ..ClientOptions::default()
    })
}

/// A running `docker-registry serve`, killed on drop. Its log is printed
/// when the test fails.
struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
}

impl Registry {
    /// `None` (after saying why) when the registry binary is absent.
    fn start() -> Option<Self> {
        Self::start_with(None)
    }

    fn start_with_basic_auth(user: &str, password: &str) -> Option<Self> {
        Self::start_with(Some((user, password)))
    }

    fn start_with(auth: Option<(&str, &str)>) -> Option<Self> {
        if !Path::new(REGISTRY_BIN).exists() {
            eprintln!(
                "skipping: {REGISTRY_BIN} is absent (apt-get install docker-registry to run this test)"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let root = dir.path().join("data");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n  secret: wasmprobe-oci-tests\n",
            root.display()
        );
        if let Some((user, password)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils) runs");
            assert!(out.status.success(), "htpasswd failed: {out:?}");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: wasmprobe-tests\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        let mut registry = Self { child, dir, addr };
        registry.wait_ready();
        Some(registry)
    }

    /// Until `GET /v2/` answers 200 (anonymous) or 401 (auth).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited with {status}:\n{}", self.log());
            }
            if let Some(line) = status_line(&self.addr, "/v2/")
                && (line.contains(" 200 ") || line.contains(" 401 "))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry not ready on {} after 20s:\n{}",
                self.addr,
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Where the registry's filesystem driver keeps blob `digest`.
    fn blob_file(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- docker-registry log ---\n{}", self.log());
        }
    }
}

/// The status line of a plain HTTP GET, or `None` if nothing answers.
fn status_line(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line)
}

/// Something shaped like a component; the registry does not care.
fn plugin_bytes(tag: &str) -> Vec<u8> {
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.extend_from_slice(tag.as_bytes());
    bytes.extend(std::iter::repeat_n(0xa5, 4096));
    bytes
}

mod real {
    use super::*;

    #[test]
    fn plugin_push_then_pull_round_trips() {
        let Some(registry) = Registry::start() else {
            return;
        };
        let client = client();
        let tag = reference(&format!("{}/team/http-health:v1", registry.addr));
        let bytes = plugin_bytes("v1");

        let digest = client.push(&tag, Kind::Plugin, &bytes).unwrap();
        let pulled = client.pull(&tag, Kind::Plugin).unwrap();
        assert_eq!(pulled.digest, digest);
        assert_eq!(pulled.kind, Kind::Plugin);
        assert_eq!(pulled.bytes, bytes);

        let pinned = tag.with_digest(digest.clone());
        assert_eq!(
            pinned.to_string(),
            format!("{}/team/http-health:v1@{digest}", registry.addr)
        );
        assert_eq!(client.pull(&pinned, Kind::Plugin).unwrap().bytes, bytes);
        assert_eq!(client.resolve(&tag).unwrap(), digest);

        // The layer blob now exists: the second push skips its upload and
        // still tags a manifest that pulls.
        let again = client.push(&tag, Kind::Plugin, &bytes).unwrap();
        assert_eq!(client.pull(&tag, Kind::Plugin).unwrap().digest, again);
    }

    #[test]
    fn package_push_then_pull_round_trips_and_is_not_a_plugin() {
        let Some(registry) = Registry::start() else {
            return;
        };
        let client = client();
        let tag = reference(&format!("{}/team/probes:2026.1", registry.addr));
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();

        let digest = client.push(&tag, Kind::Package, &bytes).unwrap();
        let pulled = client.pull(&tag, Kind::Package).unwrap();
        assert_eq!((pulled.digest, pulled.kind), (digest, Kind::Package));
        assert_eq!(pulled.bytes, bytes);

        let err = client.pull(&tag, Kind::Plugin).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{tag} is a probe package, not a plugin")
        );
    }

    #[test]
    fn a_missing_tag_is_named() {
        let Some(registry) = Registry::start() else {
            return;
        };
        let client = client();
        let v1 = reference(&format!("{}/team/probe:v1", registry.addr));
        client.push(&v1, Kind::Plugin, &plugin_bytes("v1")).unwrap();

        let v2 = reference(&format!("{}/team/probe:v2", registry.addr));
        let err = client.pull(&v2, Kind::Plugin).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "registry {}: repository team/probe has no tag v2 (404 MANIFEST_UNKNOWN)",
                registry.addr
            )
        );
        let err = client.resolve(&v2).unwrap_err();
        assert!(matches!(err, OciError::NotFound { .. }), "{err}");
    }

    #[test]
    fn a_pin_the_registry_does_not_have_is_named() {
        let Some(registry) = Registry::start() else {
            return;
        };
        let client = client();
        let tag = reference(&format!("{}/team/probe:v1", registry.addr));
        client
            .push(&tag, Kind::Plugin, &plugin_bytes("v1"))
            .unwrap();
        let absent = Digest::of(b"no such manifest");
        let err = client
            .pull(&tag.with_digest(absent.clone()), Kind::Plugin)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "registry {}: repository team/probe has no manifest {absent} (404 MANIFEST_UNKNOWN)",
                registry.addr
            )
        );
    }

    /// The registry's storage is altered behind its back, so that it
    /// serves other manifest bytes under the pinned digest.
    #[test]
    fn a_pin_served_with_other_bytes_is_a_digest_mismatch() {
        let Some(registry) = Registry::start() else {
            return;
        };
        let client = client();
        let v1 = reference(&format!("{}/team/probe:v1", registry.addr));
        let v2 = reference(&format!("{}/team/probe:v2", registry.addr));
        let d1 = client.push(&v1, Kind::Plugin, &plugin_bytes("v1")).unwrap();
        let d2 = client.push(&v2, Kind::Plugin, &plugin_bytes("v2")).unwrap();
        std::fs::copy(registry.blob_file(&d2), registry.blob_file(&d1)).unwrap();

        let pinned = v1.with_digest(d1.clone());
        let err = client.pull(&pinned, Kind::Plugin).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("digest mismatch for {pinned}: pinned {d1} but the registry served {d2}")
        );
        let err = client.resolve(&pinned).unwrap_err();
        assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
    }

    #[test]
    fn a_corrupted_layer_is_refused() {
        let Some(registry) = Registry::start() else {
            return;
        };
        let client = client();
        let tag = reference(&format!("{}/team/probe:v1", registry.addr));
        let bytes = plugin_bytes("v1");
        client.push(&tag, Kind::Plugin, &bytes).unwrap();
        let layer = Digest::of(&bytes);
        let mut evil = bytes.clone();
        evil[10] ^= 0xff; // same size, other content
        std::fs::write(registry.blob_file(&layer), &evil).unwrap();

        let err = client.pull(&tag, Kind::Plugin).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "layer of {tag} is corrupt: the manifest names {layer} but the registry served {}",
                Digest::of(&evil)
            )
        );
    }

    #[test]
    fn a_moved_tag_does_not_move_a_pin() {
        let Some(registry) = Registry::start() else {
            return;
        };
        let client = client();
        let stable = reference(&format!("{}/team/probe:stable", registry.addr));
        let d1 = client
            .push(&stable, Kind::Plugin, &plugin_bytes("v1"))
            .unwrap();
        let pinned = stable.with_digest(d1.clone());
        let d2 = client
            .push(&stable, Kind::Plugin, &plugin_bytes("v2"))
            .unwrap();
        assert_ne!(d1, d2);

        let old = client.pull(&pinned, Kind::Plugin).unwrap();
        assert_eq!((old.digest, old.bytes), (d1, plugin_bytes("v1")));
        let new = client.pull(&stable, Kind::Plugin).unwrap();
        assert_eq!((new.digest, new.bytes), (d2, plugin_bytes("v2")));
    }

    #[test]
    fn size_caps_apply_to_push_and_pull() {
        let Some(registry) = Registry::start() else {
            return;
        };
        let tag = reference(&format!("{}/team/big:v1", registry.addr));
        let bytes = plugin_bytes("big");
        let digest = client().push(&tag, Kind::Plugin, &bytes).unwrap();

        let small = Client::new(ClientOptions {
            max_artifact_size: 1024,
            ..ClientOptions::default()
        });
        let err = small.pull(&tag, Kind::Plugin).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "layer of {tag} is over the 1 KiB limit (it declares {} bytes)",
                bytes.len()
            )
        );
        let err = small.push(&tag, Kind::Plugin, &bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "plugin for {tag} is {} bytes, over the 1 KiB limit",
                bytes.len()
            )
        );
        let err = small
            .push(&tag.with_digest(digest), Kind::Plugin, &bytes)
            .unwrap_err();
        assert!(matches!(err, OciError::PushToPinned { .. }), "{err}");
    }

    #[test]
    fn a_cached_pin_needs_no_registry() {
        let Some(registry) = Registry::start() else {
            return;
        };
        let client = client();
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(cache_dir.path().join("oci"));
        let tag = reference(&format!("{}/team/probe:v1", registry.addr));
        let digest = client
            .push(&tag, Kind::Plugin, &plugin_bytes("v1"))
            .unwrap();
        let pinned = tag.with_digest(digest.clone());

        let first = client.pull_cached(&pinned, Kind::Plugin, &cache).unwrap();
        drop(registry);
        let second = client.pull_cached(&pinned, Kind::Plugin, &cache).unwrap();
        assert_eq!(first, second);
        assert_eq!(second.bytes, plugin_bytes("v1"));

        // The registry is gone: an unpinned pull must reach it and fails.
        let err = client.pull_cached(&tag, Kind::Plugin, &cache).unwrap_err();
        assert!(matches!(err, OciError::Unreachable { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot reach {}", tag.registry())),
            "{err}"
        );
        // A cached plugin asked for as a package is refused, not served.
        let err = client
            .pull_cached(&pinned, Kind::Package, &cache)
            .unwrap_err();
        assert!(matches!(err, OciError::WrongKind { .. }), "{err}");
    }

    #[test]
    fn basic_auth_with_and_without_credentials() {
        let Some(registry) = Registry::start_with_basic_auth("probe-ci", "s3cret") else {
            return;
        };
        let tag = reference(&format!("{}/team/secret:v1", registry.addr));
        let bytes = plugin_bytes("secret");

        let anonymous = client();
        let err = anonymous.push(&tag, Kind::Plugin, &bytes).unwrap_err();
        let denied_anonymously = format!(
            "401 from registry {} for repository team/secret: authentication required and no credentials were given",
            registry.addr
        );
        assert_eq!(err.to_string(), denied_anonymously);

        let authed = client_with("probe-ci", "s3cret");
        let digest = authed.push(&tag, Kind::Plugin, &bytes).unwrap();
        let pulled = authed.pull(&tag, Kind::Plugin).unwrap();
        assert_eq!((pulled.digest, pulled.bytes), (digest, bytes));

        let err = anonymous.pull(&tag, Kind::Plugin).unwrap_err();
        assert_eq!(err.to_string(), denied_anonymously);

        let wrong = client_with("probe-ci", "guess");
        let err = wrong.pull(&tag, Kind::Plugin).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "401 from registry {} for repository team/secret: credentials refused",
                registry.addr
            )
        );
    }
}

/// A minimal HTTP/1.1 server: one connection at a time, `Connection:
/// close`, request bodies ignored. Records every request it saw.
struct Scripted {
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    authorization: Option<String>,
    accept: Option<String>,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }
}

impl Scripted {
    fn start(handler: impl Fn(&Seen, &str) -> Reply + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let own = addr.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Some(request) = read_request(&stream) {
                    log.lock().unwrap().push(request.clone());
                    write_reply(stream, handler(&request, &own));
                }
            }
        });
        Self { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut authorization = None;
    let mut accept = None;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "authorization" => authorization = Some(value.trim().to_owned()),
            "accept" => accept = Some(value.trim().to_owned()),
            "content-length" => length = value.trim().parse().ok()?,
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        target,
        authorization,
        accept,
    })
}

fn write_reply(mut stream: TcpStream, reply: Reply) {
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&reply.body);
}

/// A plugin manifest as oci-wasm writes it, for `layer`.
fn manifest_for(layer: &[u8]) -> Vec<u8> {
    let config = br#"{"architecture":"wasm","os":"wasip2"}"#;
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.wasm.config.v0+json",
            "digest": Digest::of(config).as_str(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/wasm",
            "digest": Digest::of(layer).as_str(),
            "size": layer.len(),
        }],
    })
    .to_string()
    .into_bytes()
}

mod scripted {
    use super::*;

    /// Bearer token flow, and a blob redirected to storage on another
    /// origin that must not receive the registry's Authorization header.
    #[test]
    fn bearer_token_and_redirect_to_storage() {
        let layer = plugin_bytes("bearer");
        let storage_layer = layer.clone();
        let storage = Scripted::start(move |_, _| Reply::new(200).body(&storage_layer));
        let storage_addr = storage.addr.clone();

        let manifest = manifest_for(&layer);
        let layer_digest = Digest::of(&layer);
        let registry = Scripted::start(move |req, own| {
            let bearer = req.authorization.as_deref() == Some("Bearer t0ken");
            let path = req.target.split('?').next().unwrap_or_default();
            match path {
                "/token" => {
                    // Basic base64("ci:pw")
                    if req.authorization.as_deref() == Some("Basic Y2k6cHc=") {
                        Reply::new(200).body(br#"{"token":"t0ken","expires_in":300}"#)
                    } else {
                        Reply::new(401)
                    }
                }
                _ if !bearer => Reply::new(401).header(
                    "WWW-Authenticate",
                    &format!(
                        r#"Bearer realm="http://{own}/token",service="scripted",scope="repository:team/probe:pull""#
                    ),
                ),
                "/v2/team/probe/manifests/v1" => Reply::new(200)
                    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                    .body(&manifest),
                p if p == format!("/v2/team/probe/blobs/{layer_digest}") => {
                    Reply::new(307).header("Location", &format!("http://{storage_addr}/blob?sig=x"))
                }
                _ => Reply::new(404),
            }
        });

        let tag = reference(&format!("{}/team/probe:v1", registry.addr));
        let pulled = client_with("ci", "pw").pull(&tag, Kind::Plugin).unwrap();
        assert_eq!(pulled.bytes, layer);
        assert_eq!(pulled.digest, Digest::of(&manifest_for(&layer)));

        let seen = registry.seen();
        let token = seen
            .iter()
            .find(|s| s.target.starts_with("/token"))
            .expect("a token request");
        assert!(
            token.target.contains("service=scripted")
                && token
                    .target
                    .contains("scope=repository%3Ateam%2Fprobe%3Apull"),
            "{token:?}"
        );
        assert_eq!(seen[0].authorization, None, "anonymous first: {seen:?}");
        let manifest_get = seen
            .iter()
            .rfind(|s| s.target.contains("/manifests/"))
            .unwrap();
        assert_eq!(manifest_get.authorization.as_deref(), Some("Bearer t0ken"));
        assert!(
            manifest_get
                .accept
                .as_deref()
                .is_some_and(|a| a.starts_with("application/vnd.oci.image.manifest.v1+json,")),
            "{manifest_get:?}"
        );
        let storage_seen = storage.seen();
        assert_eq!(storage_seen.len(), 1, "{storage_seen:?}");
        assert_eq!(storage_seen[0].target, "/blob?sig=x");
        assert_eq!(
            storage_seen[0].authorization, None,
            "credentials leaked to another host"
        );

        // Without credentials the token is asked for anonymously and
        // refused here.
        let err = client().pull(&tag, Kind::Plugin).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "401 from registry {} for repository team/probe: authentication required and no credentials were given",
                registry.addr
            )
        );
        let last_token = registry
            .seen()
            .into_iter()
            .rfind(|s| s.target.starts_with("/token"))
            .unwrap();
        assert_eq!(last_token.authorization, None);
        assert_eq!(last_token.method, "GET");
    }

    /// A registry that takes the connection and never says a word.
    #[test]
    fn a_hanging_registry_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                held.push(stream);
            }
        });
        let client = Client::new(ClientOptions {
            timeout: Duration::from_secs(1),
            ..ClientOptions::default()
        });
        let tag = reference(&format!("{addr}/team/probe:v1"));
        let err = client.pull(&tag, Kind::Plugin).unwrap_err();
        assert_eq!(err.to_string(), format!("{addr} did not answer within 1s"));
        let err = client.push(&tag, Kind::Plugin, b"x").unwrap_err();
        assert!(matches!(err, OciError::Timeout { .. }), "{err}");
    }

    /// Too many layers, an image index: refused with the reason, before
    /// any blob is fetched.
    #[test]
    fn foreign_layouts_are_refused() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let registry = Scripted::start(move |_, _| {
            Reply::new(200)
                .header("Content-Type", "application/vnd.oci.image.index.v1+json")
                .body(index)
        });
        let tag = reference(&format!("{}/library/alpine:3", registry.addr));
        let err = client().pull(&tag, Kind::Plugin).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{tag} is not a wasmprobe artifact: it is an image index (a list of manifests, \
                 e.g. one per platform); a wasmprobe artifact is a single manifest"
            )
        );
        assert_eq!(registry.seen().len(), 1);
    }
}
