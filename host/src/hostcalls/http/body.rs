//! Reading a response body under a cap, and decoding it under the same cap,
//! so neither a huge body nor a compression bomb can exhaust the host.
//! Every byte kept is first taken from the run's transfer budget, so all
//! the bodies of a `send-batch` together stay within it.

use std::io::Read;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::hostcalls::{Budget, Spent, Usage};

/// Why a body could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("{0}")]
    Wire(#[from] hyper::Error),
    #[error("{0}")]
    Spent(#[from] Spent),
    #[error("cannot decode {coding} body: {cause}")]
    Decode {
        coding: String,
        cause: std::io::Error,
    },
}

/// A body as read.
#[derive(Debug, Default)]
pub(crate) struct ReadBody {
    /// The bytes kept (decoded when decoding was asked for).
    pub(crate) bytes: Vec<u8>,
    /// Bytes received on the wire (counted up to where reading stopped).
    pub(crate) wire_len: u64,
    /// Reading stopped at the cap, or decoding produced more than the cap.
    pub(crate) truncated: bool,
    /// Trailer fields, when the body ended with them.
    pub(crate) trailers: Vec<(String, String)>,
}

/// Reads up to `cap` wire bytes, each taken from the run's transfer
/// budget first. Stops (without draining) at the cap.
///
/// A body that announces its length (`length`, from Content-Length) takes
/// it, up to the cap, before the first byte is read: bodies of a batch
/// that fit the budget are read whole and the rest are refused at once,
/// rather than every body getting a share and none finishing. What the
/// body did not use is given back.
pub(crate) async fn read_capped(
    mut body: Incoming,
    cap: u64,
    length: Option<u64>,
    usage: &Usage,
) -> Result<ReadBody, ReadError> {
    let mut prepaid = length.map_or(0, |n| n.min(cap));
    usage.take(Budget::Transfer, prepaid)?;
    let mut out = ReadBody::default();
    let read = read_into(&mut body, cap, usage, &mut prepaid, &mut out).await;
    usage.give_back(Budget::Transfer, prepaid);
    read.map(|()| out)
}

async fn read_into(
    body: &mut Incoming,
    cap: u64,
    usage: &Usage,
    prepaid: &mut u64,
    out: &mut ReadBody,
) -> Result<(), ReadError> {
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    take_trailers(&trailers, usage, out)?;
                }
                continue;
            }
        };
        out.wire_len += data.len() as u64;
        let room = cap.saturating_sub(out.bytes.len() as u64) as usize;
        let kept = data.len().min(room);
        let covered = (kept as u64).min(*prepaid);
        *prepaid -= covered;
        usage.take(Budget::Transfer, kept as u64 - covered)?;
        out.bytes.extend_from_slice(&data[..kept]);
        if kept < data.len() {
            out.truncated = true;
            break;
        }
    }
    Ok(())
}

/// Most trailer fields kept, and most bytes of each.
const MAX_TRAILERS: usize = 64;
const MAX_TRAILER_BYTES: usize = 8 << 10;

/// Keeps the trailer fields (bounded), taken from the transfer budget.
fn take_trailers(
    trailers: &http::HeaderMap,
    usage: &Usage,
    out: &mut ReadBody,
) -> Result<(), ReadError> {
    for (name, value) in trailers.iter().take(MAX_TRAILERS) {
        let bytes = value.as_bytes();
        let mut value =
            String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_TRAILER_BYTES)]).into_owned();
        // A multi-byte character cut at the limit became U+FFFD: keep the
        // bound in bytes.
        while value.len() > MAX_TRAILER_BYTES {
            value.pop();
        }
        usage.take(Budget::Transfer, (name.as_str().len() + value.len()) as u64)?;
        out.trailers.push((name.as_str().to_string(), value));
    }
    Ok(())
}

/// Content codings the host can decode.
pub(crate) const ACCEPT_ENCODING: &str = "gzip, deflate";

/// Decodes a body per its `Content-Encoding`, producing at most `cap`
/// bytes, and no more than the transfer budget has left beyond the wire
/// bytes already taken. Unknown codings are left as they are.
pub(crate) fn decode(
    encoding: Option<&str>,
    body: ReadBody,
    cap: u64,
    usage: &Usage,
) -> Result<ReadBody, ReadError> {
    let coding = encoding.map(|e| e.trim().to_ascii_lowercase());
    let raw = Bytes::from(body.bytes);
    let mut decoded = Vec::new();
    let budget_room = (raw.len() as u64).saturating_add(usage.left(Budget::Transfer));
    let limit = cap.min(budget_room).saturating_add(1);
    let result = match coding.as_deref() {
        Some("gzip") | Some("x-gzip") => flate2::read::MultiGzDecoder::new(&raw[..])
            .take(limit)
            .read_to_end(&mut decoded),
        Some("deflate") => {
            // Servers send both zlib-wrapped and raw deflate under this name.
            let zlib = flate2::read::ZlibDecoder::new(&raw[..])
                .take(limit)
                .read_to_end(&mut decoded);
            if zlib.is_err() {
                decoded.clear();
                flate2::read::DeflateDecoder::new(&raw[..])
                    .take(limit)
                    .read_to_end(&mut decoded)
            } else {
                zlib
            }
        }
        _ => {
            return Ok(ReadBody {
                bytes: raw.to_vec(),
                ..body
            });
        }
    };
    match result {
        // A body cut at the wire cap ends mid-stream: keep what decoded.
        Err(_) if body.truncated => {}
        Err(cause) => {
            return Err(ReadError::Decode {
                coding: coding.unwrap_or_default(),
                cause,
            });
        }
        Ok(_) => {}
    }
    let truncated = body.truncated || decoded.len() as u64 > cap;
    decoded.truncate(cap as usize);
    // The wire bytes were taken while reading; what decoding added is
    // taken now (refused when it passes the budget).
    usage.take(
        Budget::Transfer,
        (decoded.len() as u64).saturating_sub(raw.len() as u64),
    )?;
    Ok(ReadBody {
        bytes: decoded,
        wire_len: body.wire_len,
        truncated,
        trailers: body.trailers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let _ = e.write_all(data);
        e.finish().unwrap_or_default()
    }

    #[test]
    fn gzip_is_decoded() {
        let body = ReadBody {
            bytes: gzip(b"hello"),
            wire_len: 0,
            truncated: false,
            trailers: Vec::new(),
        };
        let out = decode(Some("gzip"), body, 100, &Usage::default()).map(|b| b.bytes);
        assert_eq!(out.ok().as_deref(), Some(&b"hello"[..]));
    }

    #[test]
    fn a_bomb_stops_at_the_cap() {
        let bomb = gzip(&vec![0u8; 50 << 20]);
        assert!(bomb.len() < 200 << 10);
        let body = ReadBody {
            bytes: bomb,
            wire_len: 0,
            truncated: false,
            trailers: Vec::new(),
        };
        let out = decode(Some("gzip"), body, 1 << 20, &Usage::default());
        let out = out.ok();
        assert_eq!(out.as_ref().map(|b| b.bytes.len()), Some(1 << 20));
        assert_eq!(out.map(|b| b.truncated), Some(true));
    }

    #[test]
    fn identity_passes_through() {
        let body = ReadBody {
            bytes: b"abc".to_vec(),
            wire_len: 3,
            truncated: false,
            trailers: Vec::new(),
        };
        let out = decode(None, body, 10, &Usage::default()).map(|b| b.bytes);
        assert_eq!(out.ok().as_deref(), Some(&b"abc"[..]));
    }

    #[test]
    fn a_bomb_stops_at_the_run_budget_below_the_cap() {
        let usage = Usage::new(&crate::config::Limits {
            max_transfer: 300 << 10,
            ..crate::config::Limits::default()
        });
        let bomb = gzip(&vec![0u8; 50 << 20]);
        let wire = bomb.len() as u64;
        assert!(usage.take(Budget::Transfer, wire).is_ok());
        let body = ReadBody {
            bytes: bomb,
            wire_len: wire,
            truncated: false,
            trailers: Vec::new(),
        };
        let out = decode(Some("gzip"), body, 10 << 20, &usage);
        assert!(matches!(out, Err(ReadError::Spent(_))), "{out:?}");
        assert_eq!(usage.left(Budget::Transfer), (300 << 10) - wire);
    }
}
