//! Capabilities the host gives plugins: one unit per WIT interface.
//!
//! A unit ([`Capability`]) owns everything about its interface on the host
//! side, in one file (or one file and its folder):
//!
//! - its **grant**, built once per config load from the probe's settings
//!   (`probes.toml` values parsed and checked by [`crate::config`]) and
//!   shared by every run of the probe;
//! - its per-run **context**, which implements the generated `Host` trait
//!   and sees only the grant, the [`RunScope`] and its own state: never
//!   another unit's, never the whole store;
//! - its **linker registration**.
//!
//! The run's store (`runtime/store.rs`) composes the units; nothing else
//! knows the list. Two channels, always: what a plugin can handle (a denied
//! target, a timeout, a full state store) comes back as the interface's
//! error value; only exceeded hard limits and host bugs trap. Networked units go through
//! [`crate::egress`] before any packet leaves; calls worth replaying go
//! through [`tape::Tape::around`]. An empty allow-list denies everything.

pub mod dns;
pub mod http;
pub mod icmp;
pub mod log;
pub mod secrets;
pub mod state;
pub mod tape;
pub mod tcp;
pub mod tls;
mod usage;

pub use usage::{Budget, RefusalReason, Spent, Usage, UsageCounts};

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::Linker;

use crate::config::{Limits, ProbeConfig};

/// One host capability: its grant, its per-run context and its linker line.
pub trait Capability {
    /// The WIT interface's name: the `capability` label of the probe's
    /// usage metrics.
    const NAME: &'static str;
    /// What one probe may do, built once per config load. Runs without a
    /// grant (a plugin's `describe()`) get `None` and must deny.
    type Grant: Send + Sync + std::fmt::Debug + 'static;
    /// One run's view of the capability; implements the bindgen `Host`.
    type Context: Send + 'static;

    /// The probe's grant, or why its settings cannot be used (the message
    /// is reported at the probe's location in the config).
    fn grant(probe: &ProbeConfig, load: &mut LoadScope<'_>) -> Result<Self::Grant, String>;

    /// A fresh context for one run.
    fn context(grant: Option<&Arc<Self::Grant>>, run: &RunScope) -> Self::Context;

    /// Adds the interface's functions, reaching the context through `get`.
    fn link<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut Self::Context,
    ) -> wasmtime::Result<()>;
}

/// Process-wide services a unit may need to build grants (sockets the host
/// owns, say), registered once by type when the engine starts.
#[derive(Debug, Default, Clone)]
pub struct Services {
    by_type: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Services {
    pub fn with<S: Any + Send + Sync>(mut self, service: Arc<S>) -> Self {
        self.by_type.insert(TypeId::of::<S>(), service);
        self
    }

    /// The service of type `S`, when the process registered one.
    pub fn get<S: Any + Send + Sync>(&self) -> Option<Arc<S>> {
        self.by_type
            .get(&TypeId::of::<S>())
            .cloned()
            .and_then(|s| s.downcast::<S>().ok())
    }
}

/// What grant building shares within one config load: the process's
/// services and one cache per unit (e.g. TLS clients by trust settings).
#[derive(Debug)]
pub struct LoadScope<'a> {
    pub services: &'a Services,
    caches: HashMap<TypeId, Box<dyn Any + Send>>,
}

impl<'a> LoadScope<'a> {
    pub fn new(services: &'a Services) -> Self {
        LoadScope {
            services,
            caches: HashMap::new(),
        }
    }

    /// This load's cache of type `C`, created empty on first use.
    pub fn cache<C: Any + Send + Default>(&mut self) -> &mut C {
        let entry = self
            .caches
            .entry(TypeId::of::<C>())
            .or_insert_with(|| Box::new(C::default()));
        match entry.downcast_mut::<C>() {
            Some(c) => c,
            // The entry was created for this TypeId just above or earlier.
            None => unreachable_cache(),
        }
    }
}

#[expect(clippy::panic, reason = "a cache is keyed by its own TypeId")]
fn unreachable_cache() -> ! {
    panic!("cache entry of another type")
}

/// What a unit that makes calls on the plugin's behalf takes from the run:
/// when to give up, what to redact, the tape and the usage counters.
#[derive(Debug, Clone, Default)]
pub struct CallScope {
    pub deadline: Option<Instant>,
    pub revealed: secrets::Revealed,
    pub tape: Option<Arc<tape::Tape>>,
    pub usage: Arc<Usage>,
}

impl CallScope {
    /// The deadline, or now for a scope without one (nothing may wait).
    pub fn deadline(&self) -> Instant {
        self.deadline.unwrap_or_else(Instant::now)
    }

    /// [`crate::egress::admit`] by `at`, with an allow-list refusal counted
    /// for the probe: what a networked unit does before it connects. Not
    /// resolving in time is a DNS refusal.
    pub async fn admit(
        &self,
        allow: &crate::egress::AllowList,
        dest: &crate::egress::Destination,
        port: u16,
        preference: (
            Option<crate::bindings::wasmprobe::plugin::types::IpProtocol>,
            bool,
        ),
        at: tokio::time::Instant,
    ) -> Result<crate::egress::Admitted, crate::egress::Refusal> {
        use crate::egress::Refusal;
        let started = Instant::now();
        let admitted = crate::egress::admit(allow, dest, port, preference.0, preference.1);
        match tokio::time::timeout_at(at, admitted).await {
            Ok(Err(refusal @ Refusal::Denied { .. })) => {
                self.usage.refused(RefusalReason::AllowList);
                Err(refusal)
            }
            Ok(result) => result,
            Err(_) => Err(Refusal::Dns {
                message: format!("{}: deadline passed while resolving", dest.host),
                resolve: started.elapsed().as_secs_f64(),
            }),
        }
    }
}

impl RunScope {
    /// The part of the run a calling unit keeps.
    pub fn calls(&self) -> CallScope {
        CallScope {
            deadline: Some(self.deadline),
            revealed: self.revealed.clone(),
            tape: self.tape.clone(),
            usage: self.usage.clone(),
        }
    }
}

/// `/probe?hostname=NAME`: the name a run's requests to its target's host
/// present instead of that host, in `Host` and as the TLS server name, as
/// blackbox_exporter's `hostname` parameter does for a virtual host
/// behind an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualHost {
    /// The host of the run's target, whose requests are renamed.
    pub target_host: String,
    pub name: String,
}

/// What every unit may know of the run it serves.
#[derive(Debug, Clone)]
pub struct RunScope {
    /// The probe's name, for log lines.
    pub probe: Arc<str>,
    /// When host calls must have answered (a little before the run's end,
    /// so the plugin can still report the failure itself).
    pub deadline: Instant,
    pub limits: Limits,
    /// Secret values the run has read, redacted from everything it writes.
    pub revealed: secrets::Revealed,
    /// Record or replay the run's calls (`wasmprobe probe --record/--replay`).
    pub tape: Option<Arc<tape::Tape>>,
    /// The probe's persistent key/value store; `None` for runs whose state
    /// must not persist (on-demand runs, `describe()`).
    pub state: Option<state::ProbeState>,
    /// What the run's host calls use, counted as they go.
    pub usage: Arc<Usage>,
    /// The on-demand run's `hostname`, if it was given one.
    pub virtual_host: Option<VirtualHost>,
}
