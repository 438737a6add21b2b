//! Credentials named in the probe's `secrets` table (`{ env = "VAR" }` or
//! `{ file = "path" }`), read by the host when asked. The host redacts any
//! value read from the run's log lines, message and label values.

pub use crate::wasmprobe::plugin::secrets::get;
