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
//! How soon freed pages go back depends on how busy the engine is (see
//! [`Pacer`]).
//!
//! Transparent huge pages are off for mimalloc (`no_thp`): with them its
//! arenas were backed by 2 MiB pages, and the idle default config held
//! 36 MiB of huge pages for a few MiB of live data.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

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

/// At most this many runs in one beat (a second) and the engine counts as
/// idle. The default config starts well under one a second; 100,000 probes
/// a minute start about 1,700, and a `/probe` load thousands.
pub const IDLE_RUNS_PER_BEAT: u64 = 20;

/// When freed heap pages go back to the system: at once while the engine
/// is idle, after mimalloc's delay while it is busy.
///
/// mimalloc hands a freed page back after a delay (a second by default),
/// and only when a later allocation gives it the chance. A busy engine
/// reuses the page long before that, so it neither pays for the system
/// call nor faults the page in again: purging at once cost 7-12 % of
/// `/probe` throughput, and 10 % of a first compile. An idle engine never
/// gives the chance and keeps every page a run touched, and a page reused
/// within the delay stays resident in full though its next use needs a
/// part. Purging at once from the start took mimalloc's arena with the
/// default config from 4.9-6.9 to 3.6-4.0 MiB resident, 30-60 s after the
/// start (bench/RESULTS.md, 2026-12-07, night).
///
/// `run` calls [`start_idle`] before it loads anything; compiles hold
/// [`busy`]; the scheduler's beat calls [`Pacer::beat`] once a second.
#[derive(Debug)]
pub struct Pacer {
    runs_seen: u64,
}

impl Pacer {
    /// A pacer that counts runs from `runs_total`, the engine's runs
    /// started so far.
    pub fn new(runs_total: u64) -> Pacer {
        Pacer {
            runs_seen: runs_total,
        }
    }

    /// One beat: `runs_total` is the engine's runs started so far. The
    /// engine is idle when the beat had at most [`IDLE_RUNS_PER_BEAT`] runs
    /// and nothing compiles; returns whether the heap now purges at once.
    pub fn beat(&mut self, runs_total: u64) -> bool {
        self.beat_on(&PACE, runs_total)
    }

    fn beat_on<K: Knob>(&mut self, pace: &Pace<K>, runs_total: u64) -> bool {
        let runs = runs_total.saturating_sub(self.runs_seen);
        self.runs_seen = runs_total;
        pace.set(runs <= IDLE_RUNS_PER_BEAT)
    }
}

/// The engine starts idle: from here on freed pages go back at once, until
/// a beat finds it busy. `wasmprobe compile` does not call this.
pub fn start_idle() {
    PACE.set(true);
}

/// Purges after the delay while the returned guard lives: a compile frees
/// tens of MiB in small blocks and reuses them at once.
pub fn busy() -> Busy {
    PACE.hold()
}

/// A compile in progress; the next beat decides once none is.
#[must_use = "the heap counts as busy only while this lives"]
#[derive(Debug)]
pub struct Busy(&'static AtomicUsize);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The allocator's purge delay, as [`Pace`] sees it.
trait Knob {
    /// The delay in milliseconds; 0 purges at once, below 0 never.
    fn delay(&self) -> i64;
    fn set_delay(&self, ms: i64);
    /// Purges every page waiting for its delay.
    fn purge_waiting(&self);
}

/// The purge delay's state: compiles holding it, and the delay it had
/// before the engine first changed it.
struct Pace<K> {
    knob: K,
    holds: AtomicUsize,
    /// Serialises changes, so that a beat that found no compile cannot
    /// set "at once" over a compile that has just begun.
    changing: Mutex<()>,
    busy_delay: OnceLock<i64>,
}

impl<K: Knob> Pace<K> {
    const fn new(knob: K) -> Self {
        Pace {
            knob,
            holds: AtomicUsize::new(0),
            changing: Mutex::new(()),
            busy_delay: OnceLock::new(),
        }
    }

    fn hold(&'static self) -> Busy {
        self.holds.fetch_add(1, Ordering::AcqRel);
        self.set(false);
        Busy(&self.holds)
    }

    /// Purges at once if `idle` and no compile holds the delay, after the
    /// delay the engine started with otherwise. A delay of 0 or below from
    /// the environment (`MIMALLOC_PURGE_DELAY`: at once, never) is the
    /// operator's choice and stays. Returns whether the heap purges at once.
    fn set(&self, idle: bool) -> bool {
        let _one = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let busy = *self.busy_delay.get_or_init(|| self.knob.delay());
        if busy <= 0 {
            return busy == 0;
        }
        let idle = idle && self.holds.load(Ordering::Acquire) == 0;
        let want = if idle { 0 } else { busy };
        if self.knob.delay() != want {
            if idle {
                // Pages waiting for their delay are purged only while the
                // delay is set: with 0, mimalloc no longer looks at them.
                self.knob.purge_waiting();
            }
            self.knob.set_delay(want);
            tracing::debug!(purge_delay_ms = want, "heap purge delay changed");
        }
        idle
    }
}

/// The engine's heap's purge delay.
static PACE: Pace<Allocator> = Pace::new(Allocator);

/// The global allocator's knob.
struct Allocator;

/// mimalloc's option index of `purge_delay` (`mi_option_purge_delay` in
/// mimalloc.h, the same in its v2 and v3); the Rust bindings do not name it.
#[cfg(feature = "mimalloc")]
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[cfg(feature = "mimalloc")]
#[allow(unsafe_code)]
impl Knob for Allocator {
    fn delay(&self) -> i64 {
        // SAFETY: reading an option has no precondition.
        unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) as i64 }
    }

    fn set_delay(&self, ms: i64) {
        // SAFETY: mimalloc reads the option at each purge decision, the
        // store is one word, and every value is a valid delay.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, ms as std::os::raw::c_long) }
    }

    fn purge_waiting(&self) {
        release_free();
    }
}

/// glibc has no purge delay: nothing to pace.
#[cfg(not(feature = "mimalloc"))]
impl Knob for Allocator {
    fn delay(&self) -> i64 {
        -1
    }

    fn set_delay(&self, _ms: i64) {}

    fn purge_waiting(&self) {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    /// A purge delay that counts the purges asked of it.
    struct Fake {
        delay: AtomicI64,
        purges: AtomicUsize,
    }

    impl Knob for Fake {
        fn delay(&self) -> i64 {
            self.delay.load(Ordering::Relaxed)
        }
        fn set_delay(&self, ms: i64) {
            self.delay.store(ms, Ordering::Relaxed);
        }
        fn purge_waiting(&self) {
            self.purges.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn pace(delay: i64) -> &'static Pace<Fake> {
        Box::leak(Box::new(Pace::new(Fake {
            delay: AtomicI64::new(delay),
            purges: AtomicUsize::new(0),
        })))
    }

    #[test]
    fn purges_at_once_while_idle_and_after_the_delay_while_busy_or_compiling() {
        let pace = pace(1000);
        let mut pacer = Pacer::new(100);
        // The start is idle; what waited for the delay is purged first.
        assert!(pace.set(true));
        assert_eq!(pace.knob.delay(), 0);
        assert_eq!(pace.knob.purges.load(Ordering::Relaxed), 1);
        // A quiet beat (at most IDLE_RUNS_PER_BEAT runs) changes nothing.
        assert!(pacer.beat_on(pace, 100 + IDLE_RUNS_PER_BEAT));
        assert_eq!(pace.knob.purges.load(Ordering::Relaxed), 1);
        // A busy beat puts the delay back, a quiet one takes it away.
        assert!(!pacer.beat_on(pace, 100 + 2 * IDLE_RUNS_PER_BEAT + 1));
        assert_eq!(pace.knob.delay(), 1000);
        assert!(pacer.beat_on(pace, 100 + 2 * IDLE_RUNS_PER_BEAT + 1));
        assert_eq!(pace.knob.delay(), 0);
        assert_eq!(pace.knob.purges.load(Ordering::Relaxed), 2);
        // Compiles hold the delay through quiet beats, until the last ends.
        let first = pace.hold();
        let second = pace.hold();
        assert_eq!(pace.knob.delay(), 1000);
        drop(first);
        assert!(!pacer.beat_on(pace, 100 + 2 * IDLE_RUNS_PER_BEAT + 1));
        assert_eq!(pace.knob.delay(), 1000);
        drop(second);
        assert!(pacer.beat_on(pace, 100 + 2 * IDLE_RUNS_PER_BEAT + 1));
        assert_eq!(pace.knob.delay(), 0);
        // A pacer made after a reload starts from the runs it is given,
        // and the delay it restores is the one the engine started with.
        let mut next = Pacer::new(1_000);
        assert!(!next.beat_on(pace, 2_000));
        assert_eq!(pace.knob.delay(), 1000);
        // A count that went back is a quiet beat, not an overflow.
        assert!(next.beat_on(pace, 10));
    }

    #[test]
    fn a_delay_the_operator_set_to_zero_or_below_stays() {
        for delay in [0, -1] {
            let pace = pace(delay);
            let _compiling = pace.hold();
            assert_eq!(pace.set(true), delay == 0);
            assert_eq!(pace.set(false), delay == 0);
            assert_eq!(pace.knob.delay(), delay);
            assert_eq!(pace.knob.purges.load(Ordering::Relaxed), 0);
        }
    }
}
