//! Loading a plugin: read, refuse what is not a component, compile (through
//! the engine's cache, off the async runtime), link against the host's
//! capabilities, and ask it to `describe()` itself in a sandboxed run.
//!
//! A plugin that fails any step is refused with an error naming the file
//! and the step; nothing of it is kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Store};

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
    /// The code runs use: baseline at first when the plugin had to be
    /// compiled, swapped for optimized code once that is compiled.
    pub(crate) code: Arc<ArcSwap<Code>>,
    validator: Option<jsonschema::Validator>,
    /// The host interfaces the component imports (`http`, `icmp`, ...):
    /// its probes get grants for these alone.
    pub imports: Vec<String>,
    /// Compile (or cache load) time.
    pub compile_time: Duration,
}

/// Compiled code of a plugin and the engine its stores must come from.
pub(crate) struct Code {
    pub(crate) engine: Engine,
    pub(crate) pre: ProbePre<RunState>,
    /// False while the plugin runs on the baseline tier.
    pub(crate) optimized: bool,
}

impl Plugin {
    /// Whether runs use optimized (cranelift) code yet.
    pub fn optimized(&self) -> bool {
        self.code.load().optimized
    }
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

/// The names of the host interfaces (`wasmprobe:plugin/NAME@VERSION`) a
/// component imports. A component imports only the interfaces its code
/// calls, so a plugin that never pings has no `icmp` import.
fn host_imports(component: &Component, engine: &Engine) -> Vec<String> {
    let ty = component.component_type();
    let mut names: Vec<String> = ty
        .imports(engine)
        .filter_map(|(name, _)| {
            let rest = name.strip_prefix("wasmprobe:plugin/")?;
            Some(rest.split('@').next().unwrap_or(rest).to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    names
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
        let _held = engine.hold_optimizing();
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
            let digest = sha256.clone();
            let mut task = tokio::task::spawn_blocking(move || {
                let compiled = compile_first(&engine, &bytes, &digest);
                // What the compile or load freed on this thread goes back
                // to the system now: mimalloc purges a thread's free pages
                // only from that thread, and a blocking thread that loaded
                // a plugin may do nothing more before it ends.
                crate::heap::release_free();
                (compiled, bytes)
            });
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
        let (compiled, bytes) = compiled;
        let (component, optimized) = compiled.map_err(|e| PluginError::Compile {
            plugin: plugin.clone(),
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })?;
        let compile_time = started.elapsed();

        let (tier_engine, linker) = match (optimized, &engine.baseline) {
            (false, Some(tier)) => (&tier.engine, &tier.linker),
            _ => (&engine.engine, &engine.linker),
        };
        let imports = host_imports(&component, tier_engine);
        let pre = linker
            .instantiate_pre(&component)
            .and_then(ProbePre::new)
            .map_err(|e| PluginError::Link {
                plugin: plugin.clone(),
                path: path.to_path_buf(),
                message: format!("{e:#}"),
            })?;
        let code = Code {
            engine: tier_engine.clone(),
            pre,
            optimized,
        };

        let linked = started.elapsed();
        let info = describe(&code, &plugin).await?;
        let described = started.elapsed();
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
        tracing::debug!(
            plugin = %plugin,
            optimized,
            compile_ms = compile_time.as_millis() as u64,
            linked_ms = linked.as_millis() as u64,
            described_ms = described.as_millis() as u64,
            ready_ms = started.elapsed().as_millis() as u64,
            "plugin load steps"
        );
        let code = Arc::new(ArcSwap::from_pointee(code));
        if !optimized {
            optimize_later(engine.clone(), plugin, bytes, sha256.clone(), code.clone());
        }
        Ok(Plugin {
            name: name.clone(),
            path: path.to_path_buf(),
            sha256,
            info,
            code,
            validator,
            imports,
            compile_time,
        })
    }

    /// Whether the component imports the host interface `name`.
    pub fn imports(&self, name: &str) -> bool {
        self.imports.iter().any(|i| i == name)
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

/// The plugin's code as fast as it can be had: optimized from the cache,
/// else baseline (when the engine has that tier), else optimized compiled
/// now (and cached). The flag says whether it is optimized.
fn compile_first(
    engine: &WasmEngine,
    wasm: &[u8],
    digest: &str,
) -> wasmtime::Result<(Component, bool)> {
    if let Some(cache) = &engine.cache
        && let Some(component) = cache.load(&engine.engine, digest)
    {
        return Ok((component, true));
    }
    let _compiling = crate::heap::busy();
    if let Some(tier) = &engine.baseline {
        match Component::new(&tier.engine, wasm) {
            Ok(component) => return Ok((component, false)),
            // A proposal winch lacks: cranelift compiles it below.
            Err(e) => tracing::debug!("baseline compile refused, compiling optimized: {e:#}"),
        }
    }
    compile_optimized(engine, wasm, digest).map(|c| (c, true))
}

fn compile_optimized(
    engine: &WasmEngine,
    wasm: &[u8],
    digest: &str,
) -> wasmtime::Result<Component> {
    let _compiling = crate::heap::busy();
    match &engine.cache {
        Some(cache) => cache.compile_and_store(&engine.engine, wasm, digest),
        None => Component::new(&engine.engine, wasm),
    }
}

/// The background optimizing compile: in a child process when the engine
/// has one (see [`super::compiler_process`]), else here; the flag says
/// whether a child compiled it. When the child could not start or could
/// not hand its code over (a full cache), the compile runs here instead;
/// not when it ran and failed or hung, since what failed there (a
/// compiler crash on hostile code) would fail here too.
fn compile_in_background(
    engine: &WasmEngine,
    wasm: &[u8],
    digest: &str,
) -> wasmtime::Result<(Component, bool)> {
    if let (Some(child), Some(cache)) = (&engine.compiler_process, &engine.cache) {
        match child.compile(&engine.engine, engine.pool, cache, wasm, digest) {
            Ok(component) => return Ok((component, true)),
            Err(e) if e.compile_may_succeed_here() => {
                tracing::warn!("compiling in this process instead: {e}");
            }
            Err(e) => return Err(wasmtime::Error::new(e)),
        }
    }
    compile_optimized(engine, wasm, digest).map(|c| (c, false))
}

/// How long an optimizing compile waits for holds to end, at most.
const OPTIMIZE_WAIT: Duration = Duration::from_secs(30);

/// Compiles the optimized code on a thread of its own, once nothing holds
/// it back ([`WasmEngine::hold_optimizing`]: loads and start-up, which it
/// would slow), and moves the plugin's runs to it; a run already going
/// finishes on the baseline code.
fn optimize_later(
    engine: Arc<WasmEngine>,
    plugin: String,
    wasm: Vec<u8>,
    digest: String,
    code: Arc<ArcSwap<Code>>,
) {
    let spawned = std::thread::Builder::new()
        .name("wasmprobe-optimize".into())
        .spawn(move || {
            let waited = Instant::now();
            while engine.holds.load(std::sync::atomic::Ordering::Acquire) > 0
                && waited.elapsed() < OPTIMIZE_WAIT
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _one_at_a_time = engine.optimizing.lock().unwrap_or_else(|e| e.into_inner());
            let started = Instant::now();
            let pre = compile_in_background(&engine, &wasm, &digest).and_then(|(c, child)| {
                Ok((ProbePre::new(engine.linker.instantiate_pre(&c)?)?, child))
            });
            match pre {
                Ok((pre, child_process)) => {
                    code.store(Arc::new(Code {
                        engine: engine.engine.clone(),
                        pre,
                        optimized: true,
                    }));
                    tracing::info!(
                        plugin = %plugin,
                        compile_ms = started.elapsed().as_millis() as u64,
                        child_process,
                        "plugin optimized: its runs use cranelift's code from now on"
                    );
                    // The compiler's working memory (tens of MiB, freed
                    // in small blocks) goes back to the system.
                    crate::heap::release_free();
                }
                Err(e) => tracing::warn!(
                    plugin = %plugin,
                    "optimized compile failed; the plugin keeps its baseline code: {e:#}"
                ),
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the optimizing compile: {e}");
    }
}

async fn describe(code: &Code, plugin: &str) -> Result<PluginInfo, PluginError> {
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
    let mut store = Store::new(&code.engine, data);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(WasmEngine::ticks(DESCRIBE_TIMEOUT));
    store.epoch_deadline_trap();
    let call = async {
        let instance = code.pre.instantiate_async(&mut store).await?;
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
