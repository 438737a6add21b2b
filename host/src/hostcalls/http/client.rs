//! One HTTP exchange, hop by hop, with phase timings.
//!
//! Each hop: parse the URL, check it against the allow-list, resolve,
//! keep only admitted addresses, connect to one of them (never resolving
//! again), TLS when `https`, send, read the head (processing), read the body
//! under its cap (transfer). A redirect starts the next hop with the same
//! checks. Every step runs under the call's deadline. Connections are never
//! pooled: each probe measures a fresh connection, as blackbox_exporter does.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, HOST, LOCATION, USER_AGENT};
use http::{HeaderName, HeaderValue, Method, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use super::HttpGrant;
use super::body;
use crate::bindings::wasmprobe::plugin::http::{
    ErrorKind, HttpError, HttpVersion, PhaseTimings, Request, Response, TlsInfo,
};
use crate::egress::{self, DestHost, Destination, Refusal, protocol_of};
use crate::hostcalls::{Budget, RefusalReason, Usage};

/// Sent unless the plugin sets its own.
const USER_AGENT_VALUE: &str = concat!("wasmprobe/", env!("CARGO_PKG_VERSION"));
/// Redirect bodies are read only this far before moving on.
const REDIRECT_BODY_CAP: u64 = 64 << 10;

/// What the exchange learned so far, reported with success or failure.
#[derive(Debug)]
struct Trace {
    timings: PhaseTimings,
    remote_addr: Option<SocketAddr>,
    tls: Option<TlsInfo>,
    redirects: u32,
}

impl Trace {
    fn fail(self, kind: ErrorKind, message: impl Into<String>) -> HttpError {
        HttpError {
            kind,
            message: message.into(),
            timings: self.timings,
            remote_addr: self.remote_addr.map(|a| a.to_string()),
            ip_protocol: self.remote_addr.map(|a| protocol_of(a.ip())),
            tls: self.tls,
            redirects: self.redirects,
        }
    }
}

fn zero_timings() -> PhaseTimings {
    PhaseTimings {
        resolve: 0.0,
        connect: 0.0,
        tls: 0.0,
        processing: 0.0,
        transfer: 0.0,
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// A connection's driver task, aborted when the hop is done with it. The
/// task ends with the connection's own error, which is what explains a
/// request that failed as "canceled" (a TLS alert the server sent after the
/// handshake, say).
struct Driver(Option<tokio::task::JoinHandle<Option<hyper::Error>>>);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl Driver {
    fn spawn<F>(conn: F) -> Driver
    where
        F: Future<Output = Result<(), hyper::Error>> + Send + 'static,
    {
        Driver(Some(tokio::spawn(async move { conn.await.err() })))
    }

    /// Why the connection failed, if it did: waits briefly for the task,
    /// which has normally ended by the time a request fails.
    async fn failure(mut self) -> Option<(ErrorKind, String)> {
        let mut task = self.0.take()?;
        let ended = tokio::time::timeout(Duration::from_millis(200), &mut task).await;
        // Still running: dropping the handle would leave it detached.
        task.abort();
        let err = ended.ok()?.ok()??;
        Some(describe_connection_error(&err))
    }
}

/// The connection error with its causes, and whether TLS raised it.
fn describe_connection_error(err: &(dyn std::error::Error + 'static)) -> (ErrorKind, String) {
    let mut message = err.to_string();
    let mut kind = ErrorKind::Protocol;
    let mut cause = err.source();
    while let Some(c) = cause {
        // rustls reports through the I/O error it returns to hyper.
        let tls = c.downcast_ref::<rustls::Error>().is_some()
            || c.downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        if tls {
            kind = ErrorKind::Tls;
        }
        let text = c.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        cause = c.source();
    }
    (kind, message)
}

async fn handshake<S>(io: S, h2: bool) -> Result<(Sender, Driver), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    if h2 {
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        Ok((Sender::H2(sender), Driver::spawn(conn)))
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        Ok((Sender::H1(sender), Driver::spawn(conn)))
    }
}

/// The answer to a plugin calling `http` where it has no grant (from
/// `describe()`, which must not use capabilities).
pub(crate) fn denied_without_grant(url: &str) -> HttpError {
    let trace = Trace {
        timings: zero_timings(),
        remote_addr: None,
        tls: None,
        redirects: 0,
    };
    trace.fail(
        ErrorKind::Denied,
        format!("target {url:?} is not allowed: no network access outside run()"),
    )
}

/// An `invalid-request` error with nothing measured.
pub(crate) fn invalid(message: String) -> HttpError {
    let trace = Trace {
        timings: zero_timings(),
        remote_addr: None,
        tls: None,
        redirects: 0,
    };
    trace.fail(ErrorKind::InvalidRequest, message)
}

/// Runs the request under `deadline` (tightened by the request's own
/// timeout), following redirects when asked; each hop and every byte is
/// taken from the run's budgets in `usage` before it is sent or kept.
pub async fn send(
    grant: &HttpGrant,
    usage: &Usage,
    mut req: Request,
    deadline: Instant,
) -> Result<Response, HttpError> {
    let deadline = match req.timeout_ms {
        Some(ms) => deadline.min(Instant::now() + std::time::Duration::from_millis(ms)),
        None => deadline,
    };
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut trace = Trace {
        timings: zero_timings(),
        remote_addr: None,
        tls: None,
        redirects: 0,
    };
    let cap = req
        .max_body_bytes
        .map_or(grant.max_body, |b| b.min(grant.max_body));
    let mut method = match Method::from_bytes(req.method.as_bytes()) {
        Ok(m) => m,
        Err(_) => {
            return Err(trace.fail(
                ErrorKind::InvalidRequest,
                format!("invalid method {:?}", req.method),
            ));
        }
    };
    let mut body = req.body.clone().map(Bytes::from);
    let mut url = match url::Url::parse(&req.url) {
        Ok(u) => u,
        Err(e) => {
            return Err(trace.fail(
                ErrorKind::InvalidRequest,
                format!("invalid URL {:?}: {e}", req.url),
            ));
        }
    };

    loop {
        let hop = match timeout_at(
            deadline,
            hop(grant, usage, &req, &method, &url, body.clone(), &mut trace),
        )
        .await
        {
            Ok(Ok(h)) => h,
            Ok(Err((kind, message))) => return Err(trace.fail(kind, message)),
            Err(_) => return Err(trace.fail(ErrorKind::Timeout, "deadline passed")),
        };
        let (response, driver) = hop;
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        if req.follow_redirects
            && status.is_redirection()
            && let Some(location) = location
        {
            // Drain a little so the server sees a polite client, then move on.
            let _ = timeout_at(
                deadline,
                body::read_capped(response.into_body(), REDIRECT_BODY_CAP, None, usage),
            )
            .await;
            drop(driver);
            if trace.redirects >= req.max_redirects {
                let n = trace.redirects;
                return Err(trace.fail(
                    ErrorKind::TooManyRedirects,
                    format!("stopped after {n} redirects"),
                ));
            }
            trace.redirects += 1;
            let next = match url.join(&location) {
                Ok(u) => u,
                Err(e) => {
                    return Err(trace.fail(
                        ErrorKind::Protocol,
                        format!("invalid redirect location {location:?}: {e}"),
                    ));
                }
            };
            // Credentials the plugin sent to one origin never follow a
            // redirect to another, as browsers and curl do.
            if next.origin() != url.origin() {
                req.headers.retain(|(name, _)| !is_origin_bound(name));
            }
            url = next;
            if status == StatusCode::SEE_OTHER
                || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                    && method == Method::POST)
            {
                if method != Method::HEAD {
                    method = Method::GET;
                }
                body = None;
            }
            continue;
        }
        let read = Reading {
            usage,
            cap,
            deadline,
        };
        return finish(response, driver, &req, &url, read, trace).await;
    }
}

/// Bytes a hop puts on the wire, near enough: its URL, headers and body.
pub(crate) fn request_size(req: &Request, body_len: usize) -> u64 {
    let headers: usize = req.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    (req.url.len() + headers + body_len) as u64
}

/// Headers that belong to the origin they were sent to: credentials, and
/// a `Host` the plugin chose for it.
fn is_origin_bound(name: &str) -> bool {
    ["authorization", "proxy-authorization", "cookie", "host"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// How the final body is read: under the body cap, the run's transfer
/// budget and the deadline.
struct Reading<'a> {
    usage: &'a Usage,
    cap: u64,
    deadline: tokio::time::Instant,
}

async fn finish(
    response: http::Response<Incoming>,
    driver: Driver,
    req: &Request,
    url: &url::Url,
    reading: Reading<'_>,
    mut trace: Trace,
) -> Result<Response, HttpError> {
    let Reading {
        usage,
        cap,
        deadline,
    } = reading;
    let (parts, incoming) = response.into_parts();
    let content_length = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let started = Instant::now();
    let read = timeout_at(
        deadline,
        body::read_capped(incoming, cap, content_length, usage),
    )
    .await;
    trace.timings.transfer += started.elapsed().as_secs_f64();
    drop(driver);
    let read = match read {
        Ok(Ok(b)) => b,
        Ok(Err(body::ReadError::Spent(spent))) => {
            return Err(trace.fail(ErrorKind::Denied, format!("reading body: {spent}")));
        }
        Ok(Err(e)) => return Err(trace.fail(ErrorKind::Protocol, format!("reading body: {e}"))),
        Err(_) => {
            return Err(trace.fail(ErrorKind::Timeout, "deadline passed while reading the body"));
        }
    };
    let encoding = parts
        .headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let read = if req.decompress {
        match body::decode(encoding, read, cap, usage) {
            Ok(b) => b,
            Err(body::ReadError::Spent(spent)) => {
                return Err(trace.fail(ErrorKind::Denied, format!("decoding body: {spent}")));
            }
            Err(e) => return Err(trace.fail(ErrorKind::Protocol, e.to_string())),
        }
    } else {
        read
    };
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let version = match parts.version {
        Version::HTTP_10 | Version::HTTP_09 => HttpVersion::Http10,
        Version::HTTP_2 => HttpVersion::Http2,
        _ => HttpVersion::Http11,
    };
    let Some(remote) = trace.remote_addr else {
        return Err(trace.fail(ErrorKind::Protocol, "no connection was made"));
    };
    Ok(Response {
        status: parts.status.as_u16(),
        version,
        headers,
        body: read.bytes,
        trailers: read.trailers,
        body_truncated: read.truncated,
        content_length,
        wire_body_length: read.wire_len,
        redirects: trace.redirects,
        final_url: url.to_string(),
        remote_addr: remote.to_string(),
        ip_protocol: protocol_of(remote.ip()),
        timings: trace.timings,
        tls: trace.tls,
    })
}

type HopError = (ErrorKind, String);

/// One request/response head on a fresh connection.
async fn hop(
    grant: &HttpGrant,
    usage: &Usage,
    req: &Request,
    method: &Method,
    url: &url::Url,
    body: Option<Bytes>,
    trace: &mut Trace,
) -> Result<(http::Response<Incoming>, Driver), HopError> {
    let https = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err((
                ErrorKind::InvalidRequest,
                format!("scheme {other:?} is not http or https"),
            ));
        }
    };
    let dest = Destination::from_url(url).map_err(|e| (ErrorKind::InvalidRequest, e))?;
    let port = dest.port.unwrap_or(if https { 443 } else { 80 });
    // Through a proxy the target is never resolved here (the proxy does
    // that), so it is checked as written; the connection goes to the
    // proxy, admitted like any destination.
    let (conn_dest, conn_port) = match &grant.proxy {
        Some(proxy) => {
            if let Err(denied) = grant.allow.check(&dest) {
                usage.refused(RefusalReason::AllowList);
                return Err((ErrorKind::Denied, denied.to_string()));
            }
            if !https && req.http2_prior_knowledge {
                return Err((
                    ErrorKind::InvalidRequest,
                    "HTTP/2 with prior knowledge (h2c) cannot go through an HTTP proxy".into(),
                ));
            }
            let proxy_dest =
                Destination::from_url(proxy).map_err(|e| (ErrorKind::InvalidRequest, e))?;
            let proxy_port = proxy_dest.port.unwrap_or(80);
            (proxy_dest, proxy_port)
        }
        None => (dest.clone(), port),
    };
    let admitted = egress::admit(
        &grant.allow,
        &conn_dest,
        conn_port,
        req.preferred_ip_protocol,
        req.ip_protocol_fallback,
    )
    .await;
    let ip = match admitted {
        Ok(a) => {
            trace.timings.resolve += a.resolve;
            a.ip
        }
        Err(refusal) => {
            trace.timings.resolve += refusal.resolve_seconds();
            return Err(match refusal {
                Refusal::Denied { message, .. } => {
                    usage.refused(RefusalReason::AllowList);
                    (ErrorKind::Denied, message)
                }
                Refusal::Dns { message, .. } => (ErrorKind::Dns, message),
            });
        }
    };
    let addr = SocketAddr::new(ip, conn_port);
    // Admitted: the hop is paid for before its connection opens.
    usage
        .take(Budget::Requests, 1)
        .and_then(|()| {
            usage.take(
                Budget::Transfer,
                request_size(req, body.as_ref().map_or(0, Bytes::len)),
            )
        })
        .map_err(|spent| (ErrorKind::Denied, spent.to_string()))?;
    trace.remote_addr = Some(addr);

    let started = Instant::now();
    let tcp = TcpStream::connect(addr).await;
    trace.timings.connect += started.elapsed().as_secs_f64();
    let mut tcp = tcp.map_err(|e| (ErrorKind::Connect, format!("connect to {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    if grant.proxy.is_some() && https {
        let started = Instant::now();
        let tunnel = tunnel(&mut tcp, &dest, port).await;
        trace.timings.connect += started.elapsed().as_secs_f64();
        tunnel?;
    }

    let (mut request, mut absolute) = build_request(req, method, url, body, &dest)?;
    let host = match &dest.host {
        DestHost::Name(n) => n.clone(),
        DestHost::Ip(ip) => ip.to_string(),
    };
    // `/probe?hostname=`: requests to the target's host present the
    // virtual host's name instead, in `Host` (`:authority` for HTTP/2)
    // and as the TLS server name.
    let host = match grant
        .virtual_host
        .as_ref()
        .filter(|v| v.target_host == host)
    {
        Some(v) => {
            let authority = match url.port() {
                Some(p) => format!("{}:{p}", v.name),
                None => v.name.clone(),
            };
            let value = HeaderValue::from_str(&authority).map_err(|_| {
                (
                    ErrorKind::InvalidRequest,
                    format!("invalid hostname {authority:?}"),
                )
            })?;
            request.headers_mut().insert(HOST, value);
            let mut parts = absolute.into_parts();
            parts.authority = authority.parse().ok();
            absolute = http::Uri::from_parts(parts).map_err(|e| {
                (
                    ErrorKind::InvalidRequest,
                    format!("invalid hostname {authority:?}: {e}"),
                )
            })?;
            v.name.clone()
        }
        None => host,
    };

    if https {
        let alpn = if req.enable_http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        let shaken = grant
            .tls
            .handshake(tcp, grant.tls.name_for(&host), alpn)
            .await;
        let shaken = match shaken {
            Ok(s) => s,
            Err(e) => {
                trace.timings.tls += e.seconds;
                trace.tls = e.info;
                if e.invalid_name {
                    return Err((ErrorKind::InvalidRequest, e.message));
                }
                return Err((
                    ErrorKind::Tls,
                    format!("TLS handshake with {addr}: {}", e.message),
                ));
            }
        };
        trace.timings.tls += shaken.seconds;
        trace.tls = shaken.info;
        let stream = shaken.stream;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        exchange(stream, h2, request, absolute, trace).await
    } else {
        if grant.proxy.is_some() {
            // A proxy is sent the absolute form of the target's URL.
            *request.uri_mut() = absolute.clone();
        }
        exchange(tcp, req.http2_prior_knowledge, request, absolute, trace).await
    }
}

/// Longest proxy answer to CONNECT read before giving up on it.
const CONNECT_HEAD_CAP: usize = 16 << 10;

/// Asks the proxy on `tcp` for a tunnel to the target (`CONNECT`), and
/// reads its answer up to the blank line, no further: what follows is the
/// target's TLS.
async fn tunnel(tcp: &mut TcpStream, dest: &Destination, port: u16) -> Result<(), HopError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = format!("{}:{port}", dest.host);
    let ask = format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {USER_AGENT_VALUE}\r\n\r\n"
    );
    let failed = |e: std::io::Error| {
        (
            ErrorKind::Connect,
            format!("CONNECT {authority} through the proxy: {e}"),
        )
    };
    tcp.write_all(ask.as_bytes()).await.map_err(failed)?;
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    // Byte by byte: the proxy's answer must not be read past its end.
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= CONNECT_HEAD_CAP {
            return Err((
                ErrorKind::Protocol,
                format!(
                    "the proxy's answer to CONNECT {authority} is longer than {CONNECT_HEAD_CAP} bytes"
                ),
            ));
        }
        if tcp.read(&mut byte).await.map_err(failed)? == 0 {
            return Err((
                ErrorKind::Connect,
                format!("the proxy closed the connection before answering CONNECT {authority}"),
            ));
        }
        head.push(byte[0]);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut answer = httparse::Response::new(&mut headers);
    match answer.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            return Err((
                ErrorKind::Protocol,
                format!("the proxy's answer to CONNECT {authority} is not HTTP"),
            ));
        }
    }
    match answer.code {
        Some(code) if (200..300).contains(&code) => Ok(()),
        code => Err((
            ErrorKind::Connect,
            format!(
                "the proxy refused CONNECT {authority}: {} {}",
                code.unwrap_or_default(),
                answer.reason.unwrap_or_default()
            ),
        )),
    }
}

async fn exchange<S>(
    io: S,
    h2: bool,
    mut request: http::Request<Full<Bytes>>,
    absolute: http::Uri,
    trace: &mut Trace,
) -> Result<(http::Response<Incoming>, Driver), HopError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let result = async {
        let (sender, driver) = handshake(io, h2)
            .await
            .map_err(|e| (ErrorKind::Protocol, format!("HTTP handshake: {e}")))?;
        let response = match sender {
            Sender::H1(mut s) => s.send_request(request).await,
            Sender::H2(mut s) => {
                // HTTP/2 carries scheme and authority in the URI.
                *request.version_mut() = Version::HTTP_2;
                *request.uri_mut() = absolute;
                request.headers_mut().remove(HOST);
                s.send_request(request).await
            }
        };
        match response {
            Ok(response) => Ok((response, driver)),
            Err(e) => {
                // A request canceled or cut short says nothing of why; the
                // connection that ended under it does.
                let ended = e.is_canceled() || e.is_closed() || e.is_incomplete_message();
                let failure = if ended { driver.failure().await } else { None };
                let (kind, cause) = failure.unwrap_or_else(|| describe_connection_error(&e));
                Err((kind, format!("HTTP exchange: {cause}")))
            }
        }
    }
    .await;
    trace.timings.processing += started.elapsed().as_secs_f64();
    result
}

fn build_request(
    req: &Request,
    method: &Method,
    url: &url::Url,
    body: Option<Bytes>,
    dest: &Destination,
) -> Result<(http::Request<Full<Bytes>>, http::Uri), HopError> {
    let invalid = |m: String| (ErrorKind::InvalidRequest, m);
    // HTTP/1 is sent in origin-form; HTTP/2 needs the absolute form.
    let absolute: http::Uri = url
        .as_str()
        .parse()
        .map_err(|e| invalid(format!("invalid URL {url}: {e}")))?;
    let origin: http::Uri = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
    .parse()
    .map_err(|e| invalid(format!("invalid path in {url}: {e}")))?;
    let mut builder = http::Request::builder().method(method.clone()).uri(origin);
    let headers = builder
        .headers_mut()
        .ok_or_else(|| invalid("invalid request".into()))?;
    for (name, value) in &req.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| invalid(format!("invalid value for header {name}")))?;
        headers.append(name, value);
    }
    if !headers.contains_key(HOST) {
        // `url` leaves out a port that is the scheme's default.
        let host = match url.port() {
            Some(p) => format!("{}:{p}", dest.host),
            None => dest.host.to_string(),
        };
        let value =
            HeaderValue::from_str(&host).map_err(|_| invalid(format!("invalid host {host:?}")))?;
        headers.insert(HOST, value);
    }
    if !headers.contains_key(USER_AGENT) {
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    }
    if req.decompress && !headers.contains_key(ACCEPT_ENCODING) {
        headers.insert(
            ACCEPT_ENCODING,
            HeaderValue::from_static(body::ACCEPT_ENCODING),
        );
    }
    let request = builder
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| invalid(format!("invalid request: {e}")))?;
    Ok((request, absolute))
}
