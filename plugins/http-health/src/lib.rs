//! http-health: blackbox_exporter's http prober as a wasmprobe plugin.
//!
//! Glue only: the checks and the metrics live in [`check`], credentials in
//! [`auth`], a run in [`run`]; here [`run::Io`] is the SDK's host calls.

pub mod auth;
pub mod check;
pub mod config;
pub mod json_cel;
pub mod run;

use std::time::{SystemTime, UNIX_EPOCH};

use wasmprobe_sdk::http::{self, HttpError, Request, Response};
use wasmprobe_sdk::state::{self, StateError};
use wasmprobe_sdk::{Context, MetricFamily, Plugin, ProbeError, Report, log, plugin, secrets};

struct HttpHealth;

impl Plugin for HttpHealth {
    type Config = config::Config;
    const NAME: &'static str = "http-health";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn families() -> Vec<MetricFamily> {
        check::families()
    }

    fn run(ctx: &Context, config: config::Config) -> Result<Report, ProbeError> {
        let check = check::Check::new(config).map_err(ProbeError::InvalidConfig)?;
        Ok(run::run(&check, &ctx.target, &Sdk))
    }
}

/// The host, through the SDK.
struct Sdk;

impl run::Io for Sdk {
    fn secret(&self, name: &str) -> Option<String> {
        secrets::get(name)
    }

    fn state_get(&self, key: &str) -> Option<Vec<u8>> {
        state::get(key)
    }

    fn state_set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        state::set(key, value).map_err(|e| match e {
            StateError::QuotaExceeded => "the probe's state is full (limits.state_bytes)".into(),
            StateError::InvalidKey => format!("invalid state key {key:?}"),
        })
    }

    fn state_delete(&self, key: &str) {
        state::delete(key);
    }

    fn send(&self, request: &Request) -> Result<Response, HttpError> {
        http::send(request)
    }

    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn note(&self, message: &str) {
        log::info(message);
    }
}

plugin!(HttpHealth);
