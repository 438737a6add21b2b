//! The engine's heap: which allocator serves it, and handing freed memory
//! back to the system.
//!
//! A `/probe` request is parsed and answered on the server thread and run
//! on a probe worker, so memory is routinely freed by another thread than
//! the one that allocated it. Under `/probe` load glibc's allocator took
//! about a seventh of the engine's samples in `perf` (malloc, free and
//! consolidation 10 %, its arena locks 4 %); mimalloc frees across
//! threads without a lock. Same load, same machine: CPU per probe
//! 275-302 -> 214-228 us, throughput 5,140-5,620 -> 6,740-7,190 probes/s
//! (bench/RESULTS.md, 2026-12-06).
//!
//! Transparent huge pages are off for mimalloc (`no_thp`): with them its
//! arenas were backed by 2 MiB pages, and the idle default config held
//! 36 MiB of huge pages for a few MiB of live data.

/// The allocator of every binary and test that links the engine, so tests
/// run on the heap the engine ships with.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hands free heap pages back to the system. Cheap enough for the moments
/// after a load or a compile (loading a config and compiling plugins
/// allocate and free tens of MiB in small blocks); not for every run.
#[cfg(feature = "mimalloc")]
#[allow(unsafe_code)]
pub fn release_free() {
    // SAFETY: mi_collect only purges memory no allocation holds; `true`
    // also returns what threads that have ended left behind.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

/// Without mimalloc (the fuzz build): glibc keeps freed memory for reuse
/// until it is trimmed.
#[cfg(all(not(feature = "mimalloc"), target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free() {
    // SAFETY: malloc_trim only releases memory no allocation holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(
    not(feature = "mimalloc"),
    not(all(target_os = "linux", target_env = "gnu"))
))]
pub fn release_free() {}
