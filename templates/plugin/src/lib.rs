//! {{name}}: a wasmprobe probe plugin.
//!
//! Build: `cargo build --release --target wasm32-wasip2`, then copy
//! `target/wasm32-wasip2/release/{{crate}}.wasm` into a plugin directory as
//! `{{name}}.wasm`.

use wasmprobe_sdk::family::{FamilyExt, gauge};
use wasmprobe_sdk::http::RequestExt;
use wasmprobe_sdk::{Context, MetricFamily, Outcome, Plugin, ProbeError, Report, plugin};

/// The probe's `config` table in probes.toml.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// Status code that means healthy.
    expect_status: u16,
    /// Text the body must contain (empty: anything).
    expect_body: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            expect_status: 200,
            expect_body: String::new(),
        }
    }
}

struct Probe;

impl Plugin for Probe {
    type Config = Config;
    const NAME: &'static str = "{{name}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn families() -> Vec<MetricFamily> {
        vec![
            gauge("{{prefix}}_up", "Whether the target answered as expected."),
            gauge("{{prefix}}_status_code", "HTTP status of the answer (0: none)."),
            gauge("{{prefix}}_response_seconds", "Time to the full answer.").unit("seconds"),
        ]
    }

    fn run(ctx: &Context, config: Config) -> Result<Report, ProbeError> {
        let answer = wasmprobe_sdk::http::get(&ctx.target).send();
        let (status, seconds, body_ok) = match &answer {
            Ok(r) => {
                let t = &r.timings;
                let body = String::from_utf8_lossy(&r.body);
                let seconds = t.resolve + t.connect + t.tls + t.processing + t.transfer;
                (r.status, seconds, body.contains(&config.expect_body))
            }
            Err(_) => (0, 0.0, false),
        };
        let up = status == config.expect_status && body_ok;
        let mut out = Outcome::new();
        out.set("{{prefix}}_up", f64::from(u8::from(up)))
            .set("{{prefix}}_status_code", f64::from(status))
            .set("{{prefix}}_response_seconds", seconds);
        let why = match answer {
            Err(e) => Some(e.message),
            Ok(_) if !up => Some(format!("status {status}, body match {body_ok}")),
            Ok(_) => None,
        };
        Ok(out.finish(up, why))
    }
}

plugin!(Probe);
