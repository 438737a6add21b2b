//! Plugins and packages installed by OCI reference (`[plugins.X] oci =
//! "registry/name:tag@sha256:..."`, `[packages] include =
//! ["oci://..."]`).
//!
//! A reference must be pinned by digest: what runs is what the operator
//! reviewed, and a tag that moves later changes nothing. Pulled content is
//! verified against the pin and the layer's digest, cached by digest
//! (a cached pin never touches the network again) and handed to the
//! ordinary loaders as a file, whose bytes are hashed again when loaded.
//! Plugins are always compiled here from their WebAssembly bytes; a
//! precompiled artifact from a registry is never executed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmprobe_oci::{Cache, Client, ClientOptions, Credentials, Digest, Kind, Reference};

use super::SecretSource;

/// The prefix that marks a package include as an OCI reference.
pub const OCI_PREFIX: &str = "oci://";

/// How to reach one registry: `[registries."HOST[:PORT]"]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryConfig {
    pub username: Option<String>,
    /// From the same sources as a probe's secrets; read when pulling.
    pub password: Option<SecretSource>,
    /// Longest wait for one request to the registry.
    pub timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            username: None,
            password: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A pulled artifact, as a file the loaders read.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub file: PathBuf,
    /// SHA-256 (hex) of the file's bytes: the loader checks the bytes it
    /// compiles against it.
    pub sha256: String,
}

/// The client for `reference`'s registry, with its credentials when the
/// config names the registry and they can be read.
pub fn client_for(
    reference: &Reference,
    registries: &BTreeMap<String, RegistryConfig>,
) -> Result<Client, String> {
    let config = registries
        .get(reference.registry())
        .cloned()
        .unwrap_or_default();
    let credentials = match (&config.username, &config.password) {
        (Some(username), Some(source)) => {
            let password = source.value().ok_or_else(|| {
                format!(
                    "the password of registry {} cannot be read ({})",
                    reference.registry(),
                    match source {
                        SecretSource::Env(var) =>
                            format!("environment variable {var} is unset or empty"),
                        SecretSource::File(f) =>
                            format!("{} is missing, empty or not a regular file", f.display()),
                    }
                )
            })?;
            Some(Credentials {
                username: username.clone(),
                password,
            })
        }
        _ => None,
    };
    Ok(Client::new(ClientOptions {
        timeout: config.timeout,
        connect_timeout: config.timeout.min(Duration::from_secs(10)),
        credentials,
        ..ClientOptions::default()
    }))
}

/// The cache every OCI pull of this config goes through.
pub fn cache_in(cache_root: &Path) -> Cache {
    Cache::new(cache_root.join("oci"))
}

/// Fetches `text` (a pinned reference) as a `kind`, from the cache when it
/// is there, and returns the file to load.
pub fn fetch(
    text: &str,
    kind: Kind,
    registries: &BTreeMap<String, RegistryConfig>,
    cache_root: &Path,
) -> Result<Fetched, String> {
    let reference: Reference = text.parse().map_err(|e| format!("{e}"))?;
    let Some(pin) = reference.pinned().cloned() else {
        return Err(format!(
            "{reference} is not pinned by digest; `wasmprobe pull {reference}` prints the reference to write (…@sha256:…)"
        ));
    };
    let cache = cache_in(cache_root);
    let pulled = match cache.get(&pin) {
        Some(p) if p.kind == kind => p,
        _ => {
            let client = client_for(&reference, registries)?;
            tracing::info!(reference = %reference, "pulling {kind}");
            client
                .pull_cached(&reference, kind, &cache)
                .map_err(|e| e.to_string())?
        }
    };
    // Loaded from the cache's own verified layer file: the plugin loader
    // hashes what it compiles against `sha256` again, the package loader
    // unpacks it by its own digest.
    let layer = Digest::of(&pulled.bytes);
    Ok(Fetched {
        file: cache.blob_path(&layer),
        sha256: layer.hex().to_string(),
    })
}
