//! Write wasmprobe probe plugins in Rust.
//!
//! A plugin is a type implementing [`Plugin`]: its name, its typed config
//! (deserialised with serde, its JSON Schema derived with schemars so
//! `wasmprobe check` can validate probes before they run), the metric
//! families it may emit, and `run`. [`plugin!`] turns that type into the
//! component's exports.
//!
//! ```ignore
//! use wasmprobe_sdk::{Context, Outcome, Plugin, ProbeError, family, plugin};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema, Default)]
//! #[serde(deny_unknown_fields, default)]
//! struct Config { expect: u16 }
//!
//! struct Ping;
//! impl Plugin for Ping {
//!     type Config = Config;
//!     const NAME: &'static str = "ping";
//!     const VERSION: &'static str = env!("CARGO_PKG_VERSION");
//!     fn families() -> Vec<family::Family> {
//!         vec![family::gauge("ping_status", "Status code seen.")]
//!     }
//!     fn run(ctx: &Context, config: Config) -> Result<wasmprobe_sdk::Report, ProbeError> {
//!         let resp = wasmprobe_sdk::http::get(&ctx.target).send();
//!         let mut out = Outcome::new();
//!         let status = resp.as_ref().map_or(0, |r| r.status);
//!         out.set("ping_status", status as f64);
//!         Ok(out.finish(status == config.expect, None))
//!     }
//! }
//! plugin!(Ping);
//! ```
//!
//! Logic that decides pass/fail is best kept in modules that never call a
//! host capability, so it can be unit-tested natively with `cargo test`.

// The one `generate!` of the SDK: every plugin shares these bindings.
wit_bindgen::generate!({
    world: "probe",
    path: "../../wit",
    pub_export_macro: true,
    export_macro_name: "export_plugin",
    default_bindings_module: "wasmprobe_sdk",
});

pub mod blackbox;
pub mod dns;
pub mod family;
pub mod http;
pub mod icmp;
pub mod log;
mod outcome;
pub mod secrets;
pub mod state;
pub mod tcp;

pub use outcome::Outcome;
pub use wasmprobe::plugin::types::{
    Label, MetricFamily, MetricKind, PluginInfo, ProbeContext, ProbeError, Report, Sample,
};

/// What a run is asked to do, with the probe's config already parsed.
pub type Context = ProbeContext;

/// A probe plugin.
pub trait Plugin {
    /// The probe's `config` table. Use `#[serde(deny_unknown_fields)]` so
    /// typos are refused, and defaults for optional keys.
    type Config: serde::de::DeserializeOwned + schemars::JsonSchema;
    const NAME: &'static str;
    const VERSION: &'static str;
    /// Every family `run` may emit; anything else is dropped by the host.
    fn families() -> Vec<MetricFamily>;
    fn run(ctx: &Context, config: Self::Config) -> Result<Report, ProbeError>;
}

/// `describe()` for a plugin type: called by [`plugin!`].
pub fn describe<P: Plugin>() -> PluginInfo {
    let schema = schemars::schema_for!(P::Config);
    PluginInfo {
        name: P::NAME.to_string(),
        version: P::VERSION.to_string(),
        families: P::families(),
        config_schema: serde_json::to_string(&schema).unwrap_or_default(),
    }
}

/// `run()` for a plugin type: parses the config, then calls the plugin.
pub fn run<P: Plugin>(ctx: ProbeContext) -> Result<Report, ProbeError> {
    let config: P::Config =
        serde_json::from_str(&ctx.config).map_err(|e| ProbeError::InvalidConfig(e.to_string()))?;
    P::run(&ctx, config)
}

/// Exports a [`Plugin`] type as the component's `plugin` interface.
///
/// The exports exist only when building for WebAssembly, so the same crate
/// builds natively for `cargo test` of its logic.
#[macro_export]
macro_rules! plugin {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        pub struct WasmprobeExport;
        #[cfg(target_arch = "wasm32")]
        impl $crate::exports::wasmprobe::plugin::plugin::Guest for WasmprobeExport {
            fn describe() -> $crate::PluginInfo {
                $crate::describe::<$ty>()
            }
            fn run(ctx: $crate::ProbeContext) -> Result<$crate::Report, $crate::ProbeError> {
                $crate::run::<$ty>(ctx)
            }
        }
        #[cfg(target_arch = "wasm32")]
        $crate::export_plugin!(WasmprobeExport with_types_in $crate);
        // Natively, type-check the plugin (and mark it used) without exports.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> $crate::PluginInfo = $crate::describe::<$ty>;
    };
}
