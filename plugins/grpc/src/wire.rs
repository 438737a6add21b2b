//! The bytes of one `grpc.health.v1.Health/Check` call: the request message
//! in gRPC's length-prefixed framing, and the response's frames read back.
//!
//! The two messages are written by hand with prost's derives: one field
//! each, so a `.proto`, `protoc` and a build script would cost more than
//! they give. Field numbers and enum values are those of
//! `grpc/health/v1/health.proto`, which is frozen.
//!
//! Reading follows grpc-go's client (what blackbox_exporter uses), so a
//! broken answer is reported with the status code it would report.

use prost::Message;

use crate::rpc::{Code, RpcError};

/// The method's path: the request URL is the target's origin plus this.
pub const PATH: &str = "/grpc.health.v1.Health/Check";

/// Largest message read, grpc-go's default for a client: a longer one is
/// refused with `RESOURCE_EXHAUSTED`, as there.
pub const MAX_MESSAGE: u32 = 4 * 1024 * 1024;

/// Bytes before each message: a compressed flag and a big-endian length.
const PREFIX: usize = 5;

/// Body bytes to ask the host for: the largest message with its prefix,
/// and one more to see that something followed it.
pub const MAX_BODY: u64 = PREFIX as u64 + MAX_MESSAGE as u64 + 1;

#[derive(Clone, PartialEq, Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct HealthCheckResponse {
    /// A [`ServingStatus`], kept as the number sent: a server may send one
    /// this enum does not know.
    #[prost(enumeration = "ServingStatus", tag = "1")]
    pub status: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ServingStatus {
    Unknown = 0,
    Serving = 1,
    NotServing = 2,
    ServiceUnknown = 3,
}

impl ServingStatus {
    pub const ALL: [ServingStatus; 4] = [
        ServingStatus::Unknown,
        ServingStatus::Serving,
        ServingStatus::NotServing,
        ServingStatus::ServiceUnknown,
    ];

    /// The name in the proto, which blackbox_exporter uses as the label
    /// value.
    pub fn name(self) -> &'static str {
        match self {
            ServingStatus::Unknown => "UNKNOWN",
            ServingStatus::Serving => "SERVING",
            ServingStatus::NotServing => "NOT_SERVING",
            ServingStatus::ServiceUnknown => "SERVICE_UNKNOWN",
        }
    }
}

/// The label value of a status as sent: its name, or its number for one
/// the proto does not know (as Go's generated `String()` writes it).
pub fn status_name(value: i32) -> String {
    ServingStatus::try_from(value).map_or_else(|_| value.to_string(), |s| s.name().to_string())
}

/// The request body: one uncompressed message asking about `service`.
pub fn request_body(service: &str) -> Vec<u8> {
    let message = HealthCheckRequest {
        service: service.to_string(),
    }
    .encode_to_vec();
    // A service name long enough to overflow the prefix cannot be sent.
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut body = Vec::with_capacity(PREFIX + message.len());
    body.push(0);
    body.extend_from_slice(&len.to_be_bytes());
    body.extend_from_slice(&message);
    body
}

/// The one message of a unary response body, or what is wrong with it.
/// `None` is a body without any message: only a failing status may come
/// so, which the caller decides. `encoding` is the `grpc-encoding` header.
pub fn response_message(
    body: &[u8],
    truncated: bool,
    encoding: Option<&str>,
) -> Result<Option<HealthCheckResponse>, RpcError> {
    let Some(Frame { payload, rest }) = frame(body, truncated, encoding)? else {
        return Ok(None);
    };
    let message = HealthCheckResponse::decode(payload).map_err(|e| RpcError {
        code: Code::INTERNAL,
        message: format!("failed to decode the HealthCheckResponse: {e}"),
    })?;
    if !rest.is_empty() || truncated {
        return Err(RpcError {
            code: Code::INTERNAL,
            message: "more than one message in the response of a unary call".into(),
        });
    }
    Ok(Some(message))
}

/// The first message of a body, and what follows it.
struct Frame<'a> {
    payload: &'a [u8],
    rest: &'a [u8],
}

fn frame<'a>(
    body: &'a [u8],
    truncated: bool,
    encoding: Option<&str>,
) -> Result<Option<Frame<'a>>, RpcError> {
    let internal = |message: String| RpcError {
        code: Code::INTERNAL,
        message,
    };
    if body.is_empty() && !truncated {
        return Ok(None);
    }
    let Some((prefix, rest)) = body.split_first_chunk::<PREFIX>() else {
        return Err(internal(format!(
            "the response ended inside a message prefix ({} of {PREFIX} bytes)",
            body.len()
        )));
    };
    let [flag, len @ ..] = *prefix;
    let len = u32::from_be_bytes(len);
    match flag {
        0 => {}
        1 => {
            // The request offers no compression, so none can be undone.
            return Err(match encoding.filter(|e| *e != "identity") {
                None => internal("compressed flag set with identity or empty encoding".into()),
                Some(e) => RpcError {
                    code: Code::UNIMPLEMENTED,
                    message: format!("no decompressor for grpc-encoding {e:?}"),
                },
            });
        }
        other => return Err(internal(format!("unexpected payload format {other}"))),
    }
    if len > MAX_MESSAGE {
        return Err(RpcError {
            code: Code::RESOURCE_EXHAUSTED,
            message: format!("received message larger than max ({len} vs. {MAX_MESSAGE})"),
        });
    }
    let len = len as usize;
    if rest.len() < len {
        return Err(if truncated {
            RpcError {
                code: Code::RESOURCE_EXHAUSTED,
                message: format!(
                    "the {len}-byte message went past the probe's body limit (limits.max_body)"
                ),
            }
        } else {
            internal(format!(
                "the response ended inside a message ({} of {len} bytes)",
                rest.len()
            ))
        });
    }
    let (payload, rest) = rest.split_at(len);
    Ok(Some(Frame { payload, rest }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut body = vec![flag];
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
        body
    }

    fn response(status: i32) -> Vec<u8> {
        framed(0, &HealthCheckResponse { status }.encode_to_vec())
    }

    fn code(r: Result<Option<HealthCheckResponse>, RpcError>) -> Option<Code> {
        r.err().map(|e| e.code)
    }

    #[test]
    fn the_request_is_one_length_prefixed_message() {
        // Field 1, wire type 2 (length-delimited), 3 bytes.
        assert_eq!(request_body("foo"), b"\0\0\0\0\x05\x0a\x03foo");
        // The default value is not encoded: an empty message.
        assert_eq!(request_body(""), b"\0\0\0\0\0");
    }

    #[test]
    fn a_response_message_is_read() {
        let read = |body: &[u8]| response_message(body, false, None).ok().flatten();
        assert_eq!(
            read(&response(1)).map(|m| m.status),
            Some(ServingStatus::Serving as i32)
        );
        // Field 1, varint 2: what a server writes for NOT_SERVING.
        assert_eq!(read(b"\0\0\0\0\x02\x08\x02").map(|m| m.status), Some(2));
        // UNKNOWN is the default, so its message is empty.
        assert_eq!(read(b"\0\0\0\0\0").map(|m| m.status), Some(0));
        // An unknown field is skipped, as protobuf requires.
        assert_eq!(
            read(&framed(0, b"\x08\x01\x10\x07")).map(|m| m.status),
            Some(1)
        );
        assert_eq!(
            response_message(b"", false, None).ok(),
            Some(None),
            "no message at all"
        );
    }

    #[test]
    fn broken_frames_are_internal_errors() {
        assert_eq!(
            code(response_message(b"\0\0\0", false, None)),
            Some(Code::INTERNAL)
        );
        assert_eq!(
            code(response_message(b"\0\0\0\0\x04\x08", false, None)),
            Some(Code::INTERNAL)
        );
        assert_eq!(
            code(response_message(&framed(2, b""), false, None)),
            Some(Code::INTERNAL)
        );
        // Not protobuf: field 1 with wire type 7 does not exist.
        assert_eq!(
            code(response_message(&framed(0, b"\x0f"), false, None)),
            Some(Code::INTERNAL)
        );
        let mut two = response(1);
        two.extend(response(1));
        assert_eq!(
            code(response_message(&two, false, None)),
            Some(Code::INTERNAL)
        );
    }

    #[test]
    fn compression_is_refused_as_grpc_go_refuses_it() {
        let body = framed(1, b"\x08\x01");
        assert_eq!(
            code(response_message(&body, false, None)),
            Some(Code::INTERNAL)
        );
        assert_eq!(
            code(response_message(&body, false, Some("identity"))),
            Some(Code::INTERNAL)
        );
        assert_eq!(
            code(response_message(&body, false, Some("gzip"))),
            Some(Code::UNIMPLEMENTED)
        );
    }

    #[test]
    fn oversized_messages_exhaust_resources() {
        let mut body = vec![0];
        body.extend_from_slice(&(MAX_MESSAGE + 1).to_be_bytes());
        assert_eq!(
            code(response_message(&body, false, None)),
            Some(Code::RESOURCE_EXHAUSTED)
        );
        // Cut by the host's body limit.
        let body = framed(0, &[0x08; 64]);
        assert_eq!(
            code(response_message(&body[..20], true, None)),
            Some(Code::RESOURCE_EXHAUSTED)
        );
    }

    #[test]
    fn status_names_are_the_protos() {
        assert_eq!(status_name(1), "SERVING");
        assert_eq!(status_name(3), "SERVICE_UNKNOWN");
        assert_eq!(status_name(7), "7");
        let all: Vec<&str> = ServingStatus::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            all,
            ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"]
        );
    }
}
