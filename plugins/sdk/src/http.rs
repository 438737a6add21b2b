//! HTTP(S) requests made by the host. Every URL, resolved address and
//! redirect hop must be inside the probe's allow-list; a refusal comes back
//! as an error of kind `denied`.

pub use crate::wasmprobe::plugin::http::{
    Certificate, ErrorKind, HttpError, HttpVersion, IpProtocol, PhaseTimings, Request, Response,
    TlsInfo, send, send_batch,
};

/// A request with the defaults blackbox_exporter users expect: redirects
/// followed (up to 10), HTTP/2 offered, IPv6 preferred with fallback.
pub fn request(method: &str, url: &str) -> Request {
    Request {
        method: method.to_string(),
        url: url.to_string(),
        headers: Vec::new(),
        body: None,
        timeout_ms: None,
        follow_redirects: true,
        max_redirects: 10,
        max_body_bytes: None,
        preferred_ip_protocol: Some(IpProtocol::Ip6),
        ip_protocol_fallback: true,
        enable_http2: true,
        http2_prior_knowledge: false,
        decompress: false,
    }
}

/// A GET request.
pub fn get(url: &str) -> Request {
    request("GET", url)
}

/// Sending as a method, for chaining.
pub trait RequestExt {
    fn send(&self) -> Result<Response, HttpError>;
    fn header(self, name: &str, value: &str) -> Self;
}

impl RequestExt for Request {
    fn send(&self) -> Result<Response, HttpError> {
        send(self)
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

impl Response {
    /// Values of a header, case-insensitively.
    pub fn header_values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(&name))
            .map(|(_, v)| v.as_str())
    }
}
