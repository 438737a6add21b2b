//! What a run's `Store` holds: WASI with nothing granted, the run's limits,
//! and the state each host call needs.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limiter::RunLimiter;
use crate::hostcalls::http::HttpGrant;
use crate::hostcalls::icmp::IcmpGrant;
use crate::hostcalls::log::LogSink;
use crate::hostcalls::secrets::SecretsGrant;
use crate::hostcalls::state::StateView;
use crate::hostcalls::tape::Tape;

/// The capabilities a run may use; the default grants none.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub http: Option<Arc<HttpGrant>>,
    pub icmp: Option<Arc<IcmpGrant>>,
    pub secrets: Option<Arc<SecretsGrant>>,
    /// Record or replay network calls (`wasmprobe probe --record/--replay`).
    pub tape: Option<Arc<Tape>>,
}

/// Store data of one run.
pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: RunLimiter,
    /// For log lines.
    pub(crate) probe: String,
    /// When the run must end; host calls wait no longer than this.
    pub(crate) deadline: Instant,
    pub(crate) log: LogSink,
    pub(crate) state: StateView,
    /// `None` while describing a plugin: no network outside `run()`.
    pub(crate) http: Option<Arc<HttpGrant>>,
    /// `None` while describing a plugin.
    pub(crate) icmp: Option<Arc<IcmpGrant>>,
    pub(crate) secrets: Option<Arc<SecretsGrant>>,
    /// Secret values this run has read, to redact from its output.
    pub(crate) revealed: Vec<String>,
    pub(crate) tape: Option<Arc<Tape>>,
}

impl std::fmt::Debug for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunState")
            .field("probe", &self.probe)
            .finish_non_exhaustive()
    }
}

impl RunState {
    pub(crate) fn new(
        probe: String,
        memory: u64,
        log_lines: u32,
        deadline: Instant,
        state: StateView,
        grants: Grants,
    ) -> Self {
        // Nothing granted: no preopened directories, no environment, no
        // arguments, stdio closed, and no socket address allowed.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        RunState {
            wasi,
            table: ResourceTable::new(),
            limiter: RunLimiter::new(memory),
            probe,
            deadline,
            log: LogSink::new(log_lines),
            state,
            http: grants.http,
            icmp: grants.icmp,
            secrets: grants.secrets,
            revealed: Vec::new(),
            tape: grants.tape,
        }
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
