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

use std::sync::Arc;

use crate::bindings::wasmprobe::plugin::http::{Host, HttpError, Request, Response};
use crate::hostcalls::allowlist::AllowList;
use crate::hostcalls::tape::{Call, Exchange};
use crate::runtime::store::RunState;

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

impl Host for RunState {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        if let Some(tape) = self.tape.clone().filter(|t| t.replaying()) {
            return Ok(match tape.replay(Call::HttpSend(&req), &self.revealed) {
                Ok(Exchange::HttpSend { result, .. }) => *result,
                Ok(_) => Err(client::invalid("replay: wrong recorded call".to_string())),
                Err(why) => Err(client::invalid(why)),
            });
        }
        let Some(grant) = self.http.clone() else {
            return Ok(Err(client::denied_without_grant(&req.url)));
        };
        let request = self.tape.is_some().then(|| req.clone());
        let result = client::send(&grant, req, self.deadline).await;
        if let (Some(tape), Some(request)) = (&self.tape, request) {
            tape.record(
                Exchange::HttpSend {
                    request,
                    result: Box::new(result.clone()),
                },
                &self.revealed,
            );
        }
        Ok(result)
    }

    async fn send_batch(
        &mut self,
        reqs: Vec<Request>,
        concurrency: u32,
    ) -> wasmtime::Result<Vec<Result<Response, HttpError>>> {
        if let Some(tape) = self.tape.clone().filter(|t| t.replaying()) {
            return Ok(
                match tape.replay(Call::HttpSendBatch(&reqs, concurrency), &self.revealed) {
                    Ok(Exchange::HttpSendBatch { results, .. }) => results,
                    other => {
                        let why = other
                            .err()
                            .unwrap_or_else(|| "replay: wrong recorded call".to_string());
                        reqs.iter()
                            .map(|_| Err(client::invalid(why.clone())))
                            .collect()
                    }
                },
            );
        }
        let recorded = self.tape.is_some().then(|| reqs.clone());
        let results = self.send_batch_live(reqs, concurrency).await;
        if let (Some(tape), Some(requests)) = (&self.tape, recorded) {
            tape.record(
                Exchange::HttpSendBatch {
                    requests,
                    concurrency,
                    results: results.clone(),
                },
                &self.revealed,
            );
        }
        Ok(results)
    }
}

impl RunState {
    async fn send_batch_live(
        &mut self,
        reqs: Vec<Request>,
        concurrency: u32,
    ) -> Vec<Result<Response, HttpError>> {
        let Some(grant) = self.http.clone() else {
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
        let deadline = self.deadline;
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
}
