//! Per-run resource limits, remembering when one was hit so a trap that
//! follows (a Rust plugin aborts on allocation failure) is reported as
//! `memory_limit` rather than `unreachable`.

use wasmtime::ResourceLimiter;

/// Most table elements an instance may grow to.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Instances, tables and memories a plugin component may create: room for
/// what wit-component produces around a Rust plugin, and little more.
pub(crate) const MAX_INSTANCES: usize = 32;
pub(crate) const MAX_TABLES: usize = 32;
pub(crate) const MAX_MEMORIES: usize = 4;

#[derive(Debug)]
pub(crate) struct RunLimiter {
    memory: usize,
    pub(crate) hit: bool,
}

impl RunLimiter {
    pub(crate) fn new(memory: u64) -> Self {
        RunLimiter {
            memory: usize::try_from(memory).unwrap_or(usize::MAX),
            hit: false,
        }
    }
}

impl ResourceLimiter for RunLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.memory;
        self.hit |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= MAX_TABLE_ELEMENTS;
        self.hit |= !ok;
        Ok(ok)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}
