//! `/healthz` (liveness) and `/readyz` (readiness).
//!
//! Liveness says the process and its scheduler are alive: probe results
//! never enter into it, so a failing probe can never get the exporter
//! restarted. Readiness says a config is loaded and runs are scheduled; it
//! goes false first on shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;

use crate::app::App;

pub(super) async fn healthz(State(app): State<Arc<App>>) -> (StatusCode, &'static str) {
    if app.alive() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "scheduler is not responding\n",
        )
    }
}

pub(super) async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, &'static str) {
    if app.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
