//! A field service in three replicas, each with its own `/metrics`, the
//! way report B's pods exported `psi_field_*` gauges; replica `c` drifts:
//! its prediction error is 14 times the others', the failure that mattered
//! there. Every family's HELP says DEMO, and every series carries
//! `demo="true"`, so nobody takes it for a real service.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// What one simulated replica reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    pub name: &'static str,
    pub density: f64,
    pub prediction_error: f64,
}

/// The demo's replicas: `a` and `b` agree, `c` drifts 14x on prediction
/// error (0.021 and 0.022 against 0.301: max/min 14.33, 13.68 times the
/// median).
pub const REPLICAS: [Replica; 3] = [
    Replica {
        name: "a",
        density: 0.81,
        prediction_error: 0.021,
    },
    Replica {
        name: "b",
        density: 0.80,
        prediction_error: 0.022,
    },
    Replica {
        name: "c",
        density: 0.82,
        prediction_error: 0.301,
    },
];

/// The replica's exposition: the two gauges and when it last updated them.
pub fn exposition(r: &Replica, now: f64) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        out.push_str(&format!(
            "# HELP {name} DEMO simulator: {help}\n# TYPE {name} gauge\n{name}{{demo=\"true\",replica=\"{}\"}} {value}\n",
            r.name
        ));
    };
    gauge("psi_field_density", "field density.", r.density);
    gauge(
        "psi_field_prediction_error",
        "prediction error of the field model.",
        r.prediction_error,
    );
    gauge(
        "psi_field_last_update_timestamp_seconds",
        "when the replica last updated its field, in Unix seconds.",
        now.floor(),
    );
    out
}

/// The replica's `/metrics`.
pub fn router(replica: Replica) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let r = replica.clone();
            async move {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    exposition(&r, now),
                )
                    .into_response()
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_c_drifts_fourteen_times() {
        // Max over min, as report B's alert compared the pods.
        let ratio = REPLICAS[2].prediction_error / REPLICAS[0].prediction_error;
        assert!((14.0..=14.5).contains(&ratio), "{ratio}");
        let text = exposition(&REPLICAS[2], 1_796_000_000.5);
        assert!(text.contains("psi_field_prediction_error{demo=\"true\",replica=\"c\"} 0.301"));
        assert!(text.contains(
            "psi_field_last_update_timestamp_seconds{demo=\"true\",replica=\"c\"} 1796000000"
        ));
        assert!(text.contains("DEMO simulator"));
    }
}
