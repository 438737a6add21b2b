//! CPU time a run takes, measured per poll on the thread that polls it.
//!
//! A run is one future: wasmtime executes the plugin inside its polls (on
//! a fiber of the polling thread) and the host calls' own work happens
//! there too, so the thread's CPU clock read around each poll adds up to
//! what the run cost, whichever worker thread took each poll. Time spent
//! waiting (network, timers) is not CPU time and is not counted.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::time::{ClockId, clock_gettime};

/// CPU nanoseconds a measured future has taken so far.
#[derive(Debug, Default)]
pub(super) struct CpuSpent(AtomicU64);

impl CpuSpent {
    pub(super) fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

/// This thread's CPU clock, or zero where the system has none.
fn thread_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}

/// Runs `fut`, adding the CPU time of each of its polls to `spent`; what
/// was spent stays readable when the future is dropped before it ends
/// (a run cut at its deadline).
pub(super) async fn measured<F: Future>(fut: F, spent: &CpuSpent) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        let start = thread_cpu();
        let polled = fut.as_mut().poll(cx);
        let took = thread_cpu().saturating_sub(start);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        spent.0.fetch_add(nanos, Ordering::Relaxed);
        polled
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn computing_is_counted_and_waiting_is_not() {
        let spent = CpuSpent::default();
        measured(
            async {
                let mut x = 0u64;
                for i in 0..20_000_000u64 {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                }
                std::hint::black_box(x);
            },
            &spent,
        )
        .await;
        let computed = spent.get();
        assert!(computed > Duration::ZERO, "{computed:?}");

        let idle = CpuSpent::default();
        measured(tokio::time::sleep(Duration::from_millis(200)), &idle).await;
        assert!(
            idle.get() < Duration::from_millis(100),
            "sleeping 200 ms took {:?} of CPU",
            idle.get()
        );
    }
}
