//! Handing freed heap memory back to the system.
//!
//! Loading a config and compiling plugins allocate and free tens of MiB in
//! small blocks; glibc's allocator keeps such memory for reuse, and an
//! engine that settles at a few MiB of working set would show it as
//! resident for good. Trimming after those moments took the idle engine of
//! the default config from 30.7 to 6.0 MiB of anonymous memory
//! (bench/RESULTS.md).

/// Hands free heap pages back to the system. Cheap enough for the moments
/// after a load or a compile; not for every run.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free() {
    // SAFETY: malloc_trim only releases memory no allocation holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free() {}
