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
//! A child that could not start, or could not store its entry, leaves the
//! compile to the engine. [`confine_child`] says what the child may do.

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
    #[error(
        "the compiling process compiled the plugin but could not store it{}",
        said(stderr)
    )]
    NotStored { stderr: String },
    #[error(
        "the compiling process did not finish within {after:?} and was stopped{}",
        said(stderr)
    )]
    Timeout { after: Duration, stderr: String },
    #[error("the compiling process succeeded, but its compile cache entry is not usable")]
    NoEntry,
}

impl ChildCompileError {
    /// Whether the compile itself may still succeed in the engine: the
    /// child could not run, or could not hand its code over (a full or
    /// read-only cache), as opposed to a compile that failed or hung.
    pub fn compile_may_succeed_here(&self) -> bool {
        matches!(
            self,
            ChildCompileError::Spawn { .. }
                | ChildCompileError::NotStored { .. }
                | ChildCompileError::NoEntry
        )
    }
}

/// The child's standard error as one escaped line: it may carry names
/// from the plugin, which must not start lines of their own in the log.
fn said(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {}", s.escape_debug())
    }
}

/// The exit status of `compile-plugin` when the plugin compiled but its
/// entry could not be stored (the binary's `Status::Environment`).
pub const NOT_STORED_STATUS: i32 = 3;

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
    #[error("the engine that started this compile has ended")]
    ParentGone,
    #[error("cannot give up this process's privileges: {0}")]
    Confine(std::io::Error),
}

impl ServeError {
    /// Whether the plugin may be fine and the fault is the cache's: the
    /// binary exits with [`NOT_STORED_STATUS`] then.
    pub fn is_not_stored(&self) -> bool {
        matches!(self, ServeError::Cache(_) | ServeError::Store { .. })
    }
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
            .arg("--parent")
            .arg(std::process::id().to_string())
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
        // write ends when the child does. Every way out of the loop has
        // reaped the child, so the scope's wait for the writer ends too.
        let waited = std::thread::scope(|scope| {
            if let Some(mut stdin) = stdin {
                scope.spawn(move || {
                    // A child that ends early (it refused the input) closes
                    // the pipe; its exit status says why.
                    let _ = stdin.write_all(wasm);
                });
            }
            let deadline = Instant::now() + self.timeout;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => return Ok(status),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    ended => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(ended.err());
                    }
                }
            }
        });
        let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        let status = match waited {
            Ok(status) => status,
            Err(Some(e)) => return Err(ChildCompileError::Wait(e)),
            Err(None) => {
                return Err(ChildCompileError::Timeout {
                    after: self.timeout,
                    stderr,
                });
            }
        };
        if status.code() == Some(NOT_STORED_STATUS) {
            return Err(ChildCompileError::NotStored { stderr });
        }
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

/// Confines this process, a compiling child of the engine `parent`,
/// before it reads anything:
/// - it ends when the engine does (a compile nobody will load is not left
///   running). The kernel signals when the engine's thread that started the
///   child ends, and that thread waits for the child, so the signal comes
///   only with the engine's exit; an engine gone already is checked for;
/// - it holds no capabilities and can gain none: the binary may carry
///   `cap_net_raw` for ICMP, which a compiler has no use for;
/// - it is the first process the kernel's OOM killer ends, before the
///   engine, when a compile exhausts memory.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn confine_child(parent: u32) -> Result<(), ServeError> {
    // SAFETY: prctl with these options takes plain integers and touches no
    // memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    // SAFETY: getppid has no preconditions and cannot fail.
    if u32::try_from(unsafe { libc::getppid() }).ok() != Some(parent) {
        return Err(ServeError::ParentGone);
    }
    // SAFETY: as above.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(ServeError::Confine(std::io::Error::last_os_error()));
    }
    drop_capabilities().map_err(ServeError::Confine)?;
    // Best effort: raising one's own score needs no privilege, and a
    // kernel without the file leaves the default.
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn confine_child(_parent: u32) -> Result<(), ServeError> {
    Ok(())
}

/// Empties the effective, permitted and inheritable capability sets.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn drop_capabilities() -> std::io::Result<()> {
    /// `struct __user_cap_header_struct` of linux/capability.h.
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    /// `struct __user_cap_data_struct`; version 3 takes two of them.
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data::default(); 2];
    // SAFETY: capset reads one header and two data structs of the layout
    // above, both alive for the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

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

    /// A program (in `dir`) that runs `body` with sh.
    fn script(dir: &Path, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("child");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// The status `compile-plugin` gives when the cache cannot take the
    /// entry is told apart (the engine may compile the plugin itself), and
    /// what the child said arrives as one line.
    #[test]
    fn a_child_that_could_not_store_is_told_apart_and_its_words_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(&optimizing_config(pool())).unwrap();
        let cache = CompileCache::open(&engine, &dir.path().join("cache")).unwrap();
        let exe = script(
            dir.path(),
            "printf 'cannot write\\nlevel=error forged line' >&2; exit 3",
        );
        let err = CompilerProcess::other(&exe, CHILD_TIMEOUT)
            .compile(&engine, pool(), &cache, b"\0asm", "0")
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, ChildCompileError::NotStored { .. }), "{err}");
        assert!(err.compile_may_succeed_here());
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("cannot write\\nlevel=error"), "{text}");
    }

    /// A child that neither reads its input nor ends is stopped at the
    /// deadline, and the parent is not held by the unread input.
    #[test]
    fn a_child_that_hangs_is_stopped_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let exe = script(dir.path(), "exec sleep 60");
        let cache_dir = dir.path().join("cache");
        let engine = Engine::new(&optimizing_config(pool())).unwrap();
        let cache = CompileCache::open(&engine, &cache_dir).unwrap();
        // More than a pipe holds, so the writer blocks until the kill.
        let input = vec![0u8; 4 << 20];
        let child = CompilerProcess::other(&exe, Duration::from_millis(300));
        let err = child
            .compile(&engine, pool(), &cache, &input, "0")
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, ChildCompileError::Timeout { .. }), "{err}");
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
