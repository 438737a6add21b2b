//! `POST /-/reload`: reload the config now. 200 with what happened, or 400
//! with every problem found (the running config stays).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::lifecycle::{Lifecycle, Reloaded};

pub(super) async fn reload(State(reloader): State<Arc<Lifecycle>>) -> (StatusCode, String) {
    match reloader.reload("http").await {
        Ok(Reloaded::Applied { probes }) => {
            (StatusCode::OK, format!("reloaded: {probes} probes\n"))
        }
        Ok(Reloaded::Unchanged) => (StatusCode::OK, "unchanged\n".into()),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("reload refused, the running config stays: {e:#}\n"),
        ),
    }
}
