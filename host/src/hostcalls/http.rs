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
pub mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use wasmtime::component::{HasSelf, Linker};

use super::secrets::Revealed;
use super::tape::{Tape, TapedCall};
use super::{Capability, LoadScope, RunScope};
use crate::bindings::wasmprobe::plugin::http::{self as wit, Host, HttpError, Request, Response};
use crate::config::{ProbeConfig, TlsMinVersion, TlsSettings};
use crate::egress::AllowList;

/// What one probe may do over HTTP, built once per config load.
#[derive(Debug)]
pub struct HttpGrant {
    pub allow: AllowList,
    pub tls: Arc<tls::TlsClient>,
    /// Body bytes kept per response.
    pub max_body: u64,
}

/// Most requests in one `send-batch`.
pub const MAX_BATCH: usize = 1000;
/// Most exchanges of one `send-batch` in flight at once.
pub const MAX_CONCURRENCY: u32 = 64;

/// The `http` unit.
#[derive(Debug)]
pub struct Http;

/// Trust anchors, skip-verify, server name, TLS 1.3 only, and the client
/// certificate chain with its key file: probes alike in these share one
/// client (its root store and session cache: about 26 KiB per probe).
type TlsKey = (
    Vec<Vec<u8>>,
    bool,
    Option<String>,
    bool,
    Option<(Vec<Vec<u8>>, std::path::PathBuf)>,
);

/// The TLS clients of one config load, by trust settings.
#[derive(Default)]
struct TlsClients(BTreeMap<TlsKey, Arc<tls::TlsClient>>);

impl TlsClients {
    fn client_for(&mut self, settings: &TlsSettings) -> Result<Arc<tls::TlsClient>, String> {
        let key = (
            settings
                .ca_certs
                .iter()
                .map(|c| c.as_ref().to_vec())
                .collect(),
            settings.insecure_skip_verify,
            settings.server_name.clone(),
            settings.min_version == TlsMinVersion::Tls13,
            settings.client_cert.as_ref().map(|c| {
                (
                    c.pair.cert.iter().map(|d| d.as_ref().to_vec()).collect(),
                    c.key_file.clone(),
                )
            }),
        );
        if let Some(client) = self.0.get(&key) {
            return Ok(client.clone());
        }
        let client = Arc::new(tls::TlsClient::new(settings).map_err(|e| e.to_string())?);
        self.0.insert(key, client.clone());
        Ok(client)
    }
}

/// One run's `http`.
#[derive(Debug)]
pub struct HttpContext {
    grant: Option<Arc<HttpGrant>>,
    deadline: Instant,
    revealed: Revealed,
    tape: Option<Arc<Tape>>,
}

impl Capability for Http {
    type Grant = HttpGrant;
    type Context = HttpContext;

    fn grant(probe: &ProbeConfig, load: &mut LoadScope<'_>) -> Result<HttpGrant, String> {
        Ok(HttpGrant {
            allow: probe.allow.clone(),
            tls: load.cache::<TlsClients>().client_for(&probe.tls)?,
            max_body: probe.limits.max_body,
        })
    }

    fn context(grant: Option<&Arc<HttpGrant>>, run: &RunScope) -> HttpContext {
        HttpContext {
            grant: grant.cloned(),
            deadline: run.deadline,
            revealed: run.revealed.clone(),
            tape: run.tape.clone(),
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
}

impl Host for HttpContext {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let (grant, deadline) = (self.grant.clone(), self.deadline);
        let call = SendCall { request: req };
        Ok(
            Tape::around(self.tape.as_deref(), &self.revealed, call, |c| async move {
                match grant {
                    Some(grant) => client::send(&grant, c.request, deadline).await,
                    None => Err(client::denied_without_grant(&c.request.url)),
                }
            })
            .await,
        )
    }

    async fn send_batch(
        &mut self,
        reqs: Vec<Request>,
        concurrency: u32,
    ) -> wasmtime::Result<Vec<Result<Response, HttpError>>> {
        let (grant, deadline) = (self.grant.clone(), self.deadline);
        let call = SendBatchCall {
            requests: reqs,
            concurrency,
        };
        Ok(
            Tape::around(self.tape.as_deref(), &self.revealed, call, |c| {
                send_batch(grant, c.requests, c.concurrency, deadline)
            })
            .await,
        )
    }
}

async fn send_batch(
    grant: Option<Arc<HttpGrant>>,
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
        let grant = grant.clone();
        let slots = slots.clone();
        in_flight.spawn(async move {
            let _slot = slots.acquire_owned().await;
            (i, client::send(&grant, req, deadline).await)
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
