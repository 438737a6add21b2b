//! The HTTP endpoint: one router, one handler file per endpoint, and an
//! accept loop that bounds connections and header-read time.
//!
//! Handlers only read published state (exposition snapshots, the installed
//! probe set); `/probe` hands its run to the probe runtime and awaits it,
//! so a busy or hostile plugin never runs on the server's threads.

mod health;
mod listener;
mod metrics;
mod probe;
mod status;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

pub use listener::{ServeError, bind, serve};

use crate::app::App;

/// The full router, for the listener and for in-process tests.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(status::page))
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/probe", get(probe::probe))
        .with_state(app)
}
