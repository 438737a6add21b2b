//! A content-addressed cache of pulled artifacts, so that a pinned
//! reference never touches the network once it has been fetched.
//!
//! Layout (a subset of the OCI image layout's idea, not its format):
//!
//! ```text
//! DIR/manifests/<manifest sha256 hex>   the manifest bytes
//! DIR/blobs/<layer sha256 hex>          the layer bytes
//! ```
//!
//! Nothing read back is trusted: [`Cache::get`] hashes the manifest
//! against its key, checks its layout again, and hashes the layer against
//! the manifest. A file that fails is treated as absent and removed, so a
//! tampered or half-written entry costs one download, never wrong code.
//! Writes go to a temporary file in the same directory and are renamed
//! into place (readers see a whole file or none); the layer is written
//! before the manifest that names it. Directories are created `0700`
//! (only the engine's user needs them), files `0644`.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::artifact::Pulled;
use crate::digest::Digest;
use crate::error::OciError;
use crate::manifest::{self, MAX_MANIFEST_SIZE};

/// The on-disk cache rooted at one directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache in `dir`. Nothing touches the disk until the first
    /// [`put`](Self::put), which creates the directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The root directory, for messages such as "cached in …".
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn manifest_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("manifests").join(digest.hex())
    }

    /// Where the layer with `digest` is kept: a verified file that loaders
    /// may read in place (and must hash again, as the cache's own reads
    /// do).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join(digest.hex())
    }

    /// The artifact whose manifest digest is `digest`, if it is cached and
    /// still verifies. Any failure (missing, unreadable, tampered) is a
    /// miss; files that fail verification are removed.
    pub fn get(&self, digest: &Digest) -> Option<Pulled> {
        let manifest_path = self.manifest_path(digest);
        let manifest = read_regular(&manifest_path, MAX_MANIFEST_SIZE)?;
        if Digest::of(&manifest) != *digest {
            discard(&manifest_path);
            return None;
        }
        let Ok(checked) = manifest::check(digest.as_str(), &manifest, None) else {
            discard(&manifest_path);
            return None;
        };
        let blob_path = self.blob_path(&checked.layer.digest);
        let bytes = read_regular(&blob_path, checked.layer.size)?;
        if bytes.len() as u64 != checked.layer.size || Digest::of(&bytes) != checked.layer.digest {
            discard(&blob_path);
            return None;
        }
        Some(Pulled::new(digest.clone(), checked.kind, bytes, manifest))
    }

    /// Stores `pulled`. Only verified artifacts exist as [`Pulled`], so
    /// nothing unverified can enter the cache.
    pub fn put(&self, pulled: &Pulled) -> Result<(), OciError> {
        let checked = manifest::check(pulled.digest.as_str(), pulled.manifest(), None)?;
        let blobs = self.dir.join("blobs");
        let manifests = self.dir.join("manifests");
        for dir in [&blobs, &manifests] {
            create_private_dir(dir).map_err(|source| OciError::Cache {
                path: dir.clone(),
                source,
            })?;
        }
        let blob_path = self.blob_path(&checked.layer.digest);
        write_atomic(&blob_path, &pulled.bytes).map_err(|source| OciError::Cache {
            path: blob_path.clone(),
            source,
        })?;
        let manifest_path = self.manifest_path(&pulled.digest);
        write_atomic(&manifest_path, pulled.manifest()).map_err(|source| OciError::Cache {
            path: manifest_path.clone(),
            source,
        })
    }
}

/// At most `max + 1` bytes of the regular file at `path` (one more than
/// allowed, so the caller's size check catches a grown file). `None` for
/// anything else: missing, a symlink, a FIFO that would block, a
/// directory, an I/O error.
fn read_regular(path: &Path, max: u64) -> Option<Vec<u8>> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_file() {
        if meta.file_type().is_symlink() {
            discard(path);
        }
        return None;
    }
    let file = fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// Best effort: a file we cannot remove is still never served, since it
/// fails verification again on the next read.
fn discard(path: &Path) {
    let _ = fs::remove_file(path);
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes `bytes` to `path` via a uniquely named temporary file in the
/// same directory (same filesystem, so the rename is atomic).
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        let mut file = options.open(&temp)?;
        #[cfg(unix)]
        {
            // Set explicitly: the umask must not decide who can read.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o644))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Kind, build};

    fn pulled(kind: Kind, bytes: &[u8]) -> Pulled {
        let built = build(kind, bytes, "2026-01-02T03:04:05Z");
        Pulled::new(built.digest, kind, bytes.to_vec(), built.manifest)
    }

    #[test]
    fn put_then_get_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let p = pulled(Kind::Plugin, b"\0asm component");
        assert!(cache.get(&p.digest).is_none());
        cache.put(&p).unwrap();
        assert_eq!(cache.get(&p.digest), Some(p.clone()));
        // Idempotent.
        cache.put(&p).unwrap();
        assert_eq!(cache.get(&p.digest), Some(p));
    }

    #[cfg(unix)]
    #[test]
    fn modes_are_0700_for_dirs_and_0644_for_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/cache");
        let cache = Cache::new(&root);
        let p = pulled(Kind::Package, b"tgz");
        cache.put(&p).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("manifests")), 0o700);
        assert_eq!(mode(&cache.manifest_path(&p.digest)), 0o644);
        assert_eq!(mode(&cache.blob_path(&Digest::of(b"tgz"))), 0o644);
        // No temporary files left behind.
        for sub in ["manifests", "blobs"] {
            for entry in fs::read_dir(root.join(sub)).unwrap() {
                let name = entry.unwrap().file_name();
                assert!(!name.to_string_lossy().starts_with('.'), "{name:?}");
            }
        }
    }

    #[test]
    fn a_tampered_layer_is_a_miss_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let p = pulled(Kind::Plugin, b"original");
        cache.put(&p).unwrap();
        let blob = cache.blob_path(&Digest::of(b"original"));
        fs::write(&blob, b"tampered").unwrap(); // same length, other bytes
        assert!(cache.get(&p.digest).is_none());
        assert!(!blob.exists());
        // A new put repairs the entry.
        cache.put(&p).unwrap();
        assert_eq!(cache.get(&p.digest), Some(p));
    }

    #[test]
    fn a_grown_layer_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let p = pulled(Kind::Plugin, b"original");
        cache.put(&p).unwrap();
        let blob = cache.blob_path(&Digest::of(b"original"));
        fs::write(&blob, b"original and more").unwrap();
        assert!(cache.get(&p.digest).is_none());
        assert!(!blob.exists());
    }

    #[test]
    fn a_tampered_manifest_is_a_miss_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let p = pulled(Kind::Plugin, b"original");
        cache.put(&p).unwrap();
        // Point the manifest at other (also cached) content.
        let other = pulled(Kind::Plugin, b"evil");
        cache.put(&other).unwrap();
        let path = cache.manifest_path(&p.digest);
        fs::write(&path, other.manifest()).unwrap();
        assert!(cache.get(&p.digest).is_none());
        assert!(!path.exists());
        assert_eq!(cache.get(&other.digest), Some(other));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let p = pulled(Kind::Plugin, b"original");
        cache.put(&p).unwrap();
        let path = cache.manifest_path(&p.digest);
        let elsewhere = dir.path().join("elsewhere");
        fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(cache.get(&p.digest).is_none());
        assert!(fs::symlink_metadata(&path).is_err(), "symlink removed");
    }

    #[test]
    fn an_unwritable_cache_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"").unwrap();
        let cache = Cache::new(&file);
        let e = cache.put(&pulled(Kind::Plugin, b"x")).unwrap_err();
        assert!(e.to_string().starts_with("cannot write to cache "), "{e}");
        assert!(e.to_string().contains("not-a-dir"), "{e}");
    }
}
