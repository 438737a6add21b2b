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
use crate::runtime::store::RunState;

/// What one probe may do over HTTP, built once per config load.
#[derive(Debug)]
pub struct HttpGrant {
    pub allow: AllowList,
    pub tls: Arc<tls::TlsClient>,
    /// Body bytes kept per response.
    pub max_body: u64,
}

impl Host for RunState {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let Some(grant) = self.http.clone() else {
            return Ok(Err(client::denied_without_grant(&req.url)));
        };
        Ok(client::send(&grant, req, self.deadline).await)
    }
}
