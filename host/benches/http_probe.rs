//! The same HTTP probe two ways, against one local server: the
//! http-health plugin run in the engine (fresh instance per run, the
//! request through the `http` host call), and http-health's own logic
//! compiled natively into this benchmark, calling the host's HTTP client
//! directly. Prints probes/s of each and the ratio; asserts nothing.
//!
//! `cargo bench --bench http_probe [-- RUNS CONCURRENCY]`
//! (needs `scripts/build-plugins`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_health::check::Check;
use wasmprobe::bindings::wasmprobe::plugin::{http as host, types as host_types};
use wasmprobe::config::{Limits, PluginName, TlsSettings};
use wasmprobe::egress::{AllowList, AllowRule};
use wasmprobe::hostcalls::http::{HttpGrant, client};
use wasmprobe::hostcalls::tls::TlsClient;
use wasmprobe::runtime::engine::PoolSize;
use wasmprobe::runtime::record::RunResult;
use wasmprobe::runtime::run::{RunSpec, run};
use wasmprobe::runtime::store::Grants;
use wasmprobe::runtime::{Plugin, WasmEngine};
use wasmprobe_sdk::http as sdk;

/// Measured rounds of each path.
const ROUNDS: usize = 4;

/// A local server answering `ok` on every path, on its own threads.
fn serve() -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(rt) = rt else { return };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(hyper::body::Bytes::from_static(b"ok\n")),
                        ))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    Ok(addr)
}

fn to_host(r: sdk::Request) -> host::Request {
    host::Request {
        method: r.method,
        url: r.url,
        headers: r.headers,
        body: r.body,
        timeout_ms: r.timeout_ms,
        follow_redirects: r.follow_redirects,
        max_redirects: r.max_redirects,
        max_body_bytes: r.max_body_bytes,
        preferred_ip_protocol: r.preferred_ip_protocol.map(protocol_to_host),
        ip_protocol_fallback: r.ip_protocol_fallback,
        enable_http2: r.enable_http2,
        http2_prior_knowledge: r.http2_prior_knowledge,
        decompress: r.decompress,
    }
}

fn protocol_to_host(p: sdk::IpProtocol) -> host_types::IpProtocol {
    match p {
        sdk::IpProtocol::Ip4 => host_types::IpProtocol::Ip4,
        sdk::IpProtocol::Ip6 => host_types::IpProtocol::Ip6,
    }
}

fn protocol_from_host(p: host_types::IpProtocol) -> sdk::IpProtocol {
    match p {
        host_types::IpProtocol::Ip4 => sdk::IpProtocol::Ip4,
        host_types::IpProtocol::Ip6 => sdk::IpProtocol::Ip6,
    }
}

fn timings(t: host::PhaseTimings) -> sdk::PhaseTimings {
    sdk::PhaseTimings {
        resolve: t.resolve,
        connect: t.connect,
        tls: t.tls,
        processing: t.processing,
        transfer: t.transfer,
    }
}

fn tls(t: host::TlsInfo) -> sdk::TlsInfo {
    sdk::TlsInfo {
        version: t.version,
        cipher: t.cipher,
        chain: t
            .chain
            .into_iter()
            .map(|c| sdk::Certificate {
                subject: c.subject,
                issuer: c.issuer,
                subject_alt_names: c.subject_alt_names,
                not_after: c.not_after,
                fingerprint_sha256: c.fingerprint_sha256,
            })
            .collect(),
        verified: t.verified,
        verify_error: t.verify_error,
    }
}

fn from_host(r: Result<host::Response, host::HttpError>) -> Result<sdk::Response, sdk::HttpError> {
    match r {
        Ok(r) => Ok(sdk::Response {
            status: r.status,
            version: match r.version {
                host::HttpVersion::Http10 => sdk::HttpVersion::Http10,
                host::HttpVersion::Http11 => sdk::HttpVersion::Http11,
                host::HttpVersion::Http2 => sdk::HttpVersion::Http2,
            },
            headers: r.headers,
            body: r.body,
            trailers: r.trailers,
            body_truncated: r.body_truncated,
            content_length: r.content_length,
            wire_body_length: r.wire_body_length,
            redirects: r.redirects,
            final_url: r.final_url,
            remote_addr: r.remote_addr,
            ip_protocol: protocol_from_host(r.ip_protocol),
            timings: timings(r.timings),
            tls: r.tls.map(tls),
        }),
        Err(e) => Err(sdk::HttpError {
            kind: match e.kind {
                host::ErrorKind::Denied => sdk::ErrorKind::Denied,
                host::ErrorKind::InvalidRequest => sdk::ErrorKind::InvalidRequest,
                host::ErrorKind::Dns => sdk::ErrorKind::Dns,
                host::ErrorKind::Connect => sdk::ErrorKind::Connect,
                host::ErrorKind::Tls => sdk::ErrorKind::Tls,
                host::ErrorKind::Timeout => sdk::ErrorKind::Timeout,
                host::ErrorKind::TooManyRedirects => sdk::ErrorKind::TooManyRedirects,
                host::ErrorKind::Protocol => sdk::ErrorKind::Protocol,
            },
            message: e.message,
            timings: timings(e.timings),
            remote_addr: e.remote_addr,
            ip_protocol: e.ip_protocol.map(protocol_from_host),
            tls: e.tls.map(tls),
            redirects: e.redirects,
        }),
    }
}

/// What both probes need.
struct Shared {
    /// Held for its epoch ticker, which ends runs at their deadlines.
    _engine: Arc<WasmEngine>,
    plugin: Plugin,
    grants: Grants,
    grant: Arc<HttpGrant>,
    check: Check,
    target: String,
}

/// Runs `probe` `runs` times with `concurrency` in flight; probes/s.
async fn measure<F, Fut>(runs: usize, concurrency: usize, probe: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let probe = Arc::new(probe);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (probe, next, ok) = (probe.clone(), next.clone(), ok.clone());
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < runs {
                if probe().await {
                    ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let ok = ok.load(std::sync::atomic::Ordering::Relaxed);
    if ok != runs {
        eprintln!("warning: {} of {runs} probes failed", runs - ok);
    }
    runs as f64 / secs
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/plugins/http-health.wasm");
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: run scripts/build-plugins",
        path.display()
    );
    let addr = serve()?;
    let target = format!("http://{addr}/");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let engine = Arc::new(WasmEngine::new(
        PoolSize {
            instances: concurrency as u32 + 4,
            max_memory: 64 << 20,
        },
        None,
    )?);
    let allow = AllowList::new(vec![
        AllowRule::try_from(format!("http://{addr}")).map_err(anyhow::Error::msg)?,
    ]);
    let grant = Arc::new(HttpGrant {
        allow,
        proxy: None,
        tls: Arc::new(TlsClient::new(&TlsSettings::default())?),
        max_body: 10 << 20,
        virtual_host: None,
    });
    let name = PluginName::try_from("http-health".to_string()).map_err(anyhow::Error::msg)?;
    let plugin = rt.block_on(Plugin::load(&engine, &name, &path, None))?;
    let grants = Grants {
        http: Some(grant.clone()),
        ..Grants::default()
    };
    let check = Check::new(serde_json::from_str("{}")?).map_err(anyhow::Error::msg)?;

    let shared = Arc::new(Shared {
        _engine: engine,
        plugin,
        grants,
        grant,
        check,
        target,
    });
    let native = {
        let shared = shared.clone();
        move || {
            let s = shared.clone();
            async move {
                let req = to_host(s.check.request(&s.target, None));
                let deadline = Instant::now() + Duration::from_secs(5);
                let result = from_host(
                    client::send(
                        &s.grant,
                        &wasmprobe::hostcalls::Usage::default(),
                        req,
                        deadline,
                    )
                    .await,
                );
                s.check.evaluate(result).success
            }
        }
    };
    let wasm = {
        let shared = shared.clone();
        move || {
            let s = shared.clone();
            async move {
                let spec = RunSpec {
                    probe: "bench",
                    target: &s.target,
                    config: "{}",
                    limits: Limits::default(),
                    grants: &s.grants,
                    state: None,
                    tape: None,
                    hostname: None,
                };
                run(&s.plugin, spec).await.result == RunResult::Success
            }
        }
    };
    rt.block_on(async {
        // Warm up both paths.
        let _ = measure(1000, concurrency, native.clone()).await;
        let _ = measure(1000, concurrency, wasm.clone()).await;
        let mut n = Vec::new();
        let mut w = Vec::new();
        // Every connection leaves a TIME_WAIT socket for 60 s, and each
        // later connect to the same server searches more of them for a
        // free port, so every round runs slower than the one before. The
        // two paths take turns going first (native, wasm, wasm, native),
        // so that this drift weighs on both alike; always measuring wasm
        // second had charged it to wasm.
        for round in 0..ROUNDS {
            if round % 4 == 0 || round % 4 == 3 {
                n.push(measure(runs, concurrency, native.clone()).await);
                w.push(measure(runs, concurrency, wasm.clone()).await);
            } else {
                w.push(measure(runs, concurrency, wasm.clone()).await);
                n.push(measure(runs, concurrency, native.clone()).await);
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let rounded = |v: &[f64]| v.iter().map(|x| x.round()).collect::<Vec<_>>();
        println!(
            "HTTP probe of a local server, {runs} probes x {ROUNDS} rounds (taking turns), {concurrency} in flight, 2 worker threads:"
        );
        println!("  native (http-health logic + host client): mean {:.0} probes/s (rounds: {:?})", mean(&n), rounded(&n));
        println!("  wasm   (http-health plugin, fresh instance per run): mean {:.0} probes/s (rounds: {:?})", mean(&w), rounded(&w));
        println!("  ratio wasm/native of the means: {:.2} (goal >= 0.85)", mean(&w) / mean(&n));
    });
    Ok(())
}
