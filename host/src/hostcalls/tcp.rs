//! `tcp`: connections made by the host on a plugin's behalf, for checks of
//! any protocol that runs on TCP.
//!
//! `connect` goes through [`crate::egress::admit`] like every networked
//! call (the address as written, then each resolved address) and connects
//! only to the admitted address; TLS, at connect or by `start-tls` later,
//! uses the probe's host-owned trust settings ([`super::tls`]). Each
//! connection is a resource in this run's table, so the host closes
//! whatever the plugin leaves open when the run's store is dropped. Every
//! connect is one of the run's requests and every byte sent or read one of
//! its transfer budget; a run holds at most [`MAX_OPEN`] connections at
//! once, and reads at most the probe's `max_body` per `receive`.
//!
//! Record and replay: each call is taped with the connection's number in
//! the run, so a replay answers the whole conversation without a socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout_at;
use wasmtime::component::{HasSelf, Linker, Resource};

use super::tape::{Tape, TapedCall, cut_bytes, restore};
use super::tls::{TlsClient, TlsClients};
use super::{Budget, CallScope, Capability, LoadScope, RunScope};
use crate::bindings::TcpConnection;
use crate::bindings::wasmprobe::plugin::http::TlsInfo;
use crate::bindings::wasmprobe::plugin::tcp::{
    self as wit, ConnectInfo, ConnectRequest, ConnectTimings, ErrorKind, Host, HostConnection,
    Received, TcpError,
};
use crate::config::ProbeConfig;
use crate::egress::{AllowList, DestHost, Destination, Refusal, protocol_of};

/// Most connections one run holds open at once.
pub const MAX_OPEN: usize = 16;
/// Bytes read from the socket at a time.
const CHUNK: usize = 16 << 10;

/// What one probe may do over TCP, built once per config load.
#[derive(Debug)]
pub struct TcpGrant {
    pub allow: AllowList,
    pub tls: Arc<TlsClient>,
    /// Most bytes one `receive` returns (the probe's `max_body`).
    pub max_receive: u64,
}

/// The `tcp` unit.
#[derive(Debug)]
pub struct Tcp;

/// One run's `tcp`: its grant and its open connections, by number. The
/// plugin's `connection` handle is that number; dropping the run's store
/// drops the map, and with it every socket.
pub struct TcpContext {
    grant: Option<Arc<TcpGrant>>,
    run: CallScope,
    connections: std::collections::HashMap<u32, Connection>,
    /// Connections opened so far (the next one's number, as taped).
    opened: u32,
}

impl std::fmt::Debug for TcpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpContext")
            .field("opened", &self.opened)
            .field("open", &self.connections.len())
            .finish_non_exhaustive()
    }
}

impl TcpContext {
    /// The connection behind a handle the plugin holds. The component
    /// model lets a plugin hold only handles this unit made, so a missing
    /// one is a host bug: it traps.
    fn connection(
        &mut self,
        handle: &Resource<TcpConnection>,
    ) -> wasmtime::Result<&mut Connection> {
        self.connections
            .get_mut(&handle.rep())
            .ok_or_else(|| wasmtime::Error::msg("tcp: unknown connection handle"))
    }
}

/// A plaintext or TLS stream.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(data).await,
            Stream::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
        }
    }
}

/// One connection of a run, behind the plugin's `connection` handle.
pub struct Connection {
    /// Its number in the run, as taped.
    id: u32,
    /// The host as the plugin wrote it, the default TLS server name.
    host: String,
    /// `None` once closed, and in a replay (the tape answers).
    stream: Option<Stream>,
    /// Bytes read past what a `receive` returned, for the next one.
    buffer: Vec<u8>,
    eof: bool,
    closed: bool,
}

fn zero_timings() -> ConnectTimings {
    ConnectTimings {
        resolve: 0.0,
        connect: 0.0,
        tls: 0.0,
    }
}

fn fail(kind: ErrorKind, message: impl Into<String>) -> TcpError {
    TcpError {
        kind,
        message: message.into(),
        timings: zero_timings(),
        remote_addr: None,
        tls: None,
    }
}

impl Capability for Tcp {
    const NAME: &'static str = "tcp";
    type Grant = TcpGrant;
    type Context = TcpContext;

    fn grant(probe: &ProbeConfig, load: &mut LoadScope<'_>) -> Result<TcpGrant, String> {
        Ok(TcpGrant {
            allow: probe.allow.clone(),
            tls: load.cache::<TlsClients>().client_for(&probe.tls)?,
            max_receive: probe.limits.max_body,
        })
    }

    fn context(grant: Option<&Arc<TcpGrant>>, run: &RunScope) -> TcpContext {
        TcpContext {
            grant: grant.cloned(),
            run: run.calls(),
            connections: std::collections::HashMap::new(),
            opened: 0,
        }
    }

    fn link<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut TcpContext,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<TcpContext>>(linker, get)
    }
}

/// `tcp.connect` on tape.
#[derive(Serialize)]
struct ConnectCall {
    connection: u32,
    request: ConnectRequest,
}

impl TapedCall for ConnectCall {
    const NAME: &'static str = "tcp-connect";
    type Answer = Result<ConnectInfo, TcpError>;

    fn refused(&self, why: String) -> Self::Answer {
        Err(fail(ErrorKind::InvalidRequest, why))
    }
}

/// `connection.send` on tape.
#[derive(Serialize)]
struct SendCall {
    connection: u32,
    data: Vec<u8>,
}

impl TapedCall for SendCall {
    const NAME: &'static str = "tcp-send";
    type Answer = Result<(), TcpError>;

    fn refused(&self, why: String) -> Self::Answer {
        Err(fail(ErrorKind::InvalidRequest, why))
    }

    fn with_cut<R>(&mut self, max: usize, f: impl FnOnce(&Self) -> R) -> R {
        let whole = cut_bytes(&mut self.data, max);
        let out = f(self);
        restore(&mut self.data, whole);
        out
    }
}

/// `connection.receive` on tape.
#[derive(Serialize)]
struct ReceiveCall {
    connection: u32,
    max_bytes: u32,
    delimiter: Option<Vec<u8>>,
    timeout_ms: Option<u64>,
}

impl TapedCall for ReceiveCall {
    const NAME: &'static str = "tcp-receive";
    type Answer = Result<Received, TcpError>;

    fn refused(&self, why: String) -> Self::Answer {
        Err(fail(ErrorKind::InvalidRequest, why))
    }

    fn with_answer_cut<R>(
        answer: &mut Self::Answer,
        max: usize,
        f: impl FnOnce(&Self::Answer) -> R,
    ) -> R {
        let whole = answer
            .as_mut()
            .ok()
            .and_then(|r| cut_bytes(&mut r.data, max));
        let out = f(answer);
        if let Ok(r) = answer.as_mut() {
            restore(&mut r.data, whole);
        }
        out
    }
}

/// `connection.start-tls` on tape.
#[derive(Serialize)]
struct StartTlsCall {
    connection: u32,
    server_name: Option<String>,
    alpn: Vec<String>,
}

impl TapedCall for StartTlsCall {
    const NAME: &'static str = "tcp-start-tls";
    type Answer = Result<TlsInfo, TcpError>;

    fn refused(&self, why: String) -> Self::Answer {
        Err(fail(ErrorKind::InvalidRequest, why))
    }
}

/// The deadline of a call: the run's, tightened by the call's own timeout.
fn deadline(run: &CallScope, timeout_ms: Option<u64>) -> tokio::time::Instant {
    let run = run.deadline();
    let at = match timeout_ms {
        Some(ms) => run.min(Instant::now() + Duration::from_millis(ms)),
        None => run,
    };
    tokio::time::Instant::from_std(at)
}

/// `HOST:PORT` (`[V6]:PORT`) as a destination, or why it is not one.
fn destination(address: &str) -> Result<(Destination, String), String> {
    let url = url::Url::parse(&format!("tcp://{}", address.trim()))
        .map_err(|e| format!("address {address:?} is not HOST:PORT: {e}"))?;
    if url.port().is_none() || url.path() != "" || url.username() != "" {
        return Err(format!("address {address:?} is not HOST:PORT"));
    }
    let dest = Destination::from_url(&url)?;
    let host = match &dest.host {
        DestHost::Name(n) => n.clone(),
        DestHost::Ip(ip) => ip.to_string(),
    };
    Ok((dest, host))
}

impl TcpGrant {
    /// Admits, connects and (when asked) shakes hands: the live half of
    /// `connect`.
    async fn connect(
        &self,
        run: &CallScope,
        req: &ConnectRequest,
    ) -> (Result<ConnectInfo, TcpError>, Option<(Stream, String)>) {
        let mut timings = zero_timings();
        let (dest, host) = match destination(&req.address) {
            Ok(d) => d,
            Err(e) => return (Err(fail(ErrorKind::InvalidRequest, e)), None),
        };
        let port = dest.port.unwrap_or_default();
        let at = deadline(run, req.timeout_ms);
        let preference = (req.preferred_ip_protocol, req.ip_protocol_fallback);
        let ip = match run.admit(&self.allow, &dest, port, preference, at).await {
            Ok(a) => {
                timings.resolve = a.resolve;
                a.ip
            }
            Err(refusal) => {
                timings.resolve = refusal.resolve_seconds();
                let kind = match refusal {
                    Refusal::Denied { .. } => ErrorKind::Denied,
                    Refusal::Dns { .. } => ErrorKind::Dns,
                };
                let mut e = fail(kind, refusal.message());
                e.timings = timings;
                return (Err(e), None);
            }
        };
        if let Err(spent) = run.usage.take(Budget::Requests, 1) {
            return (Err(fail(ErrorKind::Denied, spent.to_string())), None);
        }
        let addr = SocketAddr::new(ip, port);
        let failed = |kind, message: String, timings, tls| TcpError {
            kind,
            message,
            timings,
            remote_addr: Some(addr.to_string()),
            tls,
        };
        let started = Instant::now();
        let tcp = timeout_at(at, TcpStream::connect(addr)).await;
        timings.connect = started.elapsed().as_secs_f64();
        let tcp = match tcp {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                let e = failed(
                    ErrorKind::Connect,
                    format!("connect to {addr}: {e}"),
                    timings,
                    None,
                );
                return (Err(e), None);
            }
            Err(_) => {
                let e = failed(
                    ErrorKind::Timeout,
                    format!("connect to {addr}: deadline passed"),
                    timings,
                    None,
                );
                return (Err(e), None);
            }
        };
        let _ = tcp.set_nodelay(true);
        let mut info = ConnectInfo {
            remote_addr: addr.to_string(),
            ip_protocol: protocol_of(ip),
            timings,
            tls: None,
        };
        if !req.tls {
            return (Ok(info), Some((Stream::Plain(tcp), host)));
        }
        let name = self
            .tls
            .name_for(req.server_name.as_deref().unwrap_or(&host));
        let alpn = req.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        match timeout_at(at, self.tls.handshake(tcp, name, alpn)).await {
            Ok(Ok(shaken)) => {
                info.timings.tls = shaken.seconds;
                info.tls = shaken.info;
                (Ok(info), Some((Stream::Tls(Box::new(shaken.stream)), host)))
            }
            Ok(Err(e)) => {
                info.timings.tls = e.seconds;
                let kind = if e.invalid_name {
                    ErrorKind::InvalidRequest
                } else {
                    ErrorKind::Tls
                };
                let message = format!("TLS handshake with {addr}: {}", e.message);
                (Err(failed(kind, message, info.timings, e.info)), None)
            }
            Err(_) => {
                let message = format!("TLS handshake with {addr}: deadline passed");
                (
                    Err(failed(ErrorKind::Timeout, message, info.timings, None)),
                    None,
                )
            }
        }
    }
}

impl Host for TcpContext {
    async fn connect(
        &mut self,
        req: ConnectRequest,
    ) -> wasmtime::Result<Result<(Resource<TcpConnection>, ConnectInfo), TcpError>> {
        self.run.usage.call(Tcp::NAME);
        if self.connections.len() >= MAX_OPEN {
            return Ok(Err(fail(
                ErrorKind::InvalidRequest,
                format!("a run holds at most {MAX_OPEN} connections open; close one first"),
            )));
        }
        let id = self.opened;
        let (grant, run) = (self.grant.clone(), self.run.clone());
        let mut live = None;
        let call = ConnectCall {
            connection: id,
            request: req,
        };
        let answer = Tape::around(self.run.tape.as_deref(), &self.run.revealed, call, |c| {
            let live = &mut live;
            async move {
                let Some(grant) = grant else {
                    return Err(fail(
                        ErrorKind::Denied,
                        format!(
                            "address {:?} is not allowed: no network access outside run()",
                            c.request.address
                        ),
                    ));
                };
                let (answer, stream) = grant.connect(&run, &c.request).await;
                *live = stream;
                answer
            }
        })
        .await;
        let info = match answer {
            Ok(info) => info,
            Err(e) => return Ok(Err(e)),
        };
        let (stream, host) = match live {
            Some((stream, host)) => (Some(stream), host),
            // Replayed: the tape answers this connection's calls.
            None => (None, String::new()),
        };
        self.connections.insert(
            id,
            Connection {
                id,
                host,
                stream,
                buffer: Vec::new(),
                eof: false,
                closed: false,
            },
        );
        self.opened += 1;
        Ok(Ok((Resource::new_own(id), info)))
    }
}

impl HostConnection for TcpContext {
    async fn send(
        &mut self,
        conn: Resource<TcpConnection>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), TcpError>> {
        self.run.usage.call(Tcp::NAME);
        let (run, scope) = (self.run.clone(), self.run.clone());
        let c = self.connection(&conn)?;
        let call = SendCall {
            connection: c.id,
            data,
        };
        Ok(Tape::around(
            run.tape.as_deref(),
            &run.revealed,
            call,
            |call| async move {
                let run = scope;
                let Some(stream) = live_stream(c)? else {
                    return Err(fail(
                        ErrorKind::InvalidRequest,
                        "no such connection on tape",
                    ));
                };
                let n = call.data.len() as u64;
                run.usage
                    .take(Budget::Transfer, n)
                    .map_err(|spent| fail(ErrorKind::Denied, spent.to_string()))?;
                match timeout_at(deadline(&run, None), stream.write_all(&call.data)).await {
                    Ok(Ok(())) => {
                        run.usage.bytes(n, 0);
                        Ok(())
                    }
                    Ok(Err(e)) => Err(io_error(e)),
                    Err(_) => Err(fail(ErrorKind::Timeout, "deadline passed while sending")),
                }
            },
        )
        .await)
    }

    async fn receive(
        &mut self,
        conn: Resource<TcpConnection>,
        max_bytes: u32,
        delimiter: Option<Vec<u8>>,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Result<Received, TcpError>> {
        self.run.usage.call(Tcp::NAME);
        let (run, scope) = (self.run.clone(), self.run.clone());
        let cap = self.grant.as_ref().map_or(0, |g| g.max_receive);
        let c = self.connection(&conn)?;
        let call = ReceiveCall {
            connection: c.id,
            max_bytes,
            delimiter,
            timeout_ms,
        };
        Ok(Tape::around(
            run.tape.as_deref(),
            &run.revealed,
            call,
            |call| async move {
                let run = scope;
                let limit = u64::from(call.max_bytes).min(cap) as usize;
                let at = deadline(&run, call.timeout_ms);
                receive(c, &run, limit, call.delimiter.as_deref(), at).await
            },
        )
        .await)
    }

    async fn start_tls(
        &mut self,
        conn: Resource<TcpConnection>,
        server_name: Option<String>,
        alpn: Vec<String>,
    ) -> wasmtime::Result<Result<TlsInfo, TcpError>> {
        self.run.usage.call(Tcp::NAME);
        let (run, scope) = (self.run.clone(), self.run.clone());
        let grant = self.grant.clone();
        let c = self.connection(&conn)?;
        let call = StartTlsCall {
            connection: c.id,
            server_name,
            alpn,
        };
        Ok(Tape::around(
            run.tape.as_deref(),
            &run.revealed,
            call,
            |call| async move {
                let run = scope;
                let Some(grant) = grant else {
                    return Err(fail(ErrorKind::Denied, "no network access outside run()"));
                };
                start_tls(c, &grant.tls, &run, call).await
            },
        )
        .await)
    }

    fn close(&mut self, conn: Resource<TcpConnection>) -> wasmtime::Result<()> {
        self.run.usage.call(Tcp::NAME);
        let c = self.connection(&conn)?;
        c.stream = None;
        c.closed = true;
        c.buffer = Vec::new();
        Ok(())
    }

    fn drop(&mut self, conn: Resource<TcpConnection>) -> wasmtime::Result<()> {
        self.connections.remove(&conn.rep());
        Ok(())
    }
}

/// The connection's live stream; `Ok(None)` in a replay; `closed` once
/// closed.
fn live_stream(c: &mut Connection) -> Result<Option<&mut Stream>, TcpError> {
    if c.closed {
        return Err(fail(ErrorKind::Closed, "the connection is closed"));
    }
    Ok(c.stream.as_mut())
}

fn io_error(e: std::io::Error) -> TcpError {
    let kind = match e.kind() {
        std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::UnexpectedEof => ErrorKind::Closed,
        _ => ErrorKind::Io,
    };
    fail(kind, e.to_string())
}

/// Reads until the delimiter, `limit` bytes, the end of the stream or the
/// deadline; keeps what was read past the delimiter for the next call.
async fn receive(
    c: &mut Connection,
    run: &CallScope,
    limit: usize,
    delimiter: Option<&[u8]>,
    at: tokio::time::Instant,
) -> Result<Received, TcpError> {
    if c.closed {
        return Err(fail(ErrorKind::Closed, "the connection is closed"));
    }
    if c.stream.is_none() {
        return Err(fail(
            ErrorKind::InvalidRequest,
            "no such connection on tape",
        ));
    }
    let take = |c: &mut Connection, n: usize, delimited: bool| {
        let rest = c.buffer.split_off(n.min(c.buffer.len()));
        Received {
            data: std::mem::replace(&mut c.buffer, rest),
            delimited,
            eof: c.eof && c.buffer.is_empty(),
        }
    };
    loop {
        let searched = &c.buffer[..c.buffer.len().min(limit)];
        if let Some(d) = delimiter.filter(|d| !d.is_empty())
            && let Some(at) = searched.windows(d.len()).position(|w| w == d)
        {
            return Ok(take(c, at + d.len(), true));
        }
        if c.buffer.len() >= limit || c.eof {
            return Ok(take(c, limit, false));
        }
        let Some(stream) = c.stream.as_mut() else {
            return Err(fail(ErrorKind::Closed, "the connection is closed"));
        };
        let mut chunk = vec![0u8; CHUNK.min(limit - c.buffer.len()).max(1)];
        match timeout_at(at, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => c.eof = true,
            Ok(Ok(n)) => {
                run.usage
                    .take(Budget::Transfer, n as u64)
                    .map_err(|spent| fail(ErrorKind::Denied, spent.to_string()))?;
                run.usage.bytes(0, n as u64);
                c.buffer.extend_from_slice(&chunk[..n]);
            }
            Ok(Err(e)) => return Err(io_error(e)),
            Err(_) if c.buffer.is_empty() => {
                return Err(fail(
                    ErrorKind::Timeout,
                    "nothing received before the deadline",
                ));
            }
            Err(_) => return Ok(take(c, limit, false)),
        }
    }
}

/// Upgrades a plaintext connection. Refused while plaintext read past the
/// last reply is waiting: it would be taken as if it came over TLS (the
/// STARTTLS command-injection class of bugs).
async fn start_tls(
    c: &mut Connection,
    tls: &TlsClient,
    run: &CallScope,
    call: StartTlsCall,
) -> Result<TlsInfo, TcpError> {
    if c.closed {
        return Err(fail(ErrorKind::Closed, "the connection is closed"));
    }
    if !c.buffer.is_empty() {
        return Err(fail(
            ErrorKind::InvalidRequest,
            format!(
                "{} bytes of plaintext arrived past the last reply; refusing to start TLS on them",
                c.buffer.len()
            ),
        ));
    }
    let tcp = match c.stream.take() {
        Some(Stream::Plain(tcp)) => tcp,
        Some(tls) => {
            c.stream = Some(tls);
            return Err(fail(
                ErrorKind::InvalidRequest,
                "the connection already speaks TLS",
            ));
        }
        None => {
            return Err(fail(
                ErrorKind::InvalidRequest,
                "no such connection on tape",
            ));
        }
    };
    let name = tls.name_for(call.server_name.as_deref().unwrap_or(&c.host));
    let alpn = call.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    match timeout_at(deadline(run, None), tls.handshake(tcp, name, alpn)).await {
        Ok(Ok(shaken)) => {
            c.stream = Some(Stream::Tls(Box::new(shaken.stream)));
            shaken
                .info
                .ok_or_else(|| fail(ErrorKind::Tls, "the server presented no certificate"))
        }
        Ok(Err(e)) => {
            c.closed = true;
            let mut err = fail(
                if e.invalid_name {
                    ErrorKind::InvalidRequest
                } else {
                    ErrorKind::Tls
                },
                format!("TLS handshake: {}", e.message),
            );
            err.tls = e.info;
            err.timings.tls = e.seconds;
            Err(err)
        }
        Err(_) => {
            c.closed = true;
            Err(fail(
                ErrorKind::Timeout,
                "deadline passed during the TLS handshake",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::net::TcpListener;

    use super::*;
    use crate::egress::AllowRule;

    fn grant(rule: &str) -> Arc<TcpGrant> {
        Arc::new(TcpGrant {
            allow: AllowList::new(vec![
                AllowRule::try_from(rule.to_string()).unwrap_or_else(|e| panic!("{e}")),
            ]),
            tls: Arc::new(
                TlsClient::new(&crate::config::TlsSettings::default())
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            max_receive: 1 << 20,
        })
    }

    fn context(grant: Option<Arc<TcpGrant>>) -> TcpContext {
        TcpContext {
            grant,
            run: CallScope {
                deadline: Some(Instant::now() + Duration::from_secs(5)),
                ..CallScope::default()
            },
            connections: std::collections::HashMap::new(),
            opened: 0,
        }
    }

    fn request(address: &str) -> ConnectRequest {
        ConnectRequest {
            address: address.into(),
            timeout_ms: Some(2000),
            preferred_ip_protocol: None,
            ip_protocol_fallback: true,
            tls: false,
            server_name: None,
            alpn: Vec::new(),
        }
    }

    /// A server that writes `greeting`, then echoes each chunk it reads.
    async fn server(greeting: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let _ = conn.write_all(greeting).await;
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    async fn connect(ctx: &mut TcpContext, address: &str) -> Resource<TcpConnection> {
        match ctx.connect(request(address)).await {
            Ok(Ok((c, info))) => {
                assert_eq!(info.remote_addr, address);
                c
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_address_outside_the_allow_list_is_denied_before_connecting() {
        let (addr, accepted) = server(b"").await;
        let mut ctx = context(Some(grant(&format!(
            "tcp://127.0.0.1:{}",
            addr.port().wrapping_add(1)
        ))));
        let result = ctx.connect(request(&addr.to_string())).await;
        let err = result.ok().and_then(Result::err);
        assert_eq!(err.map(|e| e.kind), Some(ErrorKind::Denied));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
        let mut none = context(None);
        let result = none.connect(request(&addr.to_string())).await;
        assert_eq!(
            result.ok().and_then(Result::err).map(|e| e.kind),
            Some(ErrorKind::Denied)
        );
    }

    #[tokio::test]
    async fn lines_are_received_up_to_the_delimiter_and_the_rest_is_kept() {
        let (addr, _) = server(b"220 ready\r\n250 first\r\n250 second").await;
        let mut ctx = context(Some(grant(&format!("tcp://{addr}"))));
        let c = connect(&mut ctx, &addr.to_string()).await;
        let line = |r: wasmtime::Result<Result<Received, TcpError>>| match r {
            Ok(Ok(r)) => (String::from_utf8_lossy(&r.data).into_owned(), r.delimited),
            other => panic!("{other:?}"),
        };
        let rep = Resource::<TcpConnection>::new_borrow(c.rep());
        let first = ctx.receive(rep, 1024, Some(b"\r\n".to_vec()), None).await;
        assert_eq!(line(first), ("220 ready\r\n".into(), true));
        let rep = Resource::<TcpConnection>::new_borrow(c.rep());
        let second = ctx.receive(rep, 1024, Some(b"\r\n".to_vec()), None).await;
        assert_eq!(line(second), ("250 first\r\n".into(), true));
        let rep = Resource::<TcpConnection>::new_borrow(c.rep());
        let capped = ctx.receive(rep, 4, Some(b"\r\n".to_vec()), None).await;
        assert_eq!(line(capped), ("250 ".into(), false));
        let rep = Resource::<TcpConnection>::new_borrow(c.rep());
        let sent = ctx.send(rep, b"PING\n".to_vec()).await;
        assert!(matches!(sent, Ok(Ok(()))), "{sent:?}");
        let rep = Resource::<TcpConnection>::new_borrow(c.rep());
        let echoed = ctx
            .receive(rep, 1024, Some(b"PING\n".to_vec()), Some(2000))
            .await;
        assert_eq!(line(echoed), ("second".to_string() + "PING\n", true));
        let rep = Resource::<TcpConnection>::new_borrow(c.rep());
        // Plaintext is waiting? No: all was read. A start-tls now would
        // try a handshake with an echo server and fail as TLS.
        let _ = ctx.close(rep);
        let rep = Resource::<TcpConnection>::new_borrow(c.rep());
        let after = ctx.send(rep, b"x".to_vec()).await;
        assert_eq!(
            after.ok().and_then(Result::err).map(|e| e.kind),
            Some(ErrorKind::Closed)
        );
        let counts = ctx.run.usage.counts(0, Duration::ZERO);
        assert_eq!(counts.bytes_sent, 5);
        assert!(counts.bytes_received >= 37, "{counts:?}");
    }

    #[tokio::test]
    async fn start_tls_is_refused_while_plaintext_is_waiting() {
        let (addr, _) = server(b"220 ready\r\n250 injected\r\n").await;
        let mut ctx = context(Some(grant(&format!("tcp://{addr}"))));
        let c = connect(&mut ctx, &addr.to_string()).await;
        // Both lines wait in the socket, so one read takes them together.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let rep = Resource::<TcpConnection>::new_borrow(c.rep());
        let _ = ctx.receive(rep, 1024, Some(b"\r\n".to_vec()), None).await;
        // The second line arrived with the first and is still buffered.
        let rep = Resource::<TcpConnection>::new_borrow(c.rep());
        let tls = ctx.start_tls(rep, None, Vec::new()).await;
        let err = tls.ok().and_then(Result::err);
        assert_eq!(
            err.as_ref().map(|e| e.kind),
            Some(ErrorKind::InvalidRequest)
        );
        assert!(err.is_some_and(|e| e.message.contains("plaintext arrived past the last reply")),);
    }

    #[tokio::test]
    async fn connects_past_the_request_budget_and_open_connections_are_refused() {
        let (addr, accepted) = server(b"").await;
        let mut ctx = context(Some(grant(&format!("tcp://{addr}"))));
        ctx.run.usage = Arc::new(super::super::Usage::new(&crate::config::Limits {
            max_requests: 2,
            ..crate::config::Limits::default()
        }));
        let _a = connect(&mut ctx, &addr.to_string()).await;
        let _b = connect(&mut ctx, &addr.to_string()).await;
        let third = ctx.connect(request(&addr.to_string())).await;
        let err = third.ok().and_then(Result::err);
        assert!(err.is_some_and(
            |e| e.kind == ErrorKind::Denied && e.message.contains("limits.max_requests = 2")
        ),);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);

        let mut many = context(Some(grant(&format!("tcp://{addr}"))));
        let mut held = Vec::new();
        for _ in 0..MAX_OPEN {
            held.push(connect(&mut many, &addr.to_string()).await);
        }
        let over = many.connect(request(&addr.to_string())).await;
        assert_eq!(
            over.ok().and_then(Result::err).map(|e| e.kind),
            Some(ErrorKind::InvalidRequest)
        );
        if let Some(c) = held.pop() {
            let _ = HostConnection::drop(&mut many, c);
        }
        let _again = connect(&mut many, &addr.to_string()).await;
    }

    #[tokio::test]
    async fn a_recorded_conversation_replays_without_a_socket() {
        let (addr, accepted) = server(b"220 ready\r\n").await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("tape.json");
        let recorder = Arc::new(Tape::recorder());
        let conversation = |mut ctx: TcpContext| async move {
            let c = connect(&mut ctx, &addr.to_string()).await;
            let rep = || Resource::<TcpConnection>::new_borrow(c.rep());
            let banner = ctx.receive(rep(), 1024, Some(b"\r\n".to_vec()), None).await;
            let sent = ctx.send(rep(), b"NOOP\r\n".to_vec()).await;
            let echo = ctx.receive(rep(), 1024, Some(b"\r\n".to_vec()), None).await;
            let data = |r: wasmtime::Result<Result<Received, TcpError>>| match r {
                Ok(Ok(r)) => r.data,
                other => panic!("{other:?}"),
            };
            assert!(matches!(sent, Ok(Ok(()))));
            (data(banner), data(echo))
        };
        let mut live = context(Some(grant(&format!("tcp://{addr}"))));
        live.run.tape = Some(recorder.clone());
        let recorded = conversation(live).await;
        assert_eq!(recorded, (b"220 ready\r\n".to_vec(), b"NOOP\r\n".to_vec()));
        recorder
            .save(&path, "p", "t")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        let (player, _) = Tape::player(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut replay = context(None);
        replay.run.tape = Some(Arc::new(player));
        assert_eq!(conversation(replay).await, recorded);
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "the replay opened no socket"
        );
    }
}
