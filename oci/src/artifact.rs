//! What a pull hands back.

use std::fmt;

use crate::digest::Digest;
use crate::manifest::Kind;

/// A verified artifact: `bytes` hash to the layer digest named by the
/// manifest whose own hash is `digest`.
///
/// Only [`Client::pull`](crate::Client::pull) and
/// [`Cache::get`](crate::Cache::get) make one (the private manifest field
/// prevents a struct literal), so a `Pulled` in hand is always content
/// that was checked against a registry manifest, and the cache never
/// stores anything else.
#[derive(Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The manifest digest: what to pin (`registry/repo:tag@digest`) and
    /// the cache key.
    pub digest: Digest,
    /// Plugin or probe package, from the manifest's config media type.
    pub kind: Kind,
    /// The component (`.wasm`) or the package (`.tar.gz`) bytes.
    pub bytes: Vec<u8>,
    /// The exact manifest bytes, kept so the cache can re-verify the
    /// chain digest → manifest → layer on every read.
    manifest: Vec<u8>,
}

impl Pulled {
    pub(crate) fn new(digest: Digest, kind: Kind, bytes: Vec<u8>, manifest: Vec<u8>) -> Self {
        Self {
            digest,
            kind,
            bytes,
            manifest,
        }
    }

    pub(crate) fn manifest(&self) -> &[u8] {
        &self.manifest
    }
}

/// Sizes rather than bytes: a 64 MiB `{:?}` helps no one.
impl fmt::Debug for Pulled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pulled")
            .field("digest", &self.digest)
            .field("kind", &self.kind)
            .field("bytes", &format_args!("{} bytes", self.bytes.len()))
            .field("manifest", &format_args!("{} bytes", self.manifest.len()))
            .finish()
    }
}
