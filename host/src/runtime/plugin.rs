//! Loading a plugin: read, refuse what is not a component, compile (through
//! the engine's cache, off the async runtime), link against the host's
//! capabilities, and ask it to `describe()` itself in a sandboxed run.
//!
//! A plugin that fails any step is refused with an error naming the file
//! and the step; nothing of it is kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::Component;

use super::engine::WasmEngine;
use super::store::{Grants, RunState};
use crate::bindings::ProbePre;
use crate::bindings::wasmprobe::plugin::types::MetricFamily;
use crate::config::{Limits, PluginName};
use crate::hostcalls::RunScope;

/// When a compile still running gets its first progress line, and then
/// how often.
const PROGRESS_AFTER: Duration = Duration::from_secs(2);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub use crate::files::MAX_WASM_SIZE;
use crate::files::{self, FileError};
/// Limits of the `describe()` call.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
const DESCRIBE_MEMORY: u64 = 64 << 20;

/// Why a plugin was refused.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {plugin:?}: cannot read {path}: {source}")]
    Read {
        plugin: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin {plugin:?}: {path} is {size} bytes, above the {MAX_WASM_SIZE}-byte limit")]
    TooLarge {
        plugin: String,
        path: PathBuf,
        size: u64,
    },
    #[error("plugin {plugin:?}: {path} is not a regular file")]
    NotRegular { plugin: String, path: PathBuf },
    #[error(
        "plugin {plugin:?}: {path} has sha256 {actual}, but its package pins {pinned} (changed after the config was checked?)"
    )]
    PinMismatch {
        plugin: String,
        path: PathBuf,
        pinned: String,
        actual: String,
    },
    #[error(
        "plugin {plugin:?}: {path} is a core WebAssembly module, not a component; build it for wasm32-wasip2"
    )]
    CoreModule { plugin: String, path: PathBuf },
    #[error("plugin {plugin:?}: {path} is not a WebAssembly component")]
    NotWasm { plugin: String, path: PathBuf },
    #[error("plugin {plugin:?}: cannot compile {path}: {message}")]
    Compile {
        plugin: String,
        path: PathBuf,
        message: String,
    },
    #[error("plugin {plugin:?}: {path} does not fit the wasmprobe:plugin@0.1.0 world: {message}")]
    Link {
        plugin: String,
        path: PathBuf,
        message: String,
    },
    #[error("plugin {plugin:?}: describe() failed: {message}")]
    Describe { plugin: String, message: String },
    #[error("plugin {plugin:?}: {message}")]
    Declaration { plugin: String, message: String },
}

/// What a plugin says of itself.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    /// The metric families as declared; the exposition validates them.
    pub families: Vec<MetricFamily>,
    /// `None` when the plugin declares no schema (any config is accepted).
    pub schema: Option<serde_json::Value>,
}

/// A loaded plugin, ready to instantiate per run.
pub struct Plugin {
    pub name: PluginName,
    pub path: PathBuf,
    pub sha256: String,
    pub info: PluginInfo,
    pub(crate) pre: ProbePre<RunState>,
    validator: Option<jsonschema::Validator>,
    /// Compile (or cache load) time.
    pub compile_time: Duration,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// The kind of bytes a `.wasm` file holds.
fn wasm_kind(bytes: &[u8]) -> Option<bool> {
    // Both start with `\0asm`; the 4-byte version/layer field tells a core
    // module (1, layer 0) from a component (layer 1).
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return None;
    }
    Some(bytes[6..8] == [1, 0])
}

impl Plugin {
    /// Loads and describes a plugin. Compilation runs on a blocking thread.
    pub async fn load(
        engine: &Arc<WasmEngine>,
        name: &PluginName,
        path: &Path,
        pinned: Option<&str>,
    ) -> Result<Plugin, PluginError> {
        let plugin = name.to_string();
        // Opened once: a FIFO or a device is refused without blocking, and
        // the bytes hashed below are the bytes compiled.
        let read = {
            let path = path.to_path_buf();
            tokio::task::spawn_blocking(move || files::read_regular(&path, MAX_WASM_SIZE)).await
        };
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(FileError::TooLarge { .. })) => {
                return Err(PluginError::TooLarge {
                    plugin,
                    path: path.to_path_buf(),
                    size: std::fs::metadata(path).map_or(MAX_WASM_SIZE + 1, |m| m.len()),
                });
            }
            Ok(Err(FileError::NotRegular { .. })) => {
                return Err(PluginError::NotRegular {
                    plugin,
                    path: path.to_path_buf(),
                });
            }
            Ok(Err(FileError::Io { source, .. })) => {
                return Err(PluginError::Read {
                    plugin,
                    path: path.to_path_buf(),
                    source,
                });
            }
            Err(e) => {
                return Err(PluginError::Read {
                    plugin,
                    path: path.to_path_buf(),
                    source: std::io::Error::other(e.to_string()),
                });
            }
        };
        match wasm_kind(&bytes) {
            None => {
                return Err(PluginError::NotWasm {
                    plugin,
                    path: path.to_path_buf(),
                });
            }
            Some(false) => {
                return Err(PluginError::CoreModule {
                    plugin,
                    path: path.to_path_buf(),
                });
            }
            Some(true) => {}
        }
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(pinned) = pinned
            && pinned != sha256
        {
            return Err(PluginError::PinMismatch {
                plugin,
                path: path.to_path_buf(),
                pinned: pinned.to_string(),
                actual: sha256,
            });
        }

        let started = Instant::now();
        let compiled = {
            let engine = engine.clone();
            let size = bytes.len();
            let mut task =
                tokio::task::spawn_blocking(move || Component::new(&engine.engine, &bytes));
            // A first compile of a large component (Python carries its
            // interpreter) takes seconds: say so rather than go silent.
            let first = tokio::time::Instant::now() + PROGRESS_AFTER;
            let mut tick = tokio::time::interval_at(first, PROGRESS_EVERY);
            let joined = loop {
                tokio::select! {
                    joined = &mut task => break joined,
                    _ = tick.tick() => tracing::info!(
                        target: "wasmprobe::progress",
                        plugin = %plugin,
                        size_mb = format!("{:.1}", size as f64 / 1e6),
                        seconds = started.elapsed().as_secs(),
                        "compiling plugin (once: later loads come from the compile cache)"
                    ),
                }
            };
            joined.map_err(|e| PluginError::Compile {
                plugin: plugin.clone(),
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
        };
        let component = compiled.map_err(|e| PluginError::Compile {
            plugin: plugin.clone(),
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })?;
        let compile_time = started.elapsed();

        let instance_pre =
            engine
                .linker
                .instantiate_pre(&component)
                .map_err(|e| PluginError::Link {
                    plugin: plugin.clone(),
                    path: path.to_path_buf(),
                    message: format!("{e:#}"),
                })?;
        let pre = ProbePre::new(instance_pre).map_err(|e| PluginError::Link {
            plugin: plugin.clone(),
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })?;

        let info = describe(engine, &pre, &plugin).await?;
        let validator =
            match &info.schema {
                Some(schema) => Some(jsonschema::validator_for(schema).map_err(|e| {
                    PluginError::Declaration {
                        plugin: plugin.clone(),
                        message: format!("config schema is not a valid JSON Schema: {e}"),
                    }
                })?),
                None => None,
            };
        Ok(Plugin {
            name: name.clone(),
            path: path.to_path_buf(),
            sha256,
            info,
            pre,
            validator,
            compile_time,
        })
    }

    /// Checks a probe's config against the plugin's schema: one
    /// (JSON pointer, message) per problem.
    /// The declared key nearest to a misspelt `key` of the object at
    /// `pointer`, when the schema lists its properties plainly.
    fn closest_key(&self, pointer: &str, key: &str) -> Option<String> {
        let mut schema = self.info.schema.as_ref()?;
        for part in pointer.split('/').skip(1) {
            schema = schema.get("properties")?.get(part)?;
        }
        schema
            .get("properties")?
            .as_object()?
            .keys()
            .map(|k| (strsim::damerau_levenshtein(k, key), k))
            .filter(|(d, k)| *d <= 2.max(k.len() / 4))
            .min()
            .map(|(_, k)| k.clone())
    }

    pub fn validate_config(&self, config: &serde_json::Value) -> Vec<(String, String)> {
        let Some(v) = &self.validator else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in v.iter_errors(config) {
            let at = e.instance_path().to_string();
            match e.kind() {
                // Each unknown key at its own line, not its table's.
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for key in unexpected {
                        let escaped = key.replace('~', "~0").replace('/', "~1");
                        let hint = self
                            .closest_key(&at, key)
                            .map(|k| format!("; did you mean {k:?}?"))
                            .unwrap_or_default();
                        out.push((
                            format!("{at}/{escaped}"),
                            format!(
                                "unknown key {key:?} (not in the plugin's config schema){hint}"
                            ),
                        ));
                    }
                }
                _ => out.push((at, e.to_string())),
            }
        }
        out
    }
}

async fn describe(
    engine: &WasmEngine,
    pre: &ProbePre<RunState>,
    plugin: &str,
) -> Result<PluginInfo, PluginError> {
    let fail = |message: String| PluginError::Describe {
        plugin: plugin.to_string(),
        message,
    };
    let scope = RunScope {
        virtual_host: None,
        probe: format!("describe:{plugin}").into(),
        deadline: Instant::now() + DESCRIBE_TIMEOUT,
        limits: Limits {
            memory: DESCRIBE_MEMORY,
            log_lines: 10,
            timeout: DESCRIBE_TIMEOUT,
            ..Limits::default()
        },
        revealed: Default::default(),
        tape: None,
        state: None,
        usage: Default::default(),
    };
    // No grants: a plugin reaches nothing while describing itself.
    let data = RunState::new(scope, &Grants::default());
    let mut store = Store::new(&engine.engine, data);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(WasmEngine::ticks(DESCRIBE_TIMEOUT));
    store.epoch_deadline_trap();
    let call = async {
        let instance = pre.instantiate_async(&mut store).await?;
        instance
            .wasmprobe_plugin_plugin()
            .call_describe(&mut store)
            .await
    };
    let raw = tokio::time::timeout(DESCRIBE_TIMEOUT, call)
        .await
        .map_err(|_| fail(format!("did not return within {DESCRIBE_TIMEOUT:?}")))?
        .map_err(|e| fail(format!("{e:#}")))?;

    let schema = if raw.config_schema.trim().is_empty() {
        None
    } else {
        Some(
            serde_json::from_str(&raw.config_schema).map_err(|e| PluginError::Declaration {
                plugin: plugin.to_string(),
                message: format!("config schema is not JSON: {e}"),
            })?,
        )
    };
    Ok(PluginInfo {
        name: raw.name,
        version: raw.version,
        families: raw.families,
        schema,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasm_kinds() {
        assert_eq!(wasm_kind(b"\0asm\x01\0\0\0"), Some(false));
        assert_eq!(wasm_kind(b"\0asm\x0d\0\x01\0"), Some(true));
        assert_eq!(wasm_kind(b"hello world"), None);
        assert_eq!(wasm_kind(b"\0as"), None);
    }
}
