//! What a run's `Store` holds: WASI with nothing granted, the run's limits,
//! and one context per capability unit. This file is where the units are
//! composed, and the only one that lists them: adding a capability is one
//! line in each of [`Grants`], [`Grants::build`], [`RunState`],
//! [`RunState::new`] and [`link`].

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limiter::RunLimiter;
use crate::bindings::wasmprobe::plugin::types;
use crate::config::ProbeConfig;
use crate::hostcalls::dns::{Dns, DnsContext};
use crate::hostcalls::http::{Http, HttpContext};
use crate::hostcalls::icmp::{Icmp, IcmpContext};
use crate::hostcalls::log::{Log, LogContext};
use crate::hostcalls::secrets::{Secrets, SecretsContext};
use crate::hostcalls::state::{State, StateView};
use crate::hostcalls::tcp::{Tcp, TcpContext};
use crate::hostcalls::{Capability, LoadScope, RunScope};

/// A unit's grant for one probe; `None` grants nothing.
type Grant<C> = Option<Arc<<C as Capability>::Grant>>;

/// The capabilities a probe's runs may use, built once per config load;
/// the default (a plugin's `describe()`) grants none.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub log: Grant<Log>,
    pub state: Grant<State>,
    pub secrets: Grant<Secrets>,
    pub http: Grant<Http>,
    pub icmp: Grant<Icmp>,
    pub tcp: Grant<Tcp>,
    pub dns: Grant<Dns>,
}

/// The unit's grant, kept only when the plugin imports the unit's
/// interface: a plugin that cannot call a unit needs no grant of it (and
/// an idle probe holds less). The settings are checked either way, so a
/// mistake in them is reported whichever plugin the probe names.
fn grant<C: Capability>(
    probe: &ProbeConfig,
    load: &mut LoadScope<'_>,
    imports: &impl Fn(&str) -> bool,
    errors: &mut Vec<String>,
) -> Grant<C> {
    C::grant(probe, load)
        .map_err(|e| errors.push(e))
        .ok()
        .filter(|_| imports(C::NAME))
        .map(Arc::new)
}

impl Grants {
    /// Every unit's grant for `probe` whose interface the plugin imports
    /// (`imports` says which), or each unit's reason to refuse.
    pub fn build(
        probe: &ProbeConfig,
        load: &mut LoadScope<'_>,
        imports: impl Fn(&str) -> bool,
    ) -> Result<Grants, Vec<String>> {
        let mut errors = Vec::new();
        let imports = &imports;
        let grants = Grants {
            log: grant::<Log>(probe, load, imports, &mut errors),
            state: grant::<State>(probe, load, imports, &mut errors),
            secrets: grant::<Secrets>(probe, load, imports, &mut errors),
            http: grant::<Http>(probe, load, imports, &mut errors),
            icmp: grant::<Icmp>(probe, load, imports, &mut errors),
            tcp: grant::<Tcp>(probe, load, imports, &mut errors),
            dns: grant::<Dns>(probe, load, imports, &mut errors),
        };
        if errors.is_empty() {
            Ok(grants)
        } else {
            Err(errors)
        }
    }
}

/// Store data of one run.
pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: RunLimiter,
    pub(crate) scope: RunScope,
    pub(crate) log: LogContext,
    pub(crate) state: StateView,
    secrets: SecretsContext,
    http: HttpContext,
    icmp: IcmpContext,
    tcp: TcpContext,
    dns: DnsContext,
}

impl std::fmt::Debug for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunState")
            .field("probe", &self.scope.probe)
            .finish_non_exhaustive()
    }
}

impl RunState {
    pub(crate) fn new(scope: RunScope, grants: &Grants) -> Self {
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
            limiter: RunLimiter::new(scope.limits.memory),
            log: Log::context(grants.log.as_ref(), &scope),
            state: State::context(grants.state.as_ref(), &scope),
            secrets: Secrets::context(grants.secrets.as_ref(), &scope),
            http: Http::context(grants.http.as_ref(), &scope),
            icmp: Icmp::context(grants.icmp.as_ref(), &scope),
            tcp: Tcp::context(grants.tcp.as_ref(), &scope),
            dns: Dns::context(grants.dns.as_ref(), &scope),
            scope,
        }
    }
}

/// Adds WASI (nothing granted) and every capability to the engine's linker.
pub(crate) fn link(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    types::add_to_linker::<RunState, HasSelf<RunState>>(linker, |s| s)?;
    Log::link(linker, |s| &mut s.log)?;
    State::link(linker, |s| &mut s.state)?;
    Secrets::link(linker, |s| &mut s.secrets)?;
    Http::link(linker, |s| &mut s.http)?;
    Icmp::link(linker, |s| &mut s.icmp)?;
    Tcp::link(linker, |s| &mut s.tcp)?;
    Dns::link(linker, |s| &mut s.dns)?;
    Ok(())
}

/// The shared `types` interface has no functions.
impl types::Host for RunState {}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
