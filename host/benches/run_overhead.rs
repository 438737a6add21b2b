//! Cost of one probe run of an empty plugin: a fresh store, instantiation
//! from the pooling allocator, the `run()` call, teardown. Prints numbers;
//! asserts nothing.
//!
//! `cargo bench --bench run_overhead` (needs `scripts/build-plugins --fixtures`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmprobe::config::{Limits, PluginName};
use wasmprobe::runtime::engine::PoolSize;
use wasmprobe::runtime::record::RunResult;
use wasmprobe::runtime::run::{RunSpec, run};
use wasmprobe::runtime::store::Grants;
use wasmprobe::runtime::{Plugin, WasmEngine};

fn main() -> anyhow::Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/fixtures/misbehave.wasm");
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: run scripts/build-plugins --fixtures",
        path.display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let engine = Arc::new(WasmEngine::new(
        PoolSize {
            instances: 8,
            max_memory: 64 << 20,
        },
        None,
    )?);
    let name = PluginName::try_from("misbehave".to_string()).map_err(anyhow::Error::msg)?;
    let plugin = rt.block_on(Plugin::load(&engine, &name, &path, None))?;
    let grants = Grants::default();
    let spec = || RunSpec {
        probe: "bench",
        target: "http://127.0.0.1:9/",
        config: r#"{"behaviour":"empty"}"#,
        limits: Limits::default(),
        grants: &grants,
        state: None,
        tape: None,
        hostname: None,
    };
    let iterations = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000usize);
    rt.block_on(async {
        for _ in 0..1000 {
            run(&plugin, spec()).await;
        }
        let mut each = Vec::with_capacity(iterations);
        let started = Instant::now();
        for _ in 0..iterations {
            let t = Instant::now();
            let r = run(&plugin, spec()).await;
            each.push(t.elapsed());
            assert_eq!(r.result, RunResult::Success, "{:?}", r.message);
        }
        let total = started.elapsed();
        each.sort();
        let pct = |p: f64| each[((each.len() as f64 * p) as usize).min(each.len() - 1)];
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!("empty plugin run (fresh store + instantiate + run() + drop), {iterations} runs:");
        println!(
            "  mean {:.1} us  p50 {:.1} us  p99 {:.1} us  max {:.1} us",
            us(total) / iterations as f64,
            us(pct(0.5)),
            us(pct(0.99)),
            us(pct(1.0))
        );
        println!(
            "  {:.0} runs/s on one thread",
            iterations as f64 / total.as_secs_f64()
        );
    });
    Ok(())
}
