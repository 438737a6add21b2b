//! What an HTTP/2 exchange means as a gRPC call: its status code (from the
//! `grpc-status` trailer, from the HTTP status when the answer is not gRPC
//! at all, or from the kind of transport failure) and, when the call
//! succeeded, the serving status it returned.
//!
//! The codes are those grpc-go's client reports in each case, since that is
//! what blackbox_exporter puts in `probe_grpc_status_code`: dashboards and
//! alerts built on it then read the same numbers.

use std::fmt;

use wasmprobe_sdk::http::{ErrorKind, HttpVersion, Response};

use crate::wire;

/// A gRPC status code. Codes a server may send beyond the sixteen named
/// ones are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code(pub u32);

impl Code {
    pub const OK: Code = Code(0);
    pub const UNKNOWN: Code = Code(2);
    pub const DEADLINE_EXCEEDED: Code = Code(4);
    pub const PERMISSION_DENIED: Code = Code(7);
    pub const RESOURCE_EXHAUSTED: Code = Code(8);
    pub const UNIMPLEMENTED: Code = Code(12);
    pub const INTERNAL: Code = Code(13);
    pub const UNAVAILABLE: Code = Code(14);
    pub const UNAUTHENTICATED: Code = Code(16);

    pub fn name(self) -> &'static str {
        const NAMES: [&str; 17] = [
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ];
        NAMES.get(self.0 as usize).copied().unwrap_or("CODE")
    }

    /// The code of an answer that is not gRPC, by its HTTP status: the
    /// gRPC spec's table, as grpc-go applies it.
    pub fn from_http_status(status: u16) -> Code {
        match status {
            400 => Code::INTERNAL,
            401 => Code::UNAUTHENTICATED,
            403 => Code::PERMISSION_DENIED,
            404 => Code::UNIMPLEMENTED,
            429 | 502 | 503 | 504 => Code::UNAVAILABLE,
            _ => Code::UNKNOWN,
        }
    }

    /// The code of an exchange that got no answer. grpc-go reports every
    /// transport failure (refused, reset, TLS, not HTTP/2) as UNAVAILABLE
    /// and the end of the deadline as DEADLINE_EXCEEDED; the rest cannot
    /// happen to a call it makes, so they are UNKNOWN.
    pub fn of_transport(kind: ErrorKind) -> Code {
        match kind {
            ErrorKind::Timeout => Code::DEADLINE_EXCEEDED,
            ErrorKind::Dns | ErrorKind::Connect | ErrorKind::Tls | ErrorKind::Protocol => {
                Code::UNAVAILABLE
            }
            ErrorKind::Denied | ErrorKind::InvalidRequest | ErrorKind::TooManyRedirects => {
                Code::UNKNOWN
            }
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// A call that did not succeed at the gRPC level: its code and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: Code,
    pub message: String,
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

/// The serving status the call returned (its number, as sent), or why the
/// call failed. Checks run in grpc-go's order: the response headers, then
/// the message, then the status in the trailers.
pub fn health(resp: &Response) -> Result<i32, RpcError> {
    if resp.version != HttpVersion::Http2 {
        return Err(RpcError {
            code: Code::UNAVAILABLE,
            message: "the server did not speak HTTP/2 (with TLS: it chose no h2 through ALPN)"
                .into(),
        });
    }
    let content_type = resp.header_values("content-type").next();
    let grpc = content_type.is_some_and(is_grpc_content_type);
    if resp.status != 200 || !grpc {
        let mut why = Vec::new();
        if resp.status != 200 {
            why.push(format!("unexpected HTTP status code {}", resp.status));
        }
        if !grpc {
            why.push(match content_type {
                Some(ct) => format!("unexpected content-type {ct:?}"),
                None => "missing content-type".into(),
            });
        }
        return Err(RpcError {
            code: Code::from_http_status(resp.status),
            message: why.join("; "),
        });
    }
    let encoding = resp.header_values("grpc-encoding").next();
    let message = wire::response_message(&resp.body, resp.body_truncated, encoding)?;

    // A trailers-only answer (a failure without a body) carries the status
    // in its one header block.
    let fields: &[(String, String)] = if resp.trailers.is_empty() {
        &resp.headers
    } else {
        &resp.trailers
    };
    let Some(status) = field(fields, "grpc-status") else {
        return Err(if resp.trailers.is_empty() {
            RpcError {
                code: Code::INTERNAL,
                message: "server closed the stream without sending trailers".into(),
            }
        } else {
            RpcError {
                code: Code::UNKNOWN,
                message: "the trailers hold no grpc-status".into(),
            }
        });
    };
    // Read as a 32-bit signed number, then kept as its unsigned bits, as
    // grpc-go does.
    let code = match status.trim().parse::<i32>() {
        Ok(c) => Code(c as u32),
        Err(_) => {
            return Err(RpcError {
                code: Code::INTERNAL,
                message: format!("malformed grpc-status {status:?}"),
            });
        }
    };
    if code != Code::OK {
        return Err(RpcError {
            code,
            message: field(fields, "grpc-message")
                .map(decode_message)
                .unwrap_or_default(),
        });
    }
    match message {
        Some(m) => Ok(m.status),
        None => Err(RpcError {
            code: Code::INTERNAL,
            message: "no response message in a successful unary call".into(),
        }),
    }
}

/// `application/grpc`, alone or with a `+codec` or `;parameters` suffix.
fn is_grpc_content_type(ct: &str) -> bool {
    match ct.strip_prefix("application/grpc") {
        Some(rest) => rest.is_empty() || rest.starts_with(['+', ';']),
        None => false,
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `grpc-message` is percent-encoded UTF-8; a malformed escape is kept as
/// written, as the spec asks.
fn decode_message(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names() {
        assert_eq!(Code(5).to_string(), "NOT_FOUND (5)");
        assert_eq!(Code(16).name(), "UNAUTHENTICATED");
        assert_eq!(Code(17).to_string(), "CODE (17)");
    }

    #[test]
    fn http_statuses_map_as_the_spec_says() {
        let map: Vec<u32> = [400, 401, 403, 404, 429, 500, 502, 503, 504, 200]
            .iter()
            .map(|s| Code::from_http_status(*s).0)
            .collect();
        assert_eq!(map, [13, 16, 7, 12, 14, 2, 14, 14, 14, 2]);
    }

    #[test]
    fn grpc_content_types() {
        assert!(is_grpc_content_type("application/grpc"));
        assert!(is_grpc_content_type("application/grpc+proto"));
        assert!(is_grpc_content_type("application/grpc; charset=utf-8"));
        assert!(!is_grpc_content_type("application/grpc-web"));
        assert!(!is_grpc_content_type("text/html"));
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(decode_message("unknown%20service"), "unknown service");
        assert_eq!(decode_message("caf%C3%A9"), "café");
        assert_eq!(decode_message("100%"), "100%");
        assert_eq!(decode_message("%zz%4"), "%zz%4");
    }
}
