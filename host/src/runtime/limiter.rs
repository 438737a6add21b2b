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
    /// The largest linear memory granted, for the probe's usage metrics.
    pub(crate) peak: usize,
}

impl RunLimiter {
    pub(crate) fn new(memory: u64) -> Self {
        RunLimiter {
            memory: usize::try_from(memory).unwrap_or(usize::MAX),
            hit: false,
            peak: 0,
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
        if ok {
            self.peak = self.peak.max(desired);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_memories_stop_at_their_caps() {
        let mut l = RunLimiter::new(1 << 20);
        assert!(matches!(
            l.table_growing(0, MAX_TABLE_ELEMENTS, None),
            Ok(true)
        ));
        assert!(!l.hit);
        assert!(matches!(
            l.table_growing(MAX_TABLE_ELEMENTS, MAX_TABLE_ELEMENTS + 1, None),
            Ok(false)
        ));
        assert!(l.hit, "a refused table growth is remembered as a limit hit");
        let mut l = RunLimiter::new(1 << 20);
        assert!(matches!(l.memory_growing(0, 1 << 20, None), Ok(true)));
        assert!(matches!(
            l.memory_growing(1 << 20, (1 << 20) + 65536, None),
            Ok(false)
        ));
        assert!(l.hit);
    }
}
