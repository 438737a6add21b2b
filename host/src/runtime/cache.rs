//! The compile cache: one file per plugin build, loaded by mapping it.
//!
//! An entry is the component as wasmtime serializes it, named by a digest
//! of the plugin's bytes and of everything the engine compiles for
//! (wasmtime's version, its settings, the CPU features in use). Loading maps
//! the file instead of reading it, so a plugin's compiled code costs
//! resident memory only for the pages its runs touch (the default config's
//! plugins: 14 MiB of copied code before, see bench/RESULTS.md), and a
//! start reads nothing it does not run.
//!
//! Trust: wasmtime checks an entry's header (version, settings, CPU
//! features) and refuses one made by another build or for another CPU;
//! such an entry, or bytes that are no entry at all, is a miss: the plugin
//! is compiled again and the entry replaced. Native code in a well-formed
//! entry is trusted, so entries live only in a directory this engine's user
//! (or root) owns and no one else may write: when `cache_dir` is shared
//! (a Kubernetes `emptyDir` is world-writable), a private subdirectory
//! `wasmprobe-UID` inside it is used instead, and one that someone else
//! made or opened up is refused.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Entries kept: the oldest beyond this are removed after a write (a
/// plugin rebuilt every day would otherwise fill the disk).
const MAX_ENTRIES: usize = 64;

const SUFFIX: &str = ".cwasm";

/// Age after which a temporary file in the cache is a dead writer's.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// Why the cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a private directory of this user (uid {me}): it is {what}; compiled code in it would run as trusted: remove it, or set another cache_dir"
    )]
    NotPrivate {
        path: PathBuf,
        me: u32,
        what: String,
    },
}

/// Where compiled plugins are kept between starts.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    /// Digest of what the engine compiles for, mixed into every key.
    engine_key: [u8; 32],
}

/// Feeds `Hash` output into SHA-256 (wasmtime exposes its compatibility
/// key only as `impl Hash`; SHA-256 makes it stable across runs, unlike
/// std's hasher).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        // Never used: the digest is taken with `finalize`.
        0
    }
}

impl CompileCache {
    /// Opens (creating) `dir` for `engine`; refuses a directory others may
    /// write to.
    pub fn open(engine: &Engine, dir: &Path) -> Result<CompileCache, CacheError> {
        std::fs::create_dir_all(dir).map_err(|source| CacheError::Create {
            path: dir.to_path_buf(),
            source,
        })?;
        let dir = private_dir(dir)?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CompileCache {
            dir,
            engine_key: hasher.0.finalize().into(),
        })
    }

    fn entry(&self, plugin_sha256: &str) -> PathBuf {
        let mut key = Sha256::new();
        key.update(self.engine_key);
        key.update(plugin_sha256.as_bytes());
        self.dir
            .join(format!("{}{SUFFIX}", hex::encode(key.finalize())))
    }

    /// The plugin whose bytes have digest `plugin_sha256`, from its entry,
    /// if there is a usable one. An unreadable, foreign or stale entry is
    /// logged and is a miss: the caller compiles.
    #[allow(unsafe_code)]
    pub fn load(&self, engine: &Engine, plugin_sha256: &str) -> Option<Component> {
        let path = self.entry(plugin_sha256);
        if !path.is_file() {
            return None;
        }
        // SAFETY: the entry is in a directory only this user (or root) can
        // write (checked at open), and wasmtime refuses bytes that are not
        // a component serialized by this engine's build and settings for
        // this CPU.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::info!(
                    entry = %path.display(),
                    "compile cache entry not usable, compiling again: {e:#}"
                );
                None
            }
        }
    }

    /// Compiles the plugin and stores its entry (a failed write is logged;
    /// the compiled plugin is returned all the same).
    #[allow(unsafe_code)]
    pub fn compile_and_store(
        &self,
        engine: &Engine,
        wasm: &[u8],
        plugin_sha256: &str,
    ) -> wasmtime::Result<Component> {
        let path = self.entry(plugin_sha256);
        let component = Component::new(engine, wasm)?;
        match self.store(&path, &component) {
            // Reload from the file so that this process also holds only
            // the pages it runs, as a start with a warm cache does.
            // SAFETY: as above; the file was written just now.
            Ok(()) => match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(mapped) => return Ok(mapped),
                Err(e) => tracing::warn!(
                    entry = %path.display(),
                    "compile cache entry written but not readable: {e:#}"
                ),
            },
            Err(e) => tracing::warn!(
                dir = %self.dir.display(),
                "cannot write compile cache entry: {e}"
            ),
        }
        Ok(component)
    }

    /// Stores a compiled plugin's entry without loading it back: what a
    /// compiling child process does for the engine that started it.
    pub(crate) fn store_entry(
        &self,
        component: &Component,
        plugin_sha256: &str,
    ) -> std::io::Result<()> {
        self.store(&self.entry(plugin_sha256), component)
    }

    /// The private directory entries are kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the entry under a temporary name and renames it into place:
    /// a process mapping the old entry keeps its file, and a reader never
    /// sees half an entry.
    fn store(&self, path: &Path, component: &Component) -> std::io::Result<()> {
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        self.prune(path);
        Ok(())
    }

    /// Removes the least recently written entries beyond `MAX_ENTRIES`, and
    /// temporary files a process that stopped mid-write left (an hour old).
    fn prune(&self, keep: &Path) {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for e in read.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(modified) = e.metadata().ok().and_then(|m| m.modified().ok()) else {
                continue;
            };
            if name.ends_with(SUFFIX) {
                entries.push((modified, e.path()));
            } else if name.starts_with(".tmp")
                && modified.elapsed().is_ok_and(|age| age > STALE_TEMP)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
        if entries.len() <= MAX_ENTRIES {
            return;
        }
        entries.sort();
        let excess = entries.len() - MAX_ENTRIES;
        for (_, path) in entries.into_iter().take(excess) {
            if path != keep {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// `dir` when only this user (or root) owns and may write it; else its
/// subdirectory `wasmprobe-UID`, made private, or an error when that is
/// not (someone else made it, or it is a link or open to others).
#[cfg(unix)]
#[allow(unsafe_code)]
fn private_dir(dir: &Path) -> Result<PathBuf, CacheError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let private = |m: &std::fs::Metadata| {
        m.is_dir() && (m.uid() == me || m.uid() == 0) && m.mode() & 0o022 == 0
    };
    let meta = std::fs::metadata(dir).map_err(|source| CacheError::Create {
        path: dir.to_path_buf(),
        source,
    })?;
    if private(&meta) {
        return Ok(dir.to_path_buf());
    }
    let sub = dir.join(format!("wasmprobe-{me}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&sub) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(CacheError::Create { path: sub, source }),
    }
    // Not followed: a link planted in a shared directory is refused.
    let meta = std::fs::symlink_metadata(&sub).map_err(|source| CacheError::Create {
        path: sub.clone(),
        source,
    })?;
    if meta.uid() != me || !meta.is_dir() || meta.mode() & 0o077 != 0 {
        let what = if meta.file_type().is_symlink() {
            "a symbolic link".to_string()
        } else if !meta.is_dir() {
            "not a directory".to_string()
        } else {
            format!(
                "owned by uid {} with mode {:o}",
                meta.uid(),
                meta.mode() & 0o7777
            )
        };
        return Err(CacheError::NotPrivate {
            path: sub,
            me,
            what,
        });
    }
    tracing::debug!(
        dir = %dir.display(),
        using = %sub.display(),
        "cache_dir is writable by others; compiled plugins are kept in a private subdirectory"
    );
    Ok(sub)
}

#[cfg(not(unix))]
fn private_dir(dir: &Path) -> Result<PathBuf, CacheError> {
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAT: &str = r#"(component (core module (func (export "f"))))"#;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As the engine uses the cache: the entry, else a compile stored.
    fn load_or_compile(
        cache: &CompileCache,
        engine: &Engine,
        wasm: &[u8],
        sha: &str,
    ) -> wasmtime::Result<Component> {
        match cache.load(engine, sha) {
            Some(component) => Ok(component),
            None => cache.compile_and_store(engine, wasm, sha),
        }
    }

    fn temp_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        dir
    }

    #[test]
    fn a_compiled_plugin_is_stored_and_loaded_from_its_entry() {
        let engine = engine();
        let dir = temp_dir();
        let cache = CompileCache::open(&engine, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let wasm = wat::parse_str(WAT).unwrap_or_else(|e| panic!("{e}"));
        load_or_compile(&cache, &engine, &wasm, "abc").unwrap_or_else(|e| panic!("{e}"));
        let entry = cache.entry("abc");
        assert!(entry.is_file());
        // A second load uses the entry: garbage instead of the plugin's
        // bytes would not compile.
        load_or_compile(&cache, &engine, b"not wasm", "abc").unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_foreign_entry_is_compiled_again_and_replaced() {
        let engine = engine();
        let dir = temp_dir();
        let cache = CompileCache::open(&engine, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let wasm = wat::parse_str(WAT).unwrap_or_else(|e| panic!("{e}"));
        let entry = cache.entry("abc");
        std::fs::write(&entry, b"\x7fELF planted").unwrap_or_else(|e| panic!("{e}"));
        load_or_compile(&cache, &engine, &wasm, "abc").unwrap_or_else(|e| panic!("{e}"));
        let replaced = std::fs::read(&entry).unwrap_or_default();
        assert!(replaced.len() > 100, "entry not replaced");
    }

    #[test]
    fn another_engine_setting_uses_another_entry() {
        let a = engine();
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.cranelift_opt_level(wasmtime::OptLevel::None);
        let b = Engine::new(&config).unwrap_or_else(|e| panic!("{e}"));
        let dir = temp_dir();
        let ca = CompileCache::open(&a, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let cb = CompileCache::open(&b, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(ca.entry("abc"), cb.entry("abc"));
    }

    #[cfg(unix)]
    #[test]
    fn a_shared_directory_gets_a_private_subdirectory_and_a_planted_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let engine = engine();
        let dir = temp_dir();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .unwrap_or_else(|e| panic!("{e}"));
        let cache = CompileCache::open(&engine, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: geteuid has no preconditions.
        #[allow(unsafe_code)]
        let me = unsafe { libc::geteuid() };
        let sub = dir.path().join(format!("wasmprobe-{me}"));
        assert_eq!(cache.dir, sub);
        let mode = std::fs::metadata(&sub)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_default();
        assert_eq!(mode, 0o700);

        // Someone opened the subdirectory up (or made it so): refused.
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o777))
            .unwrap_or_else(|e| panic!("{e}"));
        let err = CompileCache::open(&engine, dir.path())
            .err()
            .unwrap_or_else(|| panic!("an open subdirectory was accepted"));
        assert!(
            err.to_string().contains("is not a private directory"),
            "{err}"
        );

        // A link planted in its place: refused, never followed.
        std::fs::remove_dir(&sub).unwrap_or_else(|e| panic!("{e}"));
        let elsewhere = temp_dir();
        std::os::unix::fs::symlink(elsewhere.path(), &sub).unwrap_or_else(|e| panic!("{e}"));
        let err = CompileCache::open(&engine, dir.path())
            .err()
            .unwrap_or_else(|| panic!("a planted link was accepted"));
        assert!(err.to_string().contains("a symbolic link"), "{err}");
    }

    #[test]
    fn old_entries_beyond_the_bound_are_removed() {
        let engine = engine();
        let dir = temp_dir();
        let cache = CompileCache::open(&engine, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..MAX_ENTRIES + 3 {
            std::fs::write(dir.path().join(format!("{i:04}{SUFFIX}")), b"x")
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let wasm = wat::parse_str(WAT).unwrap_or_else(|e| panic!("{e}"));
        load_or_compile(&cache, &engine, &wasm, "new").unwrap_or_else(|e| panic!("{e}"));
        let left = std::fs::read_dir(dir.path())
            .map(|r| r.count())
            .unwrap_or_default();
        assert_eq!(left, MAX_ENTRIES);
        assert!(cache.entry("new").is_file());
    }

    #[test]
    fn a_dead_writers_temporary_file_is_removed_a_fresh_one_kept() {
        let engine = engine();
        let dir = temp_dir();
        let cache = CompileCache::open(&engine, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let old = dir.path().join(".tmpOLD");
        let fresh = dir.path().join(".tmpNEW");
        for p in [&old, &fresh] {
            std::fs::write(p, b"half an entry").unwrap_or_else(|e| panic!("{e}"));
        }
        let hours_ago = std::time::SystemTime::now() - 2 * STALE_TEMP;
        std::fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(hours_ago))
            .unwrap_or_else(|e| panic!("{e}"));
        let wasm = wat::parse_str(WAT).unwrap_or_else(|e| panic!("{e}"));
        load_or_compile(&cache, &engine, &wasm, "x").unwrap_or_else(|e| panic!("{e}"));
        assert!(!old.exists());
        assert!(fresh.exists());
    }
}
