//! Capabilities the host gives plugins, one file per WIT interface.
//!
//! Each file implements the generated `Host` trait for a run's store data
//! ([`crate::runtime::store::RunState`]). Two channels, always: what a plugin
//! can handle (a denied target, a timeout, a full state store) comes back as
//! the interface's error value; only exceeded hard limits and host bugs
//! trap. Grants are built once per config load and shared by the probe's
//! runs; an empty allow-list denies everything.

mod address;
pub mod allowlist;
pub mod http;
pub mod icmp;
pub mod log;
pub mod secrets;
pub mod state;
pub mod tape;

use crate::bindings::wasmprobe::plugin::types;
use crate::runtime::store::RunState;

impl types::Host for RunState {}
