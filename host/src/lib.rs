//! wasmprobe: a probe engine whose probes are sandboxed WebAssembly
//! components.
//!
//! One process loads plugins ([`runtime`]), runs each configured probe on
//! its cron schedule ([`schedule`]) with the capabilities its config grants
//! ([`hostcalls`]), and serves every result on one Prometheus/OpenMetrics
//! endpoint ([`exposition`], [`server`]). [`config`] parses and validates
//! `probes.toml`; [`app`] ties a loaded config to the running pieces.

pub mod app;
pub mod bindings;
pub mod config;
pub mod demo;
pub mod egress;
pub mod exposition;
pub mod hostcalls;
pub mod names;
pub mod reload;
pub mod runtime;
pub mod scaffold;
pub mod schedule;
pub mod server;
pub mod shard;
pub(crate) mod tls_files;
