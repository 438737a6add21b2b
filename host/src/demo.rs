//! Local simulators for the demo and the tests: a treaty partner, an
//! anchoring ledger and a three-replica field service (one replica
//! drifting), on loopback only. They stand in for services a
//! newcomer does not have, so `wasmprobe run --demo` shows every bundled
//! plugin producing real numbers. They are not part of probing: nothing in
//! the engine depends on them.
//!
//! Both are deterministic: a share `s` of requests misbehaves exactly
//! `floor((i+1)·s) − floor(i·s)` times at request `i`, so any run of `n`
//! consecutive requests sees `n·s` of them, to within one.

pub mod field;
pub mod ledger;
pub mod partner;

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Whether request `i` falls in the misbehaving share `share`.
pub fn in_share(i: u64, share: f64) -> bool {
    let share = share.clamp(0.0, 1.0);
    // The nudge keeps `1.0 - 0.8` (0.19999…) from losing a request.
    let step = |n: u64| (n as f64 * share + 1e-9).floor();
    step(i + 1) > step(i)
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, router: axum::Router) {
    let _ = axum::serve(listener, router).await;
}

/// Binds a simulator address, which must be loopback.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("demo simulators listen on loopback only, not {addr}"),
        ));
    }
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_exact_over_any_window() {
        assert_eq!((0..20).filter(|i| in_share(*i, 1.0 - 0.8)).count(), 4);
        for share in [0.0, 0.05, 0.3, 0.5, 1.0] {
            for start in [0u64, 7, 1000] {
                let n = (start..start + 100).filter(|i| in_share(*i, share)).count() as f64;
                assert!((n - 100.0 * share).abs() <= 1.0, "{share} at {start}: {n}");
            }
        }
    }
}
