//! The WebAssembly side: one wasmtime engine, plugin loading, and one run of
//! one probe.
//!
//! One [`engine::WasmEngine`] per process: epoch interruption driven by a
//! single ticker thread, the pooling allocator sized from the config, and
//! the engine's own on-disk compile cache (keyed by the component's bytes
//! and the engine's settings; nothing precompiled is ever read from
//! anywhere else). Each run gets a fresh `Store` with its own limits and is
//! dropped afterwards, so no state leaks between runs.

pub mod cache;
pub mod compiler_process;
mod cpu;
pub mod engine;
mod limiter;
pub mod plugin;
pub mod record;
pub mod run;
pub mod store;

pub use engine::{EngineError, WasmEngine};
pub use plugin::{Plugin, PluginError, PluginInfo};

/// The wasmtime release the host is built against, for `wasmprobe_build_info`.
pub const WASMTIME_VERSION: &str = "48.0.8";

#[cfg(test)]
mod tests {
    #[test]
    fn wasmtime_version_matches_the_lockfile() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
            .unwrap_or_default();
        let pinned = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"wasmtime\"\n"))
            .and_then(|p| p.lines().find(|l| l.starts_with("version = ")))
            .map(|l| {
                l.trim_start_matches("version = ")
                    .trim_matches('"')
                    .to_string()
            });
        assert_eq!(pinned.as_deref(), Some(super::WASMTIME_VERSION));
    }
}
