//! `http`: one HTTP(S) exchange on a plugin's behalf (hyper + rustls).
//!
//! The allow-list is checked in [`client`] before any packet leaves: on the
//! URL, on each resolved address (the connection goes only to an admitted
//! address, never re-resolved), and on every redirect hop. A denial is
//! `error-kind::denied`, returned to the plugin like any other failure; it
//! never traps. The call's deadline is the run's, tightened by the
//! request's own timeout. Bodies are kept up to the smaller of the plugin's
//! and the probe's cap, after decoding.

mod body;
pub mod client;

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use wasmtime::component::{HasSelf, Linker};

use super::tape::{Tape, TapedCall, cut_bytes, restore};
use super::tls::{self, TlsClients};
use super::{CallScope, Capability, LoadScope, RunScope, Usage};
use crate::bindings::wasmprobe::plugin::http::{self as wit, Host, HttpError, Request, Response};
use crate::config::ProbeConfig;
use crate::egress::AllowList;

/// What one probe may do over HTTP, built once per config load.
#[derive(Debug, Clone)]
pub struct HttpGrant {
    pub allow: AllowList,
    /// `proxy_url`: every exchange goes through this `http://` proxy
    /// (CONNECT for `https`), which `allow` admits.
    pub proxy: Option<Box<url::Url>>,
    pub tls: Arc<tls::TlsClient>,
    /// Body bytes kept per response.
    pub max_body: u64,
    /// Set per run, for an on-demand run given a `hostname` (boxed: every
    /// probe holds a grant, and few runs have one).
    pub virtual_host: Option<Box<super::VirtualHost>>,
}

/// Most requests in one `send-batch`.
pub const MAX_BATCH: usize = 1000;
/// Most exchanges of one `send-batch` in flight at once.
pub const MAX_CONCURRENCY: u32 = 64;

/// The `http` unit.
#[derive(Debug)]
pub struct Http;

/// One run's `http`.
#[derive(Debug)]
pub struct HttpContext {
    grant: Option<Arc<HttpGrant>>,
    run: CallScope,
}

impl Capability for Http {
    const NAME: &'static str = "http";
    type Grant = HttpGrant;
    type Context = HttpContext;

    fn grant(probe: &ProbeConfig, load: &mut LoadScope<'_>) -> Result<HttpGrant, String> {
        Ok(HttpGrant {
            allow: probe.allow.clone(),
            proxy: probe.proxy.clone(),
            tls: load.cache::<TlsClients>().client_for(&probe.tls)?,
            max_body: probe.limits.max_body,
            virtual_host: None,
        })
    }

    fn context(grant: Option<&Arc<HttpGrant>>, run: &RunScope) -> HttpContext {
        let grant = match (grant, &run.virtual_host) {
            (Some(g), Some(v)) => Some(Arc::new(HttpGrant {
                virtual_host: Some(Box::new(v.clone())),
                ..HttpGrant::clone(g)
            })),
            (g, _) => g.cloned(),
        };
        HttpContext {
            grant,
            run: run.calls(),
        }
    }

    fn link<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut HttpContext,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<HttpContext>>(linker, get)
    }
}

/// `http.send` on tape.
#[derive(Serialize)]
struct SendCall {
    request: Request,
}

impl TapedCall for SendCall {
    const NAME: &'static str = "http-send";
    type Answer = Result<Response, HttpError>;

    fn refused(&self, why: String) -> Self::Answer {
        Err(client::invalid(why))
    }

    fn with_cut<R>(&mut self, max: usize, f: impl FnOnce(&Self) -> R) -> R {
        let whole = self.request.body.as_mut().and_then(|b| cut_bytes(b, max));
        let out = f(self);
        if let Some(body) = self.request.body.as_mut() {
            restore(body, whole);
        }
        out
    }

    fn with_answer_cut<R>(
        answer: &mut Self::Answer,
        max: usize,
        f: impl FnOnce(&Self::Answer) -> R,
    ) -> R {
        let whole = answer
            .as_mut()
            .ok()
            .and_then(|r| cut_bytes(&mut r.body, max));
        let out = f(answer);
        if let Ok(r) = answer.as_mut() {
            restore(&mut r.body, whole);
        }
        out
    }
}

/// `http.send-batch` on tape.
#[derive(Serialize)]
struct SendBatchCall {
    requests: Vec<Request>,
    concurrency: u32,
}

impl TapedCall for SendBatchCall {
    const NAME: &'static str = "http-send-batch";
    const ANSWER: &'static str = "results";
    type Answer = Vec<Result<Response, HttpError>>;

    fn refused(&self, why: String) -> Self::Answer {
        self.requests
            .iter()
            .map(|_| Err(client::invalid(why.clone())))
            .collect()
    }

    fn with_cut<R>(&mut self, max: usize, f: impl FnOnce(&Self) -> R) -> R {
        let wholes: Vec<Option<Vec<u8>>> = self
            .requests
            .iter_mut()
            .map(|r| r.body.as_mut().and_then(|b| cut_bytes(b, max)))
            .collect();
        let out = f(self);
        for (r, whole) in self.requests.iter_mut().zip(wholes) {
            if let Some(body) = r.body.as_mut() {
                restore(body, whole);
            }
        }
        out
    }

    fn with_answer_cut<R>(
        answer: &mut Self::Answer,
        max: usize,
        f: impl FnOnce(&Self::Answer) -> R,
    ) -> R {
        let wholes: Vec<Option<Vec<u8>>> = answer
            .iter_mut()
            .map(|a| a.as_mut().ok().and_then(|r| cut_bytes(&mut r.body, max)))
            .collect();
        let out = f(answer);
        for (a, whole) in answer.iter_mut().zip(wholes) {
            if let Ok(r) = a.as_mut() {
                restore(&mut r.body, whole);
            }
        }
        out
    }
}

impl Host for HttpContext {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        self.run.usage.call(Http::NAME);
        let (grant, deadline, usage) = (
            self.grant.clone(),
            self.run.deadline(),
            self.run.usage.clone(),
        );
        let call = SendCall { request: req };
        Ok(Tape::around(
            self.run.tape.as_deref(),
            &self.run.revealed,
            call,
            |c| async move {
                match grant {
                    Some(grant) => {
                        let sent = request_bytes(&c.request);
                        let result = client::send(&grant, &usage, c.request, deadline).await;
                        usage.bytes(sent, response_bytes(&result));
                        result
                    }
                    None => Err(client::denied_without_grant(&c.request.url)),
                }
            },
        )
        .await)
    }

    async fn send_batch(
        &mut self,
        reqs: Vec<Request>,
        concurrency: u32,
    ) -> wasmtime::Result<Vec<Result<Response, HttpError>>> {
        self.run.usage.call(Http::NAME);
        let (grant, deadline, usage) = (
            self.grant.clone(),
            self.run.deadline(),
            self.run.usage.clone(),
        );
        let call = SendBatchCall {
            requests: reqs,
            concurrency,
        };
        Ok(Tape::around(
            self.run.tape.as_deref(),
            &self.run.revealed,
            call,
            |c| async move {
                let sent: u64 = c.requests.iter().map(request_bytes).sum();
                let results = send_batch(grant, &usage, c.requests, c.concurrency, deadline).await;
                usage.bytes(sent, results.iter().map(response_bytes).sum());
                results
            },
        )
        .await)
    }
}

/// Bytes a request puts on the wire, near enough: its URL, headers and
/// body.
fn request_bytes(req: &Request) -> u64 {
    client::request_size(req, req.body.as_ref().map_or(0, Vec::len))
}

/// Bytes a response brought in: its headers and its body as received.
fn response_bytes(result: &Result<Response, HttpError>) -> u64 {
    match result {
        Ok(r) => {
            let headers: usize = r.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
            headers as u64 + r.wire_body_length
        }
        Err(_) => 0,
    }
}

async fn send_batch(
    grant: Option<Arc<HttpGrant>>,
    usage: &Arc<Usage>,
    reqs: Vec<Request>,
    concurrency: u32,
    deadline: Instant,
) -> Vec<Result<Response, HttpError>> {
    let Some(grant) = grant else {
        return reqs
            .iter()
            .map(|r| Err(client::denied_without_grant(&r.url)))
            .collect();
    };
    if reqs.len() > MAX_BATCH {
        return reqs
            .iter()
            .map(|_| {
                Err(client::invalid(format!(
                    "a batch holds at most {MAX_BATCH} requests"
                )))
            })
            .collect();
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(
        concurrency.clamp(1, MAX_CONCURRENCY) as usize,
    ));
    let mut in_flight = tokio::task::JoinSet::new();
    let n = reqs.len();
    for (i, req) in reqs.into_iter().enumerate() {
        let (grant, slots, usage) = (grant.clone(), slots.clone(), usage.clone());
        in_flight.spawn(async move {
            let _slot = slots.acquire_owned().await;
            (i, client::send(&grant, &usage, req, deadline).await)
        });
    }
    let mut results: Vec<Option<Result<Response, HttpError>>> = (0..n).map(|_| None).collect();
    while let Some(done) = in_flight.join_next().await {
        if let Ok((i, r)) = done {
            results[i] = Some(r);
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(client::invalid("request was cancelled".into()))))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::bindings::wasmprobe::plugin::http::ErrorKind;
    use crate::egress::AllowRule;

    fn request(url: &str) -> Request {
        Request {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout_ms: Some(2000),
            follow_redirects: true,
            max_redirects: 5,
            max_body_bytes: None,
            preferred_ip_protocol: None,
            ip_protocol_fallback: true,
            enable_http2: false,
            http2_prior_knowledge: false,
            decompress: false,
        }
    }

    fn grant(rules: &[String]) -> Arc<HttpGrant> {
        Arc::new(HttpGrant {
            allow: AllowList::new(
                rules
                    .iter()
                    .map(|r| AllowRule::try_from(r.clone()).unwrap_or_else(|e| panic!("{e}")))
                    .collect(),
            ),
            proxy: None,
            tls: Arc::new(
                tls::TlsClient::new(&crate::config::TlsSettings::default())
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            max_body: 1 << 20,
            virtual_host: None,
        })
    }

    /// A loopback server that counts connections and answers each with
    /// `response`.
    async fn server(response: String) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let response = response.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    let _ = conn.write_all(response.as_bytes()).await;
                });
            }
        });
        (addr, accepted)
    }

    fn context(grant: Option<Arc<HttpGrant>>, tape: Option<Arc<Tape>>) -> HttpContext {
        HttpContext {
            grant,
            run: CallScope {
                deadline: Some(Instant::now() + Duration::from_secs(5)),
                tape,
                ..CallScope::default()
            },
        }
    }

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

    #[tokio::test]
    async fn a_target_outside_the_allow_list_is_denied_before_any_connection() {
        let (addr, accepted) = server(OK.into()).await;
        let other = format!("http://127.0.0.1:{}", addr.port().wrapping_add(1));
        let mut ctx = context(Some(grant(&[other])), None);
        let result = ctx.send(request(&format!("http://{addr}/"))).await;
        let err = result
            .ok()
            .and_then(Result::err)
            .unwrap_or_else(|| panic!("not denied"));
        assert_eq!(err.kind, ErrorKind::Denied, "{}", err.message);
        assert!(err.message.contains("is not allowed"), "{}", err.message);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_redirect_to_a_forbidden_host_is_denied_and_never_connected() {
        let (forbidden, forbidden_hits) = server(OK.into()).await;
        let (allowed, allowed_hits) = server(format!(
            "HTTP/1.1 302 Found\r\nLocation: http://{forbidden}/secret\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ))
        .await;
        let mut ctx = context(Some(grant(&[format!("http://{allowed}")])), None);
        let result = ctx.send(request(&format!("http://{allowed}/"))).await;
        let err = result
            .ok()
            .and_then(Result::err)
            .unwrap_or_else(|| panic!("not denied"));
        assert_eq!(err.kind, ErrorKind::Denied, "{}", err.message);
        assert_eq!(err.redirects, 1);
        assert_eq!(allowed_hits.load(Ordering::SeqCst), 1);
        assert_eq!(forbidden_hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn without_a_grant_every_request_is_denied() {
        let mut ctx = context(None, None);
        let one = ctx.send(request("http://127.0.0.1:9/")).await;
        assert!(matches!(
            one,
            Ok(Err(HttpError {
                kind: ErrorKind::Denied,
                ..
            }))
        ));
        let batch = ctx
            .send_batch(vec![request("http://127.0.0.1:9/"); 3], 2)
            .await
            .unwrap_or_default();
        assert_eq!(batch.len(), 3);
        assert!(batch.iter().all(|r| matches!(
            r,
            Err(HttpError {
                kind: ErrorKind::Denied,
                ..
            })
        )));
    }

    #[tokio::test]
    async fn a_scheme_other_than_http_is_an_invalid_request() {
        let mut ctx = context(Some(grant(&["http://127.0.0.1".into()])), None);
        let result = ctx.send(request("ftp://127.0.0.1/")).await;
        assert!(matches!(
            result,
            Ok(Err(HttpError {
                kind: ErrorKind::InvalidRequest,
                ..
            }))
        ));
    }

    #[tokio::test]
    async fn a_batch_above_the_cap_is_refused_as_a_whole() {
        let (addr, accepted) = server(OK.into()).await;
        let mut ctx = context(Some(grant(&[format!("http://{addr}")])), None);
        let batch = ctx
            .send_batch(vec![request(&format!("http://{addr}/")); MAX_BATCH + 1], 4)
            .await
            .unwrap_or_default();
        assert_eq!(batch.len(), MAX_BATCH + 1);
        assert!(batch.iter().all(|r| matches!(
            r,
            Err(HttpError {
                kind: ErrorKind::InvalidRequest,
                ..
            })
        )));
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_recorded_exchange_replays_without_the_network() {
        let (addr, accepted) = server(OK.into()).await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("tape.json");
        let recorder = Arc::new(Tape::recorder());
        let mut live = context(
            Some(grant(&[format!("http://{addr}")])),
            Some(recorder.clone()),
        );
        let first = live.send(request(&format!("http://{addr}/"))).await;
        assert!(matches!(&first, Ok(Ok(r)) if r.status == 200 && r.body == b"ok"));
        recorder
            .save(&path, "p", "t")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        let (player, _) = Tape::player(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut replay = context(None, Some(Arc::new(player)));
        let again = replay.send(request(&format!("http://{addr}/"))).await;
        assert!(matches!(&again, Ok(Ok(r)) if r.status == 200 && r.body == b"ok"));
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "the replay opened no connection"
        );
    }

    /// A loopback server that answers every request with `response` and
    /// hands over the request heads it read.
    async fn recording_server(
        answer: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    ) {
        let answer = Arc::new(answer);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (tx, answer) = (tx.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 8192];
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                    let response = answer(&head);
                    let _ = tx.send(head);
                    let _ = conn.write_all(response.as_bytes()).await;
                });
            }
        });
        (addr, rx)
    }

    /// `grant(rules)` sending through the proxy at `proxy`.
    fn through(proxy: std::net::SocketAddr, rules: &[String]) -> Arc<HttpGrant> {
        let mut g = HttpGrant::clone(&grant(rules));
        g.proxy = Some(Box::new(
            url::Url::parse(&format!("http://{proxy}")).unwrap_or_else(|e| panic!("{e}")),
        ));
        Arc::new(g)
    }

    #[tokio::test]
    async fn plain_http_goes_to_the_proxy_in_absolute_form_unresolved() {
        let (proxy, mut saw) = recording_server(|_| OK.into()).await;
        // `target.invalid` never resolves: only the proxy is looked up.
        let rules = [
            "http://target.invalid:8080".to_string(),
            format!("http://{proxy}"),
        ];
        let mut ctx = context(Some(through(proxy, &rules)), None);
        let result = ctx
            .send(request("http://target.invalid:8080/health?x=1"))
            .await;
        assert!(
            matches!(&result, Ok(Ok(r)) if r.status == 200 && r.remote_addr == proxy.to_string()),
            "{result:?}"
        );
        let head = saw.recv().await.unwrap_or_default();
        assert!(
            head.starts_with("get http://target.invalid:8080/health?x=1 http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("host: target.invalid:8080"), "{head}");
    }

    #[tokio::test]
    async fn a_target_outside_the_allow_list_never_reaches_the_proxy() {
        let (proxy, accepted) = server(OK.into()).await;
        let rules = [format!("http://{proxy}")];
        let mut ctx = context(Some(through(proxy, &rules)), None);
        let result = ctx.send(request("http://elsewhere.invalid/")).await;
        let err = result
            .ok()
            .and_then(Result::err)
            .unwrap_or_else(|| panic!("not denied"));
        assert_eq!(err.kind, ErrorKind::Denied, "{}", err.message);
        assert!(err.message.contains("elsewhere.invalid"), "{}", err.message);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_proxy_outside_the_allow_list_is_never_connected() {
        let (proxy, accepted) = server(OK.into()).await;
        let rules = ["http://target.invalid".to_string()];
        let mut ctx = context(Some(through(proxy, &rules)), None);
        let result = ctx.send(request("http://target.invalid/")).await;
        let err = result
            .ok()
            .and_then(Result::err)
            .unwrap_or_else(|| panic!("not denied"));
        assert_eq!(err.kind, ErrorKind::Denied, "{}", err.message);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_refused_connect_is_a_connect_error_naming_the_proxy_s_answer() {
        let (proxy, mut saw) =
            recording_server(|_| "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".into())
                .await;
        let rules = [
            "https://target.invalid".to_string(),
            format!("http://{proxy}"),
        ];
        let mut ctx = context(Some(through(proxy, &rules)), None);
        let result = ctx.send(request("https://target.invalid/")).await;
        let err = result
            .ok()
            .and_then(Result::err)
            .unwrap_or_else(|| panic!("not refused"));
        assert_eq!(err.kind, ErrorKind::Connect, "{}", err.message);
        assert!(err.message.contains("403 Forbidden"), "{}", err.message);
        let head = saw.recv().await.unwrap_or_default();
        assert!(
            head.starts_with("connect target.invalid:443 http/1.1\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn credentials_never_follow_a_redirect_to_another_origin() {
        let (other, mut other_saw) = recording_server(|_| OK.into()).await;
        let redirect = format!(
            "HTTP/1.1 302 Found\r\nLocation: http://{other}/next\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let (first, mut first_saw) = recording_server(move |_| redirect.clone()).await;
        let mut ctx = context(
            Some(grant(&[
                format!("http://{first}"),
                format!("http://{other}"),
            ])),
            None,
        );
        let mut req = request(&format!("http://{first}/"));
        req.headers = vec![
            ("Authorization".into(), "Bearer s3cret-token".into()),
            ("Cookie".into(), "session=abc123".into()),
            ("X-Probe".into(), "kept".into()),
        ];
        let result = ctx.send(req).await;
        assert!(
            matches!(&result, Ok(Ok(r)) if r.status == 200),
            "{result:?}"
        );
        let first_head = first_saw.recv().await.unwrap_or_default();
        assert!(first_head.contains("bearer s3cret-token"), "{first_head}");
        let next_head = other_saw.recv().await.unwrap_or_default();
        assert!(!next_head.contains("s3cret-token"), "{next_head}");
        assert!(!next_head.contains("session=abc123"), "{next_head}");
        assert!(next_head.contains("x-probe: kept"), "{next_head}");
    }

    #[tokio::test]
    async fn credentials_follow_a_redirect_within_the_origin() {
        let (addr, mut saw) = recording_server(|head| {
            if head.starts_with("get /start ") {
                "HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            } else {
                OK.into()
            }
        })
        .await;
        let mut ctx = context(Some(grant(&[format!("http://{addr}")])), None);
        let mut req = request(&format!("http://{addr}/start"));
        req.headers = vec![("Authorization".into(), "Bearer s3cret-token".into())];
        let result = ctx.send(req).await;
        assert!(
            matches!(&result, Ok(Ok(r)) if r.status == 200 && r.redirects == 1),
            "{result:?}"
        );
        let _start = saw.recv().await.unwrap_or_default();
        let next = saw.recv().await.unwrap_or_default();
        assert!(next.starts_with("get /next "), "{next}");
        assert!(next.contains("bearer s3cret-token"), "{next}");
    }

    /// An h2c server (HTTP/2 without TLS, from the first byte) that answers
    /// with a body and `trailers()`, as a gRPC server does.
    async fn h2c_server(trailers: fn() -> http::HeaderMap) -> std::net::SocketAddr {
        use http_body_util::{BodyExt, Full};
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| async move {
                        let trailers = trailers();
                        let body = Full::new(bytes::Bytes::from_static(b"\0\0\0\0\x02\x08\x01"))
                            .with_trailers(async { Some(Ok(trailers)) });
                        Ok::<_, std::convert::Infallible>(http::Response::new(body))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(conn), service)
                    .await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn h2c_with_prior_knowledge_returns_the_trailers() {
        let addr = h2c_server(|| {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            trailers
        })
        .await;
        let mut ctx = context(Some(grant(&[format!("http://{addr}")])), None);
        let mut req = request(&format!("http://{addr}/grpc.health.v1.Health/Check"));
        req.method = "POST".into();
        req.http2_prior_knowledge = true;
        let result = ctx.send(req).await;
        let response = match result {
            Ok(Ok(r)) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            response.version,
            crate::bindings::wasmprobe::plugin::http::HttpVersion::Http2
        );
        assert_eq!(response.body, b"\0\0\0\0\x02\x08\x01");
        assert_eq!(
            response.trailers,
            vec![("grpc-status".to_string(), "0".to_string())]
        );
    }

    /// A hostile server answers with a flood of trailer fields: the host
    /// keeps at most 64, each cut to 8 KiB, or refuses the answer; it never
    /// holds the flood.
    #[tokio::test]
    async fn a_flood_of_trailers_is_bounded() {
        let addr = h2c_server(|| {
            let mut trailers = http::HeaderMap::new();
            // Within hyper's header-list limit, so the host's own bounds
            // are what applies: more fields than it keeps, one too long.
            for i in 0..100 {
                let value = "v".repeat(if i == 0 { 9000 } else { 40 });
                let name = http::HeaderName::from_bytes(format!("x-flood-{i:03}").as_bytes())
                    .unwrap_or_else(|e| panic!("{e}"));
                let value = http::HeaderValue::from_str(&value).unwrap_or_else(|e| panic!("{e}"));
                trailers.insert(name, value);
            }
            trailers
        })
        .await;
        let mut ctx = context(Some(grant(&[format!("http://{addr}")])), None);
        let mut req = request(&format!("http://{addr}/"));
        req.http2_prior_knowledge = true;
        match ctx.send(req).await {
            Ok(Ok(r)) => {
                println!("kept {} trailer fields", r.trailers.len());
                assert_eq!(r.trailers.len(), 64);
                assert!(r.trailers.iter().all(|(_, v)| v.len() <= 8 << 10));
            }
            Ok(Err(e)) => {
                println!("refused: {}", e.message);
                assert_eq!(e.kind, ErrorKind::Protocol, "{}", e.message);
            }
            Err(e) => panic!("trapped: {e}"),
        }
    }
}
