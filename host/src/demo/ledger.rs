//! An anchoring ledger: `POST /anchor` with `Authorization: Bearer TOKEN`
//! and `{"root": HEX, "size": N}` answers `{"root", "anchor_id",
//! "height"}`; a wrong token gets 401, a configurable share of requests
//! 503. `GET /batch?size=N` serves a batch of receipts as a JSON array.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};

use super::in_share;

/// How the simulated ledger behaves.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// The bearer token it accepts.
    pub token: String,
    /// Share of anchoring requests answered 503.
    pub failure_share: f64,
}

struct Ledger {
    config: LedgerConfig,
    requests: AtomicU64,
    height: AtomicU64,
}

#[derive(serde::Deserialize)]
struct AnchorRequest {
    root: String,
}

async fn anchor(
    State(l): State<Arc<Ledger>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == l.config.token);
    if !authorized {
        return (StatusCode::UNAUTHORIZED, "bad credential\n").into_response();
    }
    let i = l.requests.fetch_add(1, Ordering::Relaxed);
    if in_share(i, l.config.failure_share) {
        return (StatusCode::SERVICE_UNAVAILABLE, "ledger busy\n").into_response();
    }
    let Ok(req) = serde_json::from_slice::<AnchorRequest>(&body) else {
        return (StatusCode::BAD_REQUEST, "expected {\"root\": HEX}\n").into_response();
    };
    let Ok(root) = hex::decode(&req.root) else {
        return (StatusCode::BAD_REQUEST, "root is not hex\n").into_response();
    };
    let mut h = Sha256::new();
    h.update(b"wasmprobe-demo-ledger");
    h.update(&root);
    let anchor_id = hex::encode(h.finalize())[..32].to_string();
    let height = l.height.fetch_add(1, Ordering::Relaxed) + 1;
    Json(serde_json::json!({ "root": req.root, "anchor_id": anchor_id, "height": height }))
        .into_response()
}

async fn batch(Query(q): Query<HashMap<String, String>>) -> Json<Vec<String>> {
    let size: usize = q
        .get("size")
        .and_then(|s| s.parse().ok())
        .unwrap_or(16)
        .min(100_000);
    Json((0..size).map(|i| format!("demo-receipt-{i}")).collect())
}

/// The ledger's routes.
pub fn router(config: LedgerConfig) -> Router {
    let ledger = Arc::new(Ledger {
        config,
        requests: AtomicU64::new(0),
        height: AtomicU64::new(0),
    });
    Router::new()
        .route("/anchor", post(anchor))
        .route("/batch", get(batch))
        .with_state(ledger)
}
