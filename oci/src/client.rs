//! Push, pull and resolve against an OCI distribution registry.
//!
//! The client is synchronous: a push or pull is a handful of sequential
//! requests made by a CLI command or at start-up, and a blocking client
//! keeps an async runtime out of that path. The engine may call it from
//! `spawn_blocking`.
//!
//! Trust comes from digests, not from the registry: a pinned pull checks
//! the manifest bytes against the pin, and every pull checks the layer
//! bytes against the manifest. Sizes are capped before and while reading.

use std::time::Duration;

use ureq::http::{Method, StatusCode};

use crate::artifact::Pulled;
use crate::auth::{Credentials, Session};
use crate::cache::Cache;
use crate::digest::Digest;
use crate::error::OciError;
use crate::manifest::{self, Kind, MANIFEST_ACCEPT, MANIFEST_MEDIA_TYPE, MAX_MANIFEST_SIZE};
use crate::reference::Reference;
use crate::transport::{Request, Response, Transport};

/// How a [`Client`] talks to registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Limit for one HTTP request from its start to the last byte of its
    /// body, redirects included. A registry that accepts the connection
    /// and then says nothing fails after this long. A push or pull makes
    /// several requests (more when the registry asks for a token), each
    /// with this limit. Default 30 s.
    pub timeout: Duration,
    /// Limit for establishing a connection (TCP and TLS). Default 10 s.
    pub connect_timeout: Duration,
    /// Largest plugin or package pushed or pulled. Checked against the
    /// manifest before downloading and enforced while reading. Default
    /// 64 MiB, the engine's own limit for a `.wasm`. Manifests have their
    /// own fixed 4 MiB cap.
    pub max_artifact_size: u64,
    /// Sent only when a registry asks (401), to that registry and to the
    /// token service it names; never to a redirect target on another host.
    /// One client per registry: these are offered to any registry a
    /// reference names.
    pub credentials: Option<Credentials>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_artifact_size: 64 << 20,
            credentials: None,
        }
    }
}

/// A registry client. Cheap to keep; holds a connection pool.
#[derive(Debug)]
pub struct Client {
    transport: Transport,
    max_artifact_size: u64,
    credentials: Option<Credentials>,
}

const OCTET_STREAM: &str = "application/octet-stream";

impl Client {
    /// A client with `options`. Makes no request: registries are first
    /// contacted by [`push`](Self::push), [`pull`](Self::pull) or
    /// [`resolve`](Self::resolve).
    pub fn new(options: ClientOptions) -> Self {
        Self {
            transport: Transport::new(options.timeout, options.connect_timeout),
            max_artifact_size: options.max_artifact_size,
            credentials: options.credentials,
        }
    }

    fn session(&self, reference: &Reference) -> Result<Session<'_>, OciError> {
        Session::new(
            &self.transport,
            self.credentials.as_ref(),
            reference.registry(),
            reference.repository(),
        )
    }

    /// Uploads `bytes` as a `kind` artifact and tags it with the
    /// reference's tag. Returns the manifest digest, which the caller
    /// prints as `registry/repo:tag@digest` for users to pin.
    ///
    /// Blobs the registry already has are not uploaded again. The config
    /// records the push time, so two pushes of the same bytes get
    /// different manifest digests (as with oci-wasm).
    pub fn push(
        &self,
        reference: &Reference,
        kind: Kind,
        bytes: &[u8],
    ) -> Result<Digest, OciError> {
        if reference.pinned().is_some() {
            return Err(OciError::PushToPinned {
                reference: reference.to_string(),
            });
        }
        let size = bytes.len() as u64;
        if size > self.max_artifact_size {
            return Err(OciError::PushTooLarge {
                reference: reference.to_string(),
                kind,
                size,
                limit: self.max_artifact_size,
            });
        }
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let built = manifest::build(kind, bytes, &created);
        let mut session = self.session(reference)?;
        upload_blob(&mut session, &built.layer_descriptor.digest, bytes)?;
        upload_blob(&mut session, &built.config_descriptor.digest, &built.config)?;

        let url = session.url(&format!("manifests/{}", reference.manifest_reference()))?;
        let request = Request::new(Method::PUT, url).body(MANIFEST_MEDIA_TYPE, &built.manifest);
        let mut response = session.send(&request)?;
        if !response.status().is_success() {
            return Err(unexpected(&session, &mut response, "storing the manifest"));
        }
        // A registry that rewrites manifests would break every pin made
        // from the digest we return: refuse to hand out such a digest.
        if let Some(stored) = response.header("docker-content-digest")
            && stored != built.digest.as_str()
        {
            return Err(OciError::Protocol {
                registry: session.registry().to_owned(),
                detail: format!(
                    "stored the manifest for {reference} as {stored} but the bytes sent hash to {}",
                    built.digest
                ),
            });
        }
        Ok(built.digest)
    }

    /// Downloads and verifies the artifact `reference` names, refusing it
    /// unless it is an `expected` artifact.
    ///
    /// A pinned reference is fetched by digest and its manifest bytes must
    /// hash to the pin; the tag, if also written, is ignored. The layer
    /// must match its descriptor in digest and size.
    pub fn pull(&self, reference: &Reference, expected: Kind) -> Result<Pulled, OciError> {
        let mut session = self.session(reference)?;
        let fetched = fetch_manifest(&mut session, reference)?;
        let label = reference.to_string();
        let checked = manifest::check(&label, &fetched.bytes, fetched.content_type.as_deref())?;
        if checked.kind != expected {
            return Err(OciError::WrongKind {
                reference: label,
                expected,
                found: checked.kind,
            });
        }
        let layer = checked.layer;
        if layer.size > self.max_artifact_size {
            return Err(OciError::TooLarge {
                reference: label,
                what: "layer",
                limit: self.max_artifact_size,
                declared: Some(layer.size),
            });
        }

        let url = session.url(&format!("blobs/{}", layer.digest))?;
        let mut response = session.send(&Request::new(Method::GET, url))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                let code = session.transport().error_code(&mut response);
                return Err(OciError::NotFound {
                    registry: session.registry().to_owned(),
                    repository: session.repository().to_owned(),
                    what: format!("blob {} (the layer of {label})", layer.digest),
                    code,
                });
            }
            _ => return Err(unexpected(&session, &mut response, "downloading the layer")),
        }
        let corrupt_size = |actual: String| OciError::Corrupt {
            reference: label.clone(),
            what: "layer",
            expected: format!("{} bytes", layer.size),
            actual,
        };
        if let Some(length) = response.content_length()
            && length != layer.size
        {
            return Err(corrupt_size(format!("{length} bytes")));
        }
        // The descriptor's size is the cap: one byte more is corruption,
        // and the read stops there.
        let Some(bytes) = session.transport().read_capped(&mut response, layer.size)? else {
            return Err(corrupt_size(format!("more than {} bytes", layer.size)));
        };
        if bytes.len() as u64 != layer.size {
            return Err(corrupt_size(format!("{} bytes", bytes.len())));
        }
        let actual = Digest::of(&bytes);
        if actual != layer.digest {
            return Err(OciError::Corrupt {
                reference: label,
                what: "layer",
                expected: layer.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(Pulled::new(
            fetched.digest,
            checked.kind,
            bytes,
            fetched.bytes,
        ))
    }

    /// The manifest digest `reference` currently resolves to, for
    /// `wasmprobe pull` to print what to pin.
    ///
    /// Reads the manifest and hashes it rather than trusting the
    /// registry's `Docker-Content-Digest` header, so the digest printed is
    /// the one a later pinned pull will check. A pinned reference is
    /// verified against its pin. The artifact's layout is not checked.
    pub fn resolve(&self, reference: &Reference) -> Result<Digest, OciError> {
        let mut session = self.session(reference)?;
        Ok(fetch_manifest(&mut session, reference)?.digest)
    }

    /// [`pull`](Self::pull) through `cache`: a pinned reference already
    /// in the cache is served from disk without any request; anything
    /// pulled is stored for next time.
    pub fn pull_cached(
        &self,
        reference: &Reference,
        expected: Kind,
        cache: &Cache,
    ) -> Result<Pulled, OciError> {
        if let Some(pin) = reference.pinned()
            && let Some(pulled) = cache.get(pin)
            && pulled.bytes.len() as u64 <= self.max_artifact_size
        {
            if pulled.kind != expected {
                return Err(OciError::WrongKind {
                    reference: reference.to_string(),
                    expected,
                    found: pulled.kind,
                });
            }
            return Ok(pulled);
        }
        let pulled = self.pull(reference, expected)?;
        cache.put(&pulled)?;
        Ok(pulled)
    }
}

/// Ensures the registry holds `bytes` as blob `digest`: HEAD, then a
/// monolithic upload (POST a session, PUT the bytes with `?digest=`).
fn upload_blob(session: &mut Session<'_>, digest: &Digest, bytes: &[u8]) -> Result<(), OciError> {
    let url = session.url(&format!("blobs/{digest}"))?;
    let mut response = session.send(&Request::new(Method::HEAD, url))?;
    match response.status() {
        StatusCode::OK => return Ok(()),
        StatusCode::NOT_FOUND => {}
        _ => {
            return Err(unexpected(
                session,
                &mut response,
                "checking for an existing blob",
            ));
        }
    }

    let url = session.url("blobs/uploads/")?;
    let request = Request::new(Method::POST, url).body(OCTET_STREAM, &[]);
    let mut response = session.send(&request)?;
    if response.status() != StatusCode::ACCEPTED {
        return Err(unexpected(session, &mut response, "starting a blob upload"));
    }
    let protocol = |detail: String| OciError::Protocol {
        registry: session.registry().to_owned(),
        detail,
    };
    let location = response
        .header("location")
        .ok_or_else(|| protocol("blob upload started without a Location header".to_owned()))?;
    let mut upload = response.url.join(location).map_err(|e| {
        protocol(format!(
            "blob upload Location {location:?} is not a URL: {e}"
        ))
    })?;
    upload
        .query_pairs_mut()
        .append_pair("digest", digest.as_str());

    let request = Request::new(Method::PUT, upload).body(OCTET_STREAM, bytes);
    let mut response = session.send(&request)?;
    if !response.status().is_success() {
        return Err(unexpected(session, &mut response, "uploading a blob"));
    }
    Ok(())
}

struct Fetched {
    bytes: Vec<u8>,
    content_type: Option<String>,
    digest: Digest,
}

/// GETs the manifest, capped, and checks it against the pin if any.
fn fetch_manifest(session: &mut Session<'_>, reference: &Reference) -> Result<Fetched, OciError> {
    let url = session.url(&format!("manifests/{}", reference.manifest_reference()))?;
    let request = Request::new(Method::GET, url).accept(MANIFEST_ACCEPT);
    let mut response = session.send(&request)?;
    match response.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => {
            let code = session.transport().error_code(&mut response);
            return Err(OciError::NotFound {
                registry: session.registry().to_owned(),
                repository: session.repository().to_owned(),
                what: reference.describe_target(),
                code,
            });
        }
        _ => return Err(unexpected(session, &mut response, "fetching the manifest")),
    }
    let too_large = |declared| OciError::TooLarge {
        reference: reference.to_string(),
        what: "manifest",
        limit: MAX_MANIFEST_SIZE,
        declared,
    };
    if let Some(length) = response.content_length()
        && length > MAX_MANIFEST_SIZE
    {
        return Err(too_large(Some(length)));
    }
    let Some(bytes) = session
        .transport()
        .read_capped(&mut response, MAX_MANIFEST_SIZE)?
    else {
        return Err(too_large(None));
    };
    let digest = Digest::of(&bytes);
    if let Some(pin) = reference.pinned()
        && *pin != digest
    {
        return Err(OciError::DigestMismatch {
            reference: reference.to_string(),
            pinned: pin.to_string(),
            served: digest.to_string(),
        });
    }
    Ok(Fetched {
        content_type: response.header("content-type").map(str::to_owned),
        bytes,
        digest,
    })
}

/// The error for a status the operation did not expect, with the
/// registry's error code when it sent one.
fn unexpected(session: &Session<'_>, response: &mut Response, action: &str) -> OciError {
    let status = response.status().as_u16();
    let code = session.transport().error_code(response);
    match status {
        403 => OciError::Denied {
            registry: session.registry().to_owned(),
            repository: session.repository().to_owned(),
            code,
        },
        _ => OciError::Status {
            registry: session.registry().to_owned(),
            action: action.to_owned(),
            status,
            code,
        },
    }
}
