//! HTTP for registries: which URLs may be fetched, with which header,
//! within how long, and how failures read.
//!
//! Invariants this module owns:
//! - Plain `http` only to loopback hosts (`localhost`, 127.0.0.0/8, `::1`),
//!   checked for every URL including redirect targets and token realms.
//! - Redirects are followed here, not by the HTTP client, so that the
//!   `Authorization` header goes only to the origin (scheme, host, port)
//!   the caller addressed: blob GETs are commonly redirected to object
//!   storage on another host, which must never see registry credentials.
//! - One deadline covers a request and its redirects, including reading
//!   the body: a registry that accepts and then stalls fails with a
//!   timeout naming the host, never hangs the caller.
//! - Bodies are read with a cap; nothing is buffered unbounded.
//!
//! TLS is rustls with the webpki roots. The crypto provider is rustls'
//! process default when one is installed, ring otherwise (the HTTP
//! client's `rustls` feature); nothing needs installing.

use std::time::{Duration, Instant};

use ureq::http::{self, Method, StatusCode};
use url::{Host, Url};

use crate::error::OciError;

/// More hops than any registry-to-storage redirect chain needs.
const MAX_REDIRECTS: usize = 5;

/// Error bodies and token answers are small JSON documents.
const MAX_SMALL_BODY: u64 = 1 << 20;

/// One outgoing request. Borrowed parts so that a retry with other
/// credentials does not copy a 64 MiB body.
#[derive(Debug, Clone)]
pub(crate) struct Request<'a> {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) accept: Option<&'a str>,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) body: Option<&'a [u8]>,
}

impl<'a> Request<'a> {
    pub(crate) fn new(method: Method, url: Url) -> Self {
        Self {
            method,
            url,
            accept: None,
            content_type: None,
            body: None,
        }
    }

    pub(crate) fn accept(mut self, accept: &'a str) -> Self {
        self.accept = Some(accept);
        self
    }

    pub(crate) fn body(mut self, content_type: &'a str, body: &'a [u8]) -> Self {
        self.content_type = Some(content_type);
        self.body = Some(body);
        self
    }
}

/// A response, with the URL it finally came from (after redirects),
/// against which a relative `Location` must be resolved.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) inner: http::Response<ureq::Body>,
    pub(crate) url: Url,
}

impl Response {
    pub(crate) fn status(&self) -> StatusCode {
        self.inner.status()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn headers(&self, name: &str) -> impl Iterator<Item = &str> {
        self.inner
            .headers()
            .get_all(name)
            .into_iter()
            .filter_map(|v| v.to_str().ok())
    }

    pub(crate) fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }
}

/// The HTTP agent and the time limits every request obeys.
#[derive(Debug)]
pub(crate) struct Transport {
    agent: ureq::Agent,
    timeout: Duration,
    connect_timeout: Duration,
}

impl Transport {
    pub(crate) fn new(timeout: Duration, connect_timeout: Duration) -> Self {
        let config = ureq::Agent::config_builder()
            // Statuses are the registry's answer, handled by the caller.
            .http_status_as_error(false)
            // Redirects are ours to follow (see the module doc).
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(connect_timeout))
            .user_agent(concat!("wasmprobe-oci/", env!("CARGO_PKG_VERSION")))
            // Blob bytes must arrive exactly as hashed: never let a
            // transparent decoder (enabled by feature unification
            // elsewhere in a build) touch them.
            .accept_encoding(ureq::config::AutoHeaderValue::None)
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
            timeout,
            connect_timeout,
        }
    }

    /// Sends `request`, following redirects for GET and HEAD. The
    /// `authorization` header goes to the original origin only.
    pub(crate) fn send(
        &self,
        request: &Request<'_>,
        authorization: Option<&str>,
    ) -> Result<Response, OciError> {
        let deadline = Instant::now() + self.timeout;
        let follows = request.method == Method::GET || request.method == Method::HEAD;
        let mut url = request.url.clone();
        for hop in 0..=MAX_REDIRECTS {
            check_transport(&url)?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(OciError::Timeout {
                    host: host_label(&url),
                    after: self.timeout,
                });
            }
            let authorization = authorization.filter(|_| same_origin(&url, &request.url));
            let inner = self.once(request, &url, authorization, remaining)?;
            let redirect = matches!(inner.status().as_u16(), 301 | 302 | 303 | 307 | 308);
            if !(redirect && follows) {
                return Ok(Response { inner, url });
            }
            if hop == MAX_REDIRECTS {
                break;
            }
            let location = inner
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| OciError::Protocol {
                    registry: host_label(&url),
                    detail: format!("{} redirect without a Location header", inner.status()),
                })?;
            url = url.join(location).map_err(|e| OciError::Protocol {
                registry: host_label(&url),
                detail: format!("redirect to an invalid location {location:?}: {e}"),
            })?;
        }
        Err(OciError::Protocol {
            registry: host_label(&request.url),
            detail: format!("more than {MAX_REDIRECTS} redirects for {}", request.url),
        })
    }

    fn once(
        &self,
        request: &Request<'_>,
        url: &Url,
        authorization: Option<&str>,
        remaining: Duration,
    ) -> Result<http::Response<ureq::Body>, OciError> {
        let host = host_label(url);
        let mut builder = http::Request::builder()
            .method(request.method.clone())
            .uri(url.as_str());
        if let Some(accept) = request.accept {
            builder = builder.header("accept", accept);
        }
        if let Some(content_type) = request.content_type {
            builder = builder.header("content-type", content_type);
        }
        if let Some(authorization) = authorization {
            builder = builder.header("authorization", authorization);
        }
        let invalid = |e: http::Error| OciError::Protocol {
            registry: host.clone(),
            detail: format!("cannot build a request for {url}: {e}"),
        };
        let result = match request.body {
            Some(body) => {
                let req = builder.body(body).map_err(invalid)?;
                let req = self
                    .agent
                    .configure_request(req)
                    .timeout_global(Some(remaining))
                    .build();
                self.agent.run(req)
            }
            None => {
                let req = builder.body(()).map_err(invalid)?;
                let req = self
                    .agent
                    .configure_request(req)
                    .timeout_global(Some(remaining))
                    .build();
                self.agent.run(req)
            }
        };
        result.map_err(|e| self.map_error(e, host))
    }

    /// Reads at most `limit` bytes of the body; `Ok(None)` when there is
    /// more, so the caller can name what was too large.
    pub(crate) fn read_capped(
        &self,
        response: &mut Response,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, OciError> {
        let host = host_label(&response.url);
        match response
            .inner
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
        {
            Ok(bytes) => Ok(Some(bytes)),
            Err(ureq::Error::BodyExceedsLimit(_)) => Ok(None),
            Err(e) => Err(self.map_error(e, host)),
        }
    }

    /// Reads a small JSON body (error document, token answer).
    pub(crate) fn read_small(&self, response: &mut Response) -> Result<Vec<u8>, OciError> {
        self.read_capped(response, MAX_SMALL_BODY)?
            .ok_or_else(|| OciError::Protocol {
                registry: host_label(&response.url),
                detail: format!("response to {} is over 1 MiB", response.url),
            })
    }

    /// The first `errors[].code` of a registry error body (`MANIFEST_UNKNOWN`),
    /// or empty. Best effort: the status alone already says what failed.
    pub(crate) fn error_code(&self, response: &mut Response) -> String {
        #[derive(serde::Deserialize)]
        struct Body {
            errors: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            code: String,
        }
        self.read_small(response)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Body>(&bytes).ok())
            .and_then(|b| b.errors.into_iter().next())
            .map(|e| e.code)
            .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_default()
    }

    fn map_error(&self, error: ureq::Error, host: String) -> OciError {
        use std::io::ErrorKind;
        match error {
            ureq::Error::Timeout(ureq::Timeout::Connect) => OciError::Timeout {
                host,
                after: self.connect_timeout,
            },
            ureq::Error::Timeout(_) => OciError::Timeout {
                host,
                after: self.timeout,
            },
            ureq::Error::Io(e) if e.kind() == ErrorKind::TimedOut => OciError::Timeout {
                host,
                after: self.timeout,
            },
            ureq::Error::HostNotFound => OciError::Unreachable {
                host,
                detail: "host not found".to_owned(),
            },
            ureq::Error::ConnectionFailed => OciError::Unreachable {
                host,
                detail: "connection failed".to_owned(),
            },
            ureq::Error::Io(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionRefused
                        | ErrorKind::AddrNotAvailable
                        | ErrorKind::NetworkUnreachable
                        | ErrorKind::HostUnreachable
                ) =>
            {
                OciError::Unreachable {
                    host,
                    detail: e.to_string(),
                }
            }
            ureq::Error::Rustls(e) => OciError::Unreachable {
                host,
                detail: format!("TLS: {e}"),
            },
            ureq::Error::Tls(e) => OciError::Unreachable {
                host,
                detail: format!("TLS: {e}"),
            },
            other => OciError::Protocol {
                registry: host,
                detail: other.to_string(),
            },
        }
    }
}

/// The base URL (`scheme://host[:port]/`) of a registry as written in a
/// reference: `http` for loopback, `https` for everything else.
pub(crate) fn registry_base(registry: &str) -> Result<Url, OciError> {
    // Docker Hub's API lives on another host than its name.
    let host = match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    };
    let invalid = |e: url::ParseError| OciError::InvalidReference {
        input: registry.to_owned(),
        reason: format!("not a usable registry host: {e}"),
    };
    let plain = Url::parse(&format!("http://{host}/")).map_err(invalid)?;
    if is_loopback(&plain) {
        return Ok(plain);
    }
    Url::parse(&format!("https://{host}/")).map_err(invalid)
}

/// Refuses any URL whose traffic would be readable or forgeable on the
/// network: plain http beyond loopback, or another scheme altogether.
pub(crate) fn check_transport(url: &Url) -> Result<(), OciError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(OciError::InsecureTransport {
            host: host_label(url),
        }),
        other => Err(OciError::Protocol {
            registry: host_label(url),
            detail: format!("unsupported URL scheme {other:?} in {url}"),
        }),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// `host` or `host:port` as users write it in references.
pub(crate) fn host_label(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn plain_http_only_for_loopback() {
        for ok in [
            "http://localhost:5000/v2/",
            "http://127.0.0.1/v2/",
            "http://127.9.8.7:1/",
            "http://[::1]:5000/",
            "https://registry.example/",
            "https://10.0.0.1/",
        ] {
            assert!(check_transport(&url(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "http://registry.example/",
            "http://10.0.0.1:5000/",
            "http://[::2]/",
            "http://localhost.example/",
        ] {
            let e = check_transport(&url(bad)).unwrap_err().to_string();
            assert!(e.starts_with("refusing plain http to "), "{bad}: {e}");
        }
        let e = check_transport(&url("ftp://localhost/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported URL scheme \"ftp\""), "{e}");
    }

    #[test]
    fn base_url_scheme_follows_loopback() {
        assert_eq!(
            registry_base("127.0.0.1:5000").unwrap().as_str(),
            "http://127.0.0.1:5000/"
        );
        assert_eq!(
            registry_base("localhost").unwrap().as_str(),
            "http://localhost/"
        );
        assert_eq!(
            registry_base("[::1]:5000").unwrap().as_str(),
            "http://[::1]:5000/"
        );
        assert_eq!(
            registry_base("ghcr.io").unwrap().as_str(),
            "https://ghcr.io/"
        );
        assert_eq!(
            registry_base("docker.io").unwrap().as_str(),
            "https://registry-1.docker.io/"
        );
    }

    #[test]
    fn credentials_stay_with_their_origin() {
        let origin = url("https://r.example/v2/a/blobs/sha256:00");
        assert!(same_origin(&url("https://r.example:443/other"), &origin));
        assert!(!same_origin(&url("https://storage.example/x"), &origin));
        assert!(!same_origin(&url("https://r.example:8443/x"), &origin));
        assert!(!same_origin(&url("http://r.example/x"), &origin));
    }

    #[test]
    fn host_labels_keep_ports_and_brackets() {
        assert_eq!(
            host_label(&url("http://127.0.0.1:5000/v2/")),
            "127.0.0.1:5000"
        );
        assert_eq!(host_label(&url("http://[::1]:5000/")), "[::1]:5000");
        assert_eq!(host_label(&url("https://ghcr.io/")), "ghcr.io");
    }
}
