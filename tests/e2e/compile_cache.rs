//! `wasmprobe compile` fills the compile cache, and the engine never
//! trusts what it finds there: an entry that is not what this wasmtime,
//! with these settings, on this CPU would have written (another version's
//! output, another machine's, or bytes someone put there) is compiled
//! again and replaced, and the plugin runs as if the cache were empty.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{root, said, wasm};

fn compile(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(["compile", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("wasmprobe: {e}"))
}

/// Every regular file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn compile_fills_the_cache_and_a_foreign_entry_is_rebuilt_not_trusted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = dir.path().join("cache");
    let config = dir.path().join("probes.toml");
    std::fs::write(
        &config,
        format!(
            "[engine]\ncache_dir = {cache:?}\n\n[plugins.http-health]\npath = {:?}\n\n[probes.site]\nplugin = \"http-health\"\nschedule = \"*/5 * * * * *\"\ntarget = \"http://127.0.0.1:9/\"\n",
            wasm("plugins", "http-health")
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let first = compile(&config);
    let told = said(&first);
    assert!(first.status.success(), "{told}");
    assert!(told.contains("http-health: "), "{told}");
    assert!(told.contains(": ok (1 probes, 1 plugins"), "{told}");
    let entries = files(&cache);
    assert!(!entries.is_empty(), "compile wrote no cache entry");
    println!("{told}cache entries: {}", entries.len());

    // Every entry replaced by bytes this build never wrote: a compressed
    // stream of another artefact, and garbage.
    let foreign = std::fs::read(root().join("Cargo.toml")).unwrap_or_default();
    for (i, entry) in entries.iter().enumerate() {
        let bytes = if i % 2 == 0 {
            foreign.clone()
        } else {
            vec![0x28, 0xb5, 0x2f, 0xfd, 0, 1, 2, 3, 4, 5, 6, 7]
        };
        std::fs::write(entry, bytes).unwrap_or_else(|e| panic!("{e}"));
    }
    let again = compile(&config);
    let told = said(&again);
    assert!(again.status.success(), "{told}");
    assert!(told.contains(": ok (1 probes, 1 plugins"), "{told}");
    // The planted entries were replaced by what this build compiled.
    let rebuilt: Vec<Vec<u8>> = files(&cache)
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_default())
        .collect();
    assert!(
        rebuilt.iter().any(|b| b.len() > 1000 && *b != foreign),
        "no entry was rebuilt: {:?}",
        rebuilt.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

/// A plugin the cache lacks runs at once on the baseline tier (winch),
/// where the sandbox holds as it does on optimized code: a run that spins
/// ends at its deadline, one that hoards memory traps at its limit, one
/// that recurses without end traps, and no run finds what an earlier one
/// left in memory. It moves to optimized code when that is compiled, and
/// the cache keeps only that: the next engine starts on it.
#[test]
fn a_plugin_starts_on_the_baseline_tier_and_moves_to_optimized_code() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use wasmprobe::config::{Limits, PluginName};
    use wasmprobe::runtime::record::{RunRecord, RunResult, TrapReason};
    use wasmprobe::runtime::run::{RunSpec, run};
    use wasmprobe::runtime::store::Grants;
    use wasmprobe::runtime::{Plugin, WasmEngine, engine::PoolSize};

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = dir.path().join("cache");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let engine = || {
        Arc::new(
            WasmEngine::new(
                PoolSize {
                    instances: 4,
                    max_memory: 64 << 20,
                },
                Some(&cache),
            )
            .unwrap_or_else(|e| panic!("engine: {e}"))
            .tiered(),
        )
    };
    let name = PluginName::try_from("misbehave".to_string()).unwrap_or_else(|e| panic!("{e}"));
    let load = |engine: &Arc<WasmEngine>| {
        rt.block_on(Plugin::load(
            engine,
            &name,
            &wasm("fixtures", "misbehave"),
            None,
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let grants = Grants::default();
    let go = |plugin: &Plugin, behaviour: &str| -> RunRecord {
        let config = format!("{{\"behaviour\":\"{behaviour}\"}}");
        let memory = if behaviour == "grow_memory" {
            32 << 20
        } else {
            64 << 20
        };
        rt.block_on(run(
            plugin,
            RunSpec {
                probe: "tiers",
                target: "",
                config: &config,
                limits: Limits {
                    timeout: Duration::from_millis(300),
                    memory,
                    ..Limits::default()
                },
                grants: &grants,
                state: None,
                tape: None,
                hostname: None,
            },
        ))
    };

    let first = engine();
    // The optimizing compile waits while this is held.
    let held = first.hold_optimizing();
    let plugin = load(&first);
    let residue = |r: &RunRecord| {
        r.samples
            .iter()
            .find(|s| s.name == "misbehave_residue_bytes")
            .map(|s| s.value)
    };
    for _ in 0..2 {
        let r = go(&plugin, "residue");
        assert!(!r.optimized);
        assert_eq!(residue(&r), Some(0.0), "{:?}", r.message);
    }
    for (attack, trap) in [
        ("grow_memory", TrapReason::MemoryLimit),
        ("recurse", TrapReason::StackOverflow),
    ] {
        let r = go(&plugin, attack);
        assert!(!r.optimized, "{attack}");
        assert_eq!(
            (r.result, r.trap),
            (RunResult::Trap, Some(trap)),
            "{attack}: {:?}",
            r.message
        );
    }
    let spun = go(&plugin, "spin");
    assert!(!spun.optimized, "the first run used optimized code");
    assert_eq!(spun.result, RunResult::Timeout, "{:?}", spun.message);
    let empty = go(&plugin, "empty");
    assert!(!empty.optimized);
    assert_eq!(empty.result, RunResult::Success, "{:?}", empty.message);
    drop(held);

    let deadline = Instant::now() + Duration::from_secs(180);
    while !plugin.optimized() {
        assert!(Instant::now() < deadline, "never moved to optimized code");
        std::thread::sleep(Duration::from_millis(50));
    }
    let spun = go(&plugin, "spin");
    assert!(spun.optimized);
    assert_eq!(spun.result, RunResult::Timeout, "{:?}", spun.message);
    assert_eq!(go(&plugin, "empty").result, RunResult::Success);

    let entries: Vec<_> = files(&cache)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");

    // A second engine loads the optimized code from the cache at once.
    let second = engine();
    let again = load(&second);
    assert!(again.optimized());
    assert!(go(&again, "empty").optimized);
}

/// Processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.filter_map(Result::ok) {
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(stat);
        }
    }
    out
}

/// `wasmprobe run` compiles a plugin its cache lacks in a child process
/// (`wasmprobe compile-plugin`): the plugin runs on baseline code at once,
/// then on the optimized code the child stored in the engine's cache. The
/// child is gone when it is done, probes go on succeeding throughout, and
/// the next start finds the code in the cache.
#[test]
fn run_compiles_optimized_code_in_a_child_process_and_keeps_it() {
    use std::time::Duration;

    use crate::harness::Engine;

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = dir.path().join("cache");
    let probes = "plugin = \"misbehave\"\nschedule = \"* * * * * *\"\ntarget = \"http://127.0.0.1:9/\"\n[probes.tiers.config]\nbehaviour = \"empty\"";
    let e = Engine::new()
        .cache_dir(&cache)
        .probe("tiers", probes)
        .start();
    let loaded = |log: &str, how: &str| {
        log.lines().any(|l| {
            l.contains("plugin load steps") && l.contains("plugin=misbehave") && l.contains(how)
        })
    };
    e.wait_for_log(
        "misbehave optimized in a child process",
        Duration::from_secs(180),
        |l| {
            l.contains("plugin optimized")
                && l.contains("plugin=misbehave")
                && l.contains("child_process=true")
        },
    );
    let runs = |s: &crate::harness::Scrape| {
        s.get(
            "wasmprobe_probe_runs_total",
            &[("probe", "tiers"), ("result", "success")],
        )
        .unwrap_or(0.0)
    };
    assert!(loaded(&e.log(), "optimized=false"), "{}", e.log());
    let before = runs(&e.scrape());
    e.wait_for("runs on the optimized code", Duration::from_secs(30), |s| {
        runs(s) >= before + 2.0
    });
    let scrape = e.scrape();
    for result in ["failure", "error", "timeout", "trap", "rejected"] {
        let failed = scrape
            .get(
                "wasmprobe_probe_runs_total",
                &[("probe", "tiers"), ("result", result)],
            )
            .unwrap_or(0.0);
        assert_eq!(failed, 0.0, "{result} runs\n{}", e.log());
    }
    // The child has ended and been reaped: no zombie is left behind.
    let left = children_of(e.child.id());
    assert!(left.is_empty(), "{left:?}");
    let log = e.log();
    assert!(
        !log.contains("optimized compile failed")
            && !log.contains("compiling in this process instead"),
        "{log}"
    );
    drop(e);

    let entries: Vec<_> = files(&cache)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let again = Engine::new()
        .cache_dir(&cache)
        .probe("tiers", probes)
        .start();
    again.wait_for("a run", Duration::from_secs(30), |s| runs(s) >= 1.0);
    // The load itself says whether it found optimized code.
    let log = again.log();
    assert!(loaded(&log, "optimized=true"), "compiled again:\n{log}");
}
