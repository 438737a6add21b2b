//! A treaty partner: `GET|POST /order` answers `{"order": N, "filled":
//! bool}` after a fixed latency, signed with Ed25519 over the body in the
//! `x-treaty-signature` header (base64), with configurable shares of
//! unfilled orders, bad signatures and requests that never get an answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::any;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};

use super::in_share;

/// The demo partner's signing key seed. Public, for the demo only.
pub const DEMO_SEED: [u8; 32] = *b"wasmprobe demo partner key 0001!";

/// How the simulated partner behaves.
#[derive(Debug, Clone)]
pub struct PartnerConfig {
    /// Share of orders filled (the rest answer `"filled": false`).
    pub fill_rate: f64,
    pub latency: Duration,
    /// Share of responses signed over the wrong bytes.
    pub bad_signature_share: f64,
    /// Share of requests that never get an answer.
    pub hang_share: f64,
    pub seed: [u8; 32],
}

impl Default for PartnerConfig {
    fn default() -> Self {
        // Report B's partner: 95 % filled, ~118.7 ms, 95 % provenance.
        PartnerConfig {
            fill_rate: 0.95,
            latency: Duration::from_micros(118_700),
            bad_signature_share: 0.05,
            hang_share: 0.0,
            seed: DEMO_SEED,
        }
    }
}

impl PartnerConfig {
    /// The public key a probe verifies with, base64.
    pub fn public_key(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(
            SigningKey::from_bytes(&self.seed)
                .verifying_key()
                .to_bytes(),
        )
    }
}

struct Partner {
    config: PartnerConfig,
    key: SigningKey,
    orders: AtomicU64,
}

async fn order(State(p): State<Arc<Partner>>) -> impl IntoResponse {
    let i = p.orders.fetch_add(1, Ordering::Relaxed);
    if in_share(i, p.config.hang_share) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    tokio::time::sleep(p.config.latency).await;
    let filled = !in_share(i, 1.0 - p.config.fill_rate);
    let body = format!("{{\"order\":{i},\"filled\":{filled}}}");
    let signed_over = if in_share(i, p.config.bad_signature_share) {
        format!("{body} ")
    } else {
        body.clone()
    };
    let signature = base64::engine::general_purpose::STANDARD
        .encode(p.key.sign(signed_over.as_bytes()).to_bytes());
    (
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::HeaderName::from_static("x-treaty-signature"),
                signature,
            ),
        ],
        body,
    )
}

/// The partner's routes.
pub fn router(config: PartnerConfig) -> Router {
    let partner = Arc::new(Partner {
        key: SigningKey::from_bytes(&config.seed),
        config,
        orders: AtomicU64::new(0),
    });
    Router::new()
        .route("/order", any(order))
        .with_state(partner)
}
