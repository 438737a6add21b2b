//! A small key/value store private to the probe that survives between its
//! runs (not restarts). Writes of a run that traps are discarded.

pub use crate::wasmprobe::plugin::state::{StateError, delete, get, set};

/// Reads a value stored as JSON.
pub fn get_json<T: serde::de::DeserializeOwned>(key: &str) -> Option<T> {
    get(key).and_then(|v| serde_json::from_slice(&v).ok())
}

/// Stores a value as JSON.
pub fn set_json<T: serde::Serialize>(key: &str, value: &T) -> Result<(), StateError> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    set(key, &bytes)
}
