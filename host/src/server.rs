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
mod reload;
mod status;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use listener::{ServeError, bind, serve};

use crate::app::App;
use crate::reload::Reloader;

/// The full router, for the listener and for in-process tests. Without a
/// reloader, `/-/reload` is not served.
pub fn router(app: Arc<App>, reloader: Option<Arc<Reloader>>) -> Router {
    let routes = Router::new()
        .route("/", get(status::page))
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/probe", get(probe::probe))
        .with_state(app);
    match reloader {
        Some(r) => routes.merge(
            Router::new()
                .route("/-/reload", post(reload::reload))
                .with_state(r),
        ),
        None => routes,
    }
}
