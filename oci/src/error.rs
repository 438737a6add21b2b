//! The one error type of the crate.
//!
//! Every message names what the user typed or where the fault is (the
//! reference, the registry host, the repository) so that a CLI can print
//! it as is, with `{:#}` for the rare variant that carries a `#[source]`.
//! Messages are lowercase and carry their cause once, in the text or as a
//! source, never both. The HTTP client's own error type never appears in
//! the public API: it is rendered into text where the failure is mapped.

use std::path::PathBuf;
use std::time::Duration;

use crate::manifest::Kind;

/// Why pushing, pulling, resolving or caching an artifact failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// The text given for a reference is not `registry/repository[:tag][@digest]`.
    #[error("invalid reference {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },

    /// The text given for a digest is not `sha256:` and 64 hex digits.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest { input: String, reason: String },

    /// A push names a digest: the digest of what we are about to push is
    /// not known to the user in advance (the config records its creation
    /// time), so such a reference is almost certainly a mistake.
    #[error(
        "cannot push to {reference}: it is pinned to a digest; push to a tag and pin the digest that push prints"
    )]
    PushToPinned { reference: String },

    /// The bytes to push exceed the client's size cap.
    #[error("{kind} for {reference} is {size} bytes, over the {} limit", fmt_size(*.limit))]
    PushTooLarge {
        reference: String,
        kind: Kind,
        size: u64,
        limit: u64,
    },

    /// A host did not complete a request within the configured time.
    #[error("{host} did not answer within {}", fmt_duration(*.after))]
    Timeout { host: String, after: Duration },

    /// A host could not be reached at all (DNS, refused connection, TLS).
    #[error("cannot reach {host}: {detail}")]
    Unreachable { host: String, detail: String },

    /// A URL would have been fetched over plain HTTP from a host that is
    /// not loopback; credentials and artifacts would travel unprotected.
    #[error(
        "refusing plain http to {host}: only loopback registries (localhost, 127.0.0.0/8, ::1) may be used without TLS"
    )]
    InsecureTransport { host: String },

    /// The registry (or its token service) refused us.
    #[error("{status} from registry {registry} for repository {repository}: {}",
        if *.credentials_sent { "credentials refused" } else { "authentication required and no credentials were given" })]
    Unauthorized {
        registry: String,
        repository: String,
        status: u16,
        credentials_sent: bool,
    },

    /// The registry authenticated us but does not allow the operation.
    #[error("registry {registry}: access to repository {repository} denied (403{})", fmt_code(.code))]
    Denied {
        registry: String,
        repository: String,
        code: String,
    },

    /// The tag or manifest digest does not exist in the repository.
    #[error("registry {registry}: repository {repository} has no {what} (404{})", fmt_code(.code))]
    NotFound {
        registry: String,
        repository: String,
        /// `tag v2` or `manifest sha256:…`.
        what: String,
        code: String,
    },

    /// The registry answered with a status this client does not expect.
    #[error("registry {registry}: {action} failed with HTTP {status}{}", fmt_code(.code))]
    Status {
        registry: String,
        action: String,
        status: u16,
        code: String,
    },

    /// The registry's answer breaks the distribution protocol.
    #[error("registry {registry}: {detail}")]
    Protocol { registry: String, detail: String },

    /// A pinned reference resolved to other bytes than the pin.
    #[error("digest mismatch for {reference}: pinned {pinned} but the registry served {served}")]
    DigestMismatch {
        reference: String,
        pinned: String,
        served: String,
    },

    /// A blob's bytes do not match the descriptor naming them.
    #[error(
        "{what} of {reference} is corrupt: the manifest names {expected} but the registry served {actual}"
    )]
    Corrupt {
        reference: String,
        what: &'static str,
        expected: String,
        actual: String,
    },

    /// A manifest or layer is larger than the client accepts.
    #[error("{what} of {reference} is over the {} limit{}", fmt_size(*.limit), fmt_declared(*.declared))]
    TooLarge {
        reference: String,
        what: &'static str,
        limit: u64,
        /// The size the registry announced, when it announced one.
        declared: Option<u64>,
    },

    /// The manifest is valid OCI but not a wasmprobe plugin or package.
    #[error("{reference} is not a wasmprobe artifact: {reason}")]
    NotAnArtifact { reference: String, reason: String },

    /// The artifact is of the other kind than the caller asked for.
    #[error("{reference} is a {found}, not a {expected}")]
    WrongKind {
        reference: String,
        expected: Kind,
        found: Kind,
    },

    /// The cache directory or one of its files cannot be written.
    #[error("cannot write to cache {path}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `30s`, `1500ms`: how a user wrote the timeout, not `30.000s`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `64 MiB` for round sizes, bytes otherwise.
pub(crate) fn fmt_size(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const KIB: u64 = 1 << 10;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

fn fmt_code(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" {code}")
    }
}

fn fmt_declared(declared: Option<u64>) -> String {
    match declared {
        Some(size) => format!(" (it declares {size} bytes)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_like_the_user_wrote_them() {
        assert_eq!(fmt_duration(Duration::from_secs(30)), "30s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(fmt_size(64 << 20), "64 MiB");
        assert_eq!(fmt_size(4 << 10), "4 KiB");
        assert_eq!(fmt_size(1000), "1000 bytes");
    }

    #[test]
    fn messages_name_registry_repository_and_tag() {
        let e = OciError::NotFound {
            registry: "127.0.0.1:5000".into(),
            repository: "team/probe".into(),
            what: "tag v2".into(),
            code: "MANIFEST_UNKNOWN".into(),
        };
        assert_eq!(
            e.to_string(),
            "registry 127.0.0.1:5000: repository team/probe has no tag v2 (404 MANIFEST_UNKNOWN)"
        );
        let e = OciError::Timeout {
            host: "127.0.0.1:5000".into(),
            after: Duration::from_secs(30),
        };
        assert_eq!(e.to_string(), "127.0.0.1:5000 did not answer within 30s");
        let e = OciError::Unauthorized {
            registry: "r.example".into(),
            repository: "a/b".into(),
            status: 401,
            credentials_sent: true,
        };
        assert_eq!(
            e.to_string(),
            "401 from registry r.example for repository a/b: credentials refused"
        );
    }
}
