//! The accept loop: hyper over the router, with a cap on open connections,
//! a timeout for reading request headers (a slow client cannot hold a
//! connection forever), optional TLS, and graceful shutdown.
//!
//! With a web config that has TLS, each connection's handshake runs in its
//! own task (a slow handshake never stalls accepting) under the same
//! timeout as the headers, and uses the TLS config current at accept time,
//! so a reload applies to new connections only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::web::WebState;

/// How long a client may take to send its request headers.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ServeError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr`; the returned listener reports the real port.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError { addr, source })
}

/// Serves `router` on `listener` until `stop` turns true, then stops
/// accepting and lets open connections finish. With `web` holding a TLS
/// config, every connection is TLS; basic auth is the router's business
/// (see [`super::router`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
    web: Option<Arc<WebState>>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let (conn_stop_tx, conn_stop) = watch::channel(false);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let tls = web.as_ref().and_then(|w| w.current().tls());
        let router = router.clone();
        let conn_stop = conn_stop.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, router, conn_stop).await,
                Some(config) => {
                    let handshake = TlsAcceptor::from(config).accept(stream);
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, handshake).await {
                        Ok(Ok(tls_stream)) => serve_connection(tls_stream, router, conn_stop).await,
                        // A client's failure (wrong protocol, untrusted or
                        // missing client certificate, timeout) is not the
                        // server's problem: debug only.
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    let _ = conn_stop_tx.send(true);
}

/// Serves HTTP/1.1 on one connection, plain or TLS, until the client is
/// done or shutdown asks it to finish.
async fn serve_connection<IO>(io: IO, router: Router, mut conn_stop: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = conn_stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}
