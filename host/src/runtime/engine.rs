//! The process's wasmtime engines (the optimizing one, and a baseline
//! tier plugins may start on) and their epoch ticker.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::cache::CompileCache;
use super::compiler_process::CompilerProcess;

use super::limiter::{MAX_INSTANCES, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES};
use super::store::RunState;

/// How often the epoch advances: the granularity of run deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot configure the WebAssembly engine: {0}")]
    Config(String),
    #[error("cannot use compile cache directory {dir}: {message}")]
    Cache { dir: String, message: String },
    #[error("cannot link host capabilities: {0}")]
    Link(String),
}

/// Bytes of each memory and table slot kept resident between runs when
/// dirtied pages can be found with PAGEMAP_SCAN.
const KEEP_RESIDENT: usize = 1 << 20;

/// Sizes of the engine's instance pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    /// Runs that may be instantiated at once (scheduled, on-demand, loads).
    pub instances: u32,
    /// Largest linear memory any run may reach.
    pub max_memory: u64,
}

/// The engine, the linker with every host capability, and the ticker.
pub struct WasmEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<RunState>,
    /// Compiled plugins kept between starts; `None` compiles every time.
    pub(crate) cache: Option<CompileCache>,
    /// What the pool was sized for (a compiling child process needs it).
    pub(crate) pool: PoolSize,
    /// Where the background optimizing compiles run when not in this
    /// process (see [`WasmEngine::optimize_in_child`]).
    pub(crate) compiler_process: Option<CompilerProcess>,
    /// The fast-compiling tier a plugin starts on when its optimized code
    /// is not cached (`run` only; see [`WasmEngine::tiered`]).
    pub(crate) baseline: Option<Tier>,
    /// Holds taken by [`WasmEngine::hold_optimizing`].
    pub(crate) holds: std::sync::atomic::AtomicUsize,
    /// Held by an optimizing compile: they run one at a time (each already
    /// compiles its functions on every core), so a first start with many
    /// plugins holds one compiler's working memory, not one per plugin.
    pub(crate) optimizing: std::sync::Mutex<()>,
    /// Held for its `Drop`: stops the ticker thread with the engine.
    _ticker: Ticker,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine").finish_non_exhaustive()
    }
}

/// An engine and its linker: code compiled by one runs only in stores of
/// the same engine.
pub(crate) struct Tier {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<RunState>,
}

struct Ticker {
    stop: Arc<AtomicBool>,
    /// Engines whose epoch the ticker advances (the baseline tier's joins
    /// when it is made).
    engines: Arc<std::sync::Mutex<Vec<Engine>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl WasmEngine {
    /// Builds the engine. `cache_dir` must be absolute; `None` compiles
    /// every plugin at every start.
    pub fn new(pool: PoolSize, cache_dir: Option<&Path>) -> Result<WasmEngine, EngineError> {
        let config = optimizing_config(pool);
        let engine = Engine::new(&config).map_err(|e| EngineError::Config(format!("{e:#}")))?;
        let cache = match cache_dir {
            Some(dir) => {
                Some(
                    CompileCache::open(&engine, dir).map_err(|e| EngineError::Cache {
                        dir: dir.display().to_string(),
                        message: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        let mut linker = Linker::<RunState>::new(&engine);
        super::store::link(&mut linker).map_err(|e| EngineError::Link(format!("{e:#}")))?;

        let stop = Arc::new(AtomicBool::new(false));
        let engines = Arc::new(std::sync::Mutex::new(vec![engine.clone()]));
        let thread = {
            let engines = engines.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("wasmprobe-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        for e in engines.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                            e.increment_epoch();
                        }
                    }
                })
                .map_err(|e| EngineError::Config(format!("cannot start epoch ticker: {e}")))?
        };
        Ok(WasmEngine {
            engine,
            linker,
            cache,
            pool,
            compiler_process: None,
            baseline: None,
            holds: Default::default(),
            optimizing: Default::default(),
            _ticker: Ticker {
                stop,
                engines,
                thread: Some(thread),
            },
        })
    }

    /// Adds the baseline tier: a plugin whose optimized code is not in the
    /// cache is compiled by winch (a single-pass compiler, about ten times
    /// faster than cranelift) and runs at once, while cranelift compiles it
    /// in the background; its runs move to the optimized code when that is
    /// ready, and the cache keeps only optimized code. Where winch cannot
    /// be used (another CPU architecture) every plugin is compiled
    /// optimized before it runs, as without this call.
    pub fn tiered(mut self) -> WasmEngine {
        let mut config = base_config();
        config.strategy(wasmtime::Strategy::Winch);
        // Winch leaves the component trampolines to cranelift; on this
        // tier they run for seconds at most, so they are not optimized.
        config.cranelift_opt_level(wasmtime::OptLevel::None);
        let made = Engine::new(&config).and_then(|engine| {
            let mut linker = Linker::<RunState>::new(&engine);
            super::store::link(&mut linker)?;
            Ok(Tier { engine, linker })
        });
        match made {
            Ok(tier) => {
                self._ticker
                    .engines
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(tier.engine.clone());
                self.baseline = Some(tier);
            }
            Err(e) => tracing::debug!("no baseline compiler tier: {e:#}"),
        }
        self
    }

    /// Runs the background optimizing compiles of the baseline tier in a
    /// child process (this program; see [`super::compiler_process`]), which
    /// stores the code in the compile cache for this engine to load. The
    /// compiler's working memory and what it leaves behind (30 MiB and more
    /// that a long-running process otherwise keeps) end with the child, and
    /// a compile that crashes, exhausts memory or runs too long takes only
    /// the child down: the plugin keeps running on its baseline code.
    /// Without a compile cache the compiles stay in this process.
    pub fn optimize_in_child(mut self, process: CompilerProcess) -> WasmEngine {
        if self.cache.is_some() && self.baseline.is_some() {
            self.compiler_process = Some(process);
        }
        self
    }

    /// Holds optimizing compiles back (for up to 30 s) until the guard is
    /// dropped: taken around each plugin load and around preparing a whole
    /// config, so that they do not slow the work that keeps probes from
    /// starting.
    pub fn hold_optimizing(&self) -> OptimizingHeld<'_> {
        self.holds.fetch_add(1, Ordering::AcqRel);
        OptimizingHeld(self)
    }

    /// The instance pool's occupancy, for the engine's self-metrics: slots
    /// kept warm between runs and the memory they keep resident are where
    /// an idle engine's memory goes.
    pub fn pool_metrics(&self) -> Option<wasmtime::PoolingAllocatorMetrics> {
        self.engine.pooling_allocator_metrics()
    }

    /// Epoch ticks that cover `d`, plus one for the tick in progress.
    pub(crate) fn ticks(d: Duration) -> u64 {
        (d.as_nanos() / EPOCH_TICK.as_nanos()) as u64 + 1
    }
}

/// See [`WasmEngine::hold_optimizing`].
pub struct OptimizingHeld<'a>(&'a WasmEngine);

impl Drop for OptimizingHeld<'_> {
    fn drop(&mut self) {
        self.0.holds.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The optimizing engine's settings for `pool`. A child process compiling
/// for this engine builds its engine from the same settings, so that the
/// code it stores in the cache is code this engine accepts.
pub(crate) fn optimizing_config(pool: PoolSize) -> Config {
    let mut config = base_config();
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);

    let instances = pool.instances.max(1);
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(instances)
        .total_core_instances(instances * MAX_INSTANCES as u32)
        .total_memories(instances * MAX_MEMORIES as u32)
        .total_tables(instances * MAX_TABLES as u32)
        .total_stacks(instances)
        .max_core_instances_per_component(MAX_INSTANCES as u32)
        .max_memories_per_component(MAX_MEMORIES as u32)
        .max_tables_per_component(MAX_TABLES as u32)
        .max_memory_size(usize::try_from(pool.max_memory).unwrap_or(usize::MAX))
        .table_elements(MAX_TABLE_ELEMENTS)
        .max_unused_warm_slots(instances.min(64))
        // Freed slots are not batched for decommit (wasmtime's default,
        // said here because batches of 64 were used before). A slot in a
        // batch goes back to the pool only when the batch is full, and
        // every freed memory queues an entry: with the scan below an empty
        // one, unless the run dirtied more than 1 MiB or more than 32
        // separate runs of pages; without it, the whole memory. So with
        // batches of 64 an idle engine took a fresh
        // slot for nearly every run and kept each one's memory: the
        // default config after eight minutes had RSS 45.5 against 37.7 MiB
        // and 52 slots mapped against 10. Unbatched, a slot is back in the
        // pool when its run ends and the plugin's next run on that thread
        // shard takes it again. An empty entry costs no system call; a run
        // that dirtied more pays one madvise of its own. /probe throughput
        // did not change (bench/RESULTS.md, 2026-12-07 (night)). Batches
        // never saved system calls where the scan is missing: the one-call
        // batch (process_madvise on itself) needs Linux 6.14.
        .decommit_batch_size(1);
    // Where the kernel can report which pages a run dirtied
    // (PAGEMAP_SCAN, Linux 6.7+), only those are rewritten on reuse and
    // the first MiB of each slot stays resident: no madvise and no page
    // faults for a plugin that stays small. Empty run p50 24 -> 17 us,
    // WASM HTTP probe 0.58 -> 0.78 of native. Without the scan, keeping
    // memory resident would mean a memset of the whole MiB, which is
    // slower than the faults it saves, so slots are decommitted instead.
    let scan = PoolingAllocationConfig::is_pagemap_scan_available();
    if scan {
        pooling
            .pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
    }
    tracing::debug!(
        pagemap_scan = scan,
        "instance slots reset by {}",
        if scan {
            "rewriting dirtied pages"
        } else {
            "decommitting them"
        }
    );
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    config
}

/// Settings both tiers share: a plugin behaves the same on either.
fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // `.eh_frame` for plugin code serves only outside unwinders (gdb, the
    // `backtrace` crate); wasmtime walks wasm frames by frame pointer, and
    // a host call's panic never unwinds through them. Without it both tiers
    // compile less and each loaded plugin registers no frames.
    config.native_unwind_info(false);
    config.max_wasm_stack(512 << 10);
    config.async_stack_size(2 << 20);
    // Component-model async is not part of our contract.
    config.concurrency_support(false);
    config
}
