//! Optimizing compiles in a child process.
//!
//! A plugin that starts on the baseline tier is compiled again by cranelift
//! in the background. Done in the engine's own process, that compile leaves
//! its mark for the life of the process: cranelift keeps a working context
//! per thread that compiled, and the compile's short-lived blocks are
//! interleaved with long-lived ones, so pages stay resident that hold little.
//! 30 s after a start with an empty cache the default config held 35-40 MiB
//! of anonymous memory against 7-9 MiB after a start from a filled cache
//! (bench/RESULTS.md). The compile also reads other teams' code: a compiler
//! crash or a compile that exhausts memory would take every probe down.
//!
//! So the engine runs this program again as `wasmprobe compile-plugin`,
//! hands it the plugin's bytes on standard input, and the child compiles
//! with the engine's own settings and stores the code in the engine's
//! compile cache, where the engine loads it from (the same checked load as
//! any cache entry). The child's memory ends with it; a child that fails,
//! or runs past [`CHILD_TIMEOUT`], leaves the plugin on its baseline code.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::cache::{CacheError, CompileCache};
use super::engine::{PoolSize, optimizing_config};
use crate::files::MAX_WASM_SIZE;

/// The subcommand the child is started with.
pub const SUBCOMMAND: &str = "compile-plugin";

/// How long a child may compile before it is stopped. The largest plugins
/// (an interpreter compiled to a component) take a minute on two cores.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(600);

/// The most of the child's standard error kept for the log.
const STDERR_KEPT: usize = 4096;

/// Why a compile in a child process gave no code.
#[derive(Debug, thiserror::Error)]
pub enum ChildCompileError {
    #[error("cannot start the compiling process {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot wait for the compiling process: {0}")]
    Wait(std::io::Error),
    #[error("the compiling process failed ({status}){}", said(stderr))]
    Failed { status: String, stderr: String },
    #[error("the compiling process did not finish within {0:?} and was stopped")]
    Timeout(Duration),
    #[error("the compiling process succeeded, but its compile cache entry is not usable")]
    NoEntry,
}

fn said(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

/// Why the child could not store the compiled plugin.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read the plugin from standard input: {0}")]
    Input(std::io::Error),
    #[error("the plugin on standard input is larger than {MAX_WASM_SIZE} bytes")]
    TooLarge,
    #[error("cannot configure the WebAssembly engine: {0}")]
    Engine(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("cannot compile the plugin: {0}")]
    Compile(String),
    #[error("cannot write the compile cache entry in {dir}: {source}")]
    Store {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The program an engine starts for its optimizing compiles.
#[derive(Debug, Clone)]
pub struct CompilerProcess {
    /// `None`: this very program (see [`this_program`]).
    exe: Option<PathBuf>,
    timeout: Duration,
}

impl CompilerProcess {
    /// This program, as `wasmprobe compile-plugin`.
    pub fn this_program() -> CompilerProcess {
        CompilerProcess {
            exe: None,
            timeout: CHILD_TIMEOUT,
        }
    }

    /// `exe` in place of this program.
    #[cfg(test)]
    fn other(exe: &str, timeout: Duration) -> CompilerProcess {
        CompilerProcess {
            exe: Some(PathBuf::from(exe)),
            timeout,
        }
    }

    /// Compiles `wasm` (digest `plugin_sha256`) in a child process and
    /// loads the code it stored in `cache` into `engine`.
    pub(crate) fn compile(
        &self,
        engine: &Engine,
        pool: PoolSize,
        cache: &CompileCache,
        wasm: &[u8],
        plugin_sha256: &str,
    ) -> Result<Component, ChildCompileError> {
        let exe = self.exe.clone().unwrap_or_else(this_program);
        let mut child = Command::new(&exe)
            .arg(SUBCOMMAND)
            .arg("--cache")
            .arg(cache.dir())
            .arg("--instances")
            .arg(pool.instances.to_string())
            .arg("--max-memory")
            .arg(pool.max_memory.to_string())
            // The child reads a plugin and writes a cache entry: it needs
            // none of the engine's environment (secrets among it).
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ChildCompileError::Spawn { exe, source })?;
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut buf = [0u8; 1024];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > STDERR_KEPT {
                        kept.drain(..kept.len() - STDERR_KEPT);
                    }
                }
                String::from_utf8_lossy(&kept).into_owned()
            })
        });
        let stdin = child.stdin.take();
        // The plugin is written from a thread of its own, so that a child
        // that stops reading cannot hold this one past the deadline: the
        // write ends when the child does.
        let status = std::thread::scope(|scope| {
            if let Some(mut stdin) = stdin {
                scope.spawn(move || {
                    // A child that ends early (it refused the input) closes
                    // the pipe; its exit status says why.
                    let _ = stdin.write_all(wasm);
                });
            }
            let deadline = Instant::now() + self.timeout;
            loop {
                match child.try_wait().map_err(ChildCompileError::Wait)? {
                    Some(status) => return Ok(status),
                    None if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(ChildCompileError::Timeout(self.timeout));
                    }
                    None => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })?;
        let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        if !status.success() {
            return Err(ChildCompileError::Failed {
                status: status.to_string(),
                stderr,
            });
        }
        cache
            .load(engine, plugin_sha256)
            .ok_or(ChildCompileError::NoEntry)
    }
}

/// This very program: its path while the file there is still the one
/// running (so that `ps` names it), else the running file itself through
/// `/proc/self/exe`. After an upgrade replaced the file, a newer build
/// would compile code this engine cannot load.
fn this_program() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let running = PathBuf::from("/proc/self/exe");
    let Ok(path) = std::env::current_exe() else {
        return running;
    };
    match (path.metadata(), running.metadata()) {
        (Ok(a), Ok(b)) if (a.dev(), a.ino()) == (b.dev(), b.ino()) => path,
        (_, Ok(_)) => running,
        (_, Err(_)) => path,
    }
}

/// Makes this process (a compiling child) end when the engine that
/// started it ends: a compile nobody will load is not left running. The
/// kernel sends the signal when the engine's thread that started the child
/// ends, and that thread waits for the child; so it comes only with the
/// engine's exit.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn end_with_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no
    // memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
}

#[cfg(not(target_os = "linux"))]
pub fn end_with_parent() {}

/// The child's side: reads a plugin from `input`, compiles it with the
/// settings of an engine sized for `pool` and stores it in the cache at
/// `cache_dir`. The plugin's digest is taken here from the bytes read, so
/// an entry is always named for what was compiled.
pub fn serve(pool: PoolSize, cache_dir: &Path, input: impl Read) -> Result<(), ServeError> {
    let mut wasm = Vec::new();
    input
        .take(MAX_WASM_SIZE + 1)
        .read_to_end(&mut wasm)
        .map_err(ServeError::Input)?;
    if wasm.len() as u64 > MAX_WASM_SIZE {
        return Err(ServeError::TooLarge);
    }
    let engine =
        Engine::new(&optimizing_config(pool)).map_err(|e| ServeError::Engine(format!("{e:#}")))?;
    let cache = CompileCache::open(&engine, cache_dir)?;
    let component =
        Component::new(&engine, &wasm).map_err(|e| ServeError::Compile(format!("{e:#}")))?;
    let digest = hex::encode(Sha256::digest(&wasm));
    cache
        .store_entry(&component, &digest)
        .map_err(|source| ServeError::Store {
            dir: cache.dir().to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PoolSize {
        PoolSize {
            instances: 4,
            max_memory: 16 << 20,
        }
    }

    /// What the child stores is what the engine that started it loads.
    #[test]
    fn an_entry_stored_by_the_child_side_loads_in_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = wat::parse_str("(component)").unwrap();
        serve(pool(), dir.path(), &wasm[..]).unwrap();
        let engine = Engine::new(&optimizing_config(pool())).unwrap();
        let cache = CompileCache::open(&engine, dir.path()).unwrap();
        let digest = hex::encode(Sha256::digest(&wasm));
        assert!(cache.load(&engine, &digest).is_some());
    }

    #[test]
    fn bytes_that_are_no_component_are_refused_and_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let err = serve(pool(), dir.path(), &b"\0asm not really"[..]).unwrap_err();
        assert!(matches!(err, ServeError::Compile(_)), "{err}");
        let stored = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(stored, 0);
    }

    /// The parent's side against programs that are not a compiler.
    #[test]
    fn a_child_that_cannot_start_fails_or_stores_nothing_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(&optimizing_config(pool())).unwrap();
        let cache = CompileCache::open(&engine, dir.path()).unwrap();
        let wasm = wat::parse_str("(component)").unwrap();
        let digest = hex::encode(Sha256::digest(&wasm));
        let compile = |exe: &str| {
            CompilerProcess::other(exe, CHILD_TIMEOUT)
                .compile(&engine, pool(), &cache, &wasm, &digest)
                .map(|_| ())
        };
        let missing = compile("/nonexistent/wasmprobe").unwrap_err();
        assert!(
            matches!(missing, ChildCompileError::Spawn { .. }),
            "{missing}"
        );
        // sh reads `compile-plugin` as a script to run, and says so.
        let failed = compile("/bin/sh").unwrap_err();
        let ChildCompileError::Failed { stderr, .. } = &failed else {
            panic!("{failed}");
        };
        assert!(stderr.contains("compile-plugin"), "{failed}");
        let silent = compile("/bin/true").unwrap_err();
        assert!(matches!(silent, ChildCompileError::NoEntry), "{silent}");
    }

    /// A child that neither reads its input nor ends is stopped at the
    /// deadline, and the parent is not held by the unread input.
    #[test]
    fn a_child_that_hangs_is_stopped_at_its_deadline() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("hang");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 60\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cache_dir = dir.path().join("cache");
        let engine = Engine::new(&optimizing_config(pool())).unwrap();
        let cache = CompileCache::open(&engine, &cache_dir).unwrap();
        // More than a pipe holds, so the writer blocks until the kill.
        let input = vec![0u8; 4 << 20];
        let child = CompilerProcess::other(&script.to_string_lossy(), Duration::from_millis(300));
        let err = child
            .compile(&engine, pool(), &cache, &input, "0")
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, ChildCompileError::Timeout(_)), "{err}");
    }

    /// The test binary is this program, found by its own path.
    #[test]
    fn this_program_is_named_by_its_path() {
        let exe = this_program();
        assert_eq!(exe, std::env::current_exe().unwrap());
    }

    #[test]
    fn input_beyond_the_plugin_size_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = std::io::repeat(0).take(MAX_WASM_SIZE + 1);
        let err = serve(pool(), dir.path(), big).unwrap_err();
        assert!(matches!(err, ServeError::TooLarge), "{err}");
    }
}
