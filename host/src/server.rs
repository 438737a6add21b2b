//! The HTTP endpoint: one router, one handler file per endpoint, and an
//! accept loop that bounds connections and header-read time.
//!
//! Handlers only read published state (exposition snapshots, the installed
//! probe set); `/probe` hands its run to the probe runtime and awaits it,
//! so a busy or hostile plugin never runs on the server's threads.
//!
//! [`web`] adds TLS (with optional client certificates) and basic auth
//! from an optional web config; without one the endpoint is plain HTTP,
//! open to whoever can reach it.

mod api;
mod health;
mod listener;
mod metrics;
mod probe;
mod reload;
mod status;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use listener::{ServeError, bind, serve};
pub use reload::reload_all;
pub use web::{WebConfig, WebConfigError, WebState};

use crate::app::App;
use crate::lifecycle::Lifecycle;

/// The full router, for the listener and for in-process tests. Without a
/// reloader, `/-/reload` is not served. With a web config, basic auth (when
/// it has users) guards every route, `/-/reload` and `/probe` included,
/// except its `[unauthenticated] paths`.
pub fn router(
    app: Arc<App>,
    reloader: Option<Arc<Lifecycle>>,
    web: Option<Arc<WebState>>,
) -> Router {
    let routes = Router::new()
        .route("/", get(status::page))
        .route("/status/runs", get(status::runs))
        .route("/api/v1/probes", get(api::probes))
        .route("/api/v1/probes/{name}/runs", get(api::runs))
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/probe", get(probe::probe))
        .with_state(app);
    let routes = match reloader {
        Some(lifecycle) => routes.merge(
            Router::new()
                .route("/-/reload", post(reload::reload))
                .with_state(reload::ReloadState {
                    lifecycle,
                    web: web.clone(),
                }),
        ),
        None => routes,
    };
    // Last, so the layer covers every route merged above and the fallback.
    match web {
        Some(w) => web::protect(routes, w),
        None => routes,
    }
}

#[cfg(test)]
mod tests;
