//! Push and pull wasmprobe plugins and probe packages to and from OCI
//! distribution registries (ghcr.io, Docker Hub, Harbor, `registry:2`, …).
//!
//! A plugin is stored in the wasm OCI artifact layout of the
//! component-model ecosystem, so plugins pushed by wasm-pkg-tools or
//! wasmCloud can be pulled here and the other way round. A probe package
//! uses the same shape with media types of its own (see [`Kind`]).
//!
//! ```no_run
//! use wasmprobe_oci::{Cache, Client, ClientOptions, Kind, Reference};
//!
//! # fn main() -> Result<(), wasmprobe_oci::OciError> {
//! let client = Client::new(ClientOptions::default());
//! let tag: Reference = "127.0.0.1:5000/team/http-health:v1".parse()?;
//! let digest = client.push(&tag, Kind::Plugin, b"\0asm...")?;
//! let pinned = tag.with_digest(digest);
//! println!("pushed {pinned}");
//!
//! let cache = Cache::new("/var/cache/wasmprobe/oci");
//! let plugin = client.pull_cached(&pinned, Kind::Plugin, &cache)?;
//! assert_eq!(plugin.digest, *pinned.pinned().unwrap_or(&plugin.digest));
//! # Ok(())
//! # }
//! ```
//!
//! What the crate guarantees and what it leaves to the caller:
//! - A pinned reference yields exactly the pinned content or an error;
//!   every pulled layer is checked against its manifest's digest and size.
//! - Plain HTTP is used only for loopback registries; everything else is
//!   HTTPS (rustls, webpki roots). Credentials never follow a redirect to
//!   another host.
//! - No request runs longer than [`ClientOptions::timeout`] and no body is
//!   read beyond its cap.
//! - The crate never reads credentials from the environment or files, and
//!   never logs: the caller decides where secrets come from and what to
//!   print.

mod artifact;
mod auth;
mod cache;
mod client;
mod digest;
mod error;
mod manifest;
mod reference;
mod transport;

pub use artifact::Pulled;
pub use auth::Credentials;
pub use cache::Cache;
pub use client::{Client, ClientOptions};
pub use digest::Digest;
pub use error::OciError;
pub use manifest::Kind;
pub use reference::Reference;
