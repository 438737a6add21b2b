//! A gRPC health server in miniature (`grpc.health.v1.Health/Check`) on
//! 127.0.0.1, over h2c (HTTP/2 without TLS, as most in-cluster gRPC runs)
//! or over TLS with ALPN `h2`. Services it knows: `""` and `api` are
//! SERVING, `down` is NOT_SERVING; any other answers gRPC status 5
//! (NOT_FOUND) in a trailers-only response, as the reference server does.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::targets::{TestPki, bind, rt, server_tls};

pub struct GrpcServer {
    pub addr: SocketAddr,
    calls: Arc<AtomicUsize>,
}

impl GrpcServer {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The `service` field (1) of a HealthCheckRequest, from its framed body.
fn service_of(body: &[u8]) -> String {
    // 1 byte compressed flag, 4 bytes length, then the message.
    let message = body.get(5..).unwrap_or_default();
    match message {
        [0x0a, len, rest @ ..] => {
            String::from_utf8_lossy(rest.get(..usize::from(*len)).unwrap_or_default()).into_owned()
        }
        _ => String::new(),
    }
}

type Reply = http::Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>;

fn reply(service: &str) -> Reply {
    let status = match service {
        "" | "api" => Some(1u8),
        "down" => Some(2),
        _ => None,
    };
    let Some(status) = status else {
        // Trailers-only: the status travels in the headers.
        let body = Full::new(Bytes::new()).boxed();
        let mut r = http::Response::new(body);
        r.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/grpc"),
        );
        r.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("5"));
        r.headers_mut().insert(
            "grpc-message",
            http::HeaderValue::from_static("unknown service"),
        );
        return r;
    };
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let framed = Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]);
    let body = Full::new(framed)
        .with_trailers(async move { Some(Ok(trailers)) })
        .boxed();
    let mut r = http::Response::new(body);
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc"),
    );
    r
}

async fn serve<S>(io: S, calls: Arc<AtomicUsize>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let path_ok = req.uri().path() == "/grpc.health.v1.Health/Check";
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let service = body.map(|b| service_of(&b)).unwrap_or_default();
            Ok::<_, Infallible>(if path_ok {
                reply(&service)
            } else {
                reply("\u{0}unknown")
            })
        }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// Starts the server: over TLS with `pki`'s certificate, else h2c.
pub fn start(pki: Option<&TestPki>) -> GrpcServer {
    let (listener, addr) = bind();
    let calls = Arc::new(AtomicUsize::new(0));
    let acceptor = pki.map(|pki| {
        let mut config = server_tls(pki, false);
        config.alpn_protocols = vec![b"h2".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let count = calls.clone();
    rt().spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // As gRPC servers do: without it, the answer's frames wait on
            // the client's delayed ACK (40 ms).
            let _ = stream.set_nodelay(true);
            let (acceptor, calls) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                match acceptor {
                    Some(a) => {
                        if let Ok(tls) = a.accept(stream).await {
                            serve(tls, calls).await;
                        }
                    }
                    None => serve(stream, calls).await,
                }
            });
        }
    });
    GrpcServer { addr, calls }
}
