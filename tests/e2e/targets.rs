//! Real local targets on 127.0.0.1: an HTTP server with the routes the
//! tests need, the same over TLS with a generated CA, a listener that
//! accepts and never answers, and a listener that counts connections.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// The runtime every target of this test process runs on.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("target runtime: {e}"))
    })
}

/// A running target.
pub struct Target {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
}

impl Target {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub fn origin(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    pub fn accepted(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn router() -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok\n" }))
        // The Host the request came with (`/probe?hostname=` tests).
        .route(
            "/host",
            get(|headers: HeaderMap| async move {
                headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            }),
        )
        .route(
            "/slow/{ms}",
            get(|Path(ms): Path<u64>| async move {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                "slow\n"
            }),
        )
        .route(
            "/status/{code}",
            get(|Path(code): Path<u16>| async move {
                (
                    StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT),
                    "status\n",
                )
            }),
        )
        .route(
            "/bytes/{n}",
            get(|Path(n): Path<usize>| async move { vec![b'x'; n.min(16 << 20)] }),
        )
        .route(
            "/json",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::HeaderName::from_static("x-cache"), "HIT"),
                    ],
                    "{\"status\": \"ok\"}",
                )
            }),
        )
        .route(
            "/redirect/{n}",
            get(|Path(n): Path<u32>| async move {
                if n == 0 {
                    "done\n".into_response()
                } else {
                    (
                        StatusCode::FOUND,
                        [(header::LOCATION, format!("/redirect/{}", n - 1))],
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/redirect-to",
            get(
                |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let to = q.get("url").cloned().unwrap_or_default();
                    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
                },
            ),
        )
        .route(
            "/gzip",
            get(|headers: HeaderMap| async move {
                let accepts = headers
                    .get(header::ACCEPT_ENCODING)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("gzip"));
                let body = "hello ".repeat(1000);
                if !accepts {
                    return body.into_response();
                }
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                let _ = e.write_all(body.as_bytes());
                let gz = e.finish().unwrap_or_default();
                ([(header::CONTENT_ENCODING, "gzip")], gz).into_response()
            }),
        )
}

async fn serve_plain(listener: TcpListener, connections: Arc<AtomicUsize>) {
    serve_router(listener, connections, router()).await;
}

/// A target answering with a test's own routes.
pub fn serve(router: Router) -> Target {
    let (listener, addr) = bind();
    let connections = Arc::new(AtomicUsize::new(0));
    rt().spawn(serve_router(listener, connections.clone(), router));
    Target { addr, connections }
}

async fn serve_router(listener: TcpListener, connections: Arc<AtomicUsize>, router: Router) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        connections.fetch_add(1, Ordering::SeqCst);
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

pub fn bind() -> (TcpListener, SocketAddr) {
    let listener = rt()
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    (listener, addr)
}

/// The HTTP target with every route.
pub fn http() -> Target {
    let (listener, addr) = bind();
    let connections = Arc::new(AtomicUsize::new(0));
    rt().spawn(serve_plain(listener, connections.clone()));
    Target { addr, connections }
}

/// Accepts connections and never answers.
pub fn hanging() -> Target {
    let (listener, addr) = bind();
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    rt().spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    Target { addr, connections }
}

/// Counts connections (and answers 200), for "nothing reached it" checks.
pub fn counting() -> Target {
    http()
}

/// A CA and a server certificate for 127.0.0.1 and localhost.
pub struct TestPki {
    pub ca_pem: String,
    pub leaf_pem: String,
    pub leaf_key_pem: String,
    /// The leaf's notAfter, Unix seconds.
    pub leaf_not_after: i64,
    /// A client certificate (clientAuth) issued by the same CA, and its key.
    pub client_pem: String,
    pub client_key_pem: String,
}

pub fn pki() -> TestPki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let fail = |e: rcgen::Error| -> ! { panic!("rcgen: {e}") };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| fail(e));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "wasmprobe test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap_or_else(|e| fail(e));
    let ca_cert = ca.self_signed(&ca_key).unwrap_or_else(|e| fail(e));
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap_or_else(|e| fail(e));
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_after = rcgen::date_time_ymd(2031, 6, 1);
    let leaf_key = KeyPair::generate().unwrap_or_else(|e| fail(e));
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .unwrap_or_else(|e| fail(e));

    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| fail(e));
    client.is_ca = IsCa::ExplicitNoCa;
    client
        .distinguished_name
        .push(DnType::CommonName, "wasmprobe test client");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().unwrap_or_else(|e| fail(e));
    let client_cert = client
        .signed_by(&client_key, &issuer)
        .unwrap_or_else(|e| fail(e));
    TestPki {
        client_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
        ca_pem: ca_cert.pem(),
        leaf_pem: leaf_cert.pem(),
        leaf_key_pem: leaf_key.serialize_pem(),
        leaf_not_after: leaf.not_after.unix_timestamp(),
    }
}

/// The HTTP target's routes over TLS 1.2/1.3 with `pki`'s leaf, HTTP/1.1
/// only.
pub fn https(pki: &TestPki) -> Target {
    https_serving(pki, false, false)
}

/// Like [`https`], but the handshake fails without a client certificate
/// issued by `pki`'s CA.
pub fn https_mtls(pki: &TestPki) -> Target {
    https_serving(pki, false, true)
}

/// The HTTP target's routes over TLS, offering HTTP/2 and HTTP/1.1 by ALPN
/// and serving whichever the client picked.
pub fn https_h2(pki: &TestPki) -> Target {
    https_serving(pki, true, false)
}

/// A TLS server config with `pki`'s leaf, demanding a client certificate
/// of its CA when `client_auth`.
pub fn server_tls(pki: &TestPki, client_auth: bool) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![
        CertificateDer::from_pem_slice(pki.leaf_pem.as_bytes())
            .unwrap_or_else(|e| panic!("pem: {e}")),
    ];
    let key = PrivateKeyDer::from_pem_slice(pki.leaf_key_pem.as_bytes())
        .unwrap_or_else(|e| panic!("key: {e}"));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap_or_else(|e| panic!("tls: {e}"));
    let config = if client_auth {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(
                CertificateDer::from_pem_slice(pki.ca_pem.as_bytes())
                    .unwrap_or_else(|e| panic!("pem: {e}")),
            )
            .unwrap_or_else(|e| panic!("ca: {e}"));
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap_or_else(|e| panic!("client verifier: {e}"));
        config.with_client_cert_verifier(verifier)
    } else {
        config.with_no_client_auth()
    };
    config
        .with_single_cert(certs, key)
        .unwrap_or_else(|e| panic!("tls: {e}"))
}

fn https_serving(pki: &TestPki, h2: bool, client_auth: bool) -> Target {
    let mut config = server_tls(pki, client_auth);
    config.alpn_protocols = if h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (listener, addr) = bind();
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    rt().spawn(async move {
        let router = router();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let service = TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
                else {
                    return;
                };
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                }
            });
        }
    });
    Target { addr, connections }
}

/// The demo treaty partner, as `wasmprobe run --demo` starts it, with
/// `config`.
pub fn partner(config: wasmprobe::demo::partner::PartnerConfig) -> Target {
    let (listener, addr) = bind();
    rt().spawn(wasmprobe::demo::serve(
        listener,
        wasmprobe::demo::partner::router(config),
    ));
    Target {
        addr,
        connections: Arc::new(AtomicUsize::new(0)),
    }
}

/// The demo anchoring ledger accepting `token`.
pub fn ledger(token: &str, failure_share: f64) -> Target {
    let (listener, addr) = bind();
    let config = wasmprobe::demo::ledger::LedgerConfig {
        token: token.to_string(),
        failure_share,
    };
    rt().spawn(wasmprobe::demo::serve(
        listener,
        wasmprobe::demo::ledger::router(config),
    ));
    Target {
        addr,
        connections: Arc::new(AtomicUsize::new(0)),
    }
}

/// Answers every request one byte per second, forever.
pub fn trickle() -> Target {
    let (listener, addr) = bind();
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    rt().spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
                for b in head.iter().chain(std::iter::repeat(&b'x')) {
                    if s.write_all(&[*b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
    });
    Target { addr, connections }
}

/// Answers with a gzip body that decodes to 256 MiB of zeros (a quarter MiB
/// on the wire), whatever the request asks.
pub fn gzip_bomb() -> Target {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    let bomb = BOMB.get_or_init(|| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            let _ = e.write_all(&zeros);
        }
        e.finish().unwrap_or_default()
    });
    let (listener, addr) = bind();
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    rt().spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                    bomb.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(bomb).await;
            });
        }
    });
    Target { addr, connections }
}
