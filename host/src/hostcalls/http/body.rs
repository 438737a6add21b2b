//! Reading a response body under a cap, and decoding it under the same cap,
//! so neither a huge body nor a compression bomb can exhaust the host.

use std::io::Read;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// A body as read.
#[derive(Debug, Default)]
pub(crate) struct ReadBody {
    /// The bytes kept (decoded when decoding was asked for).
    pub(crate) bytes: Vec<u8>,
    /// Bytes received on the wire (counted up to where reading stopped).
    pub(crate) wire_len: u64,
    /// Reading stopped at the cap, or decoding produced more than the cap.
    pub(crate) truncated: bool,
}

/// Reads up to `cap` wire bytes. Stops (without draining) at the cap.
pub(crate) async fn read_capped(mut body: Incoming, cap: u64) -> Result<ReadBody, hyper::Error> {
    let mut out = ReadBody::default();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        out.wire_len += data.len() as u64;
        let room = cap.saturating_sub(out.bytes.len() as u64) as usize;
        if data.len() > room {
            out.bytes.extend_from_slice(&data[..room]);
            out.truncated = true;
            break;
        }
        out.bytes.extend_from_slice(&data);
    }
    Ok(out)
}

/// Content codings the host can decode.
pub(crate) const ACCEPT_ENCODING: &str = "gzip, deflate";

/// Decodes a body per its `Content-Encoding`, producing at most `cap`
/// bytes. Unknown codings are left as they are.
pub(crate) fn decode(encoding: Option<&str>, body: ReadBody, cap: u64) -> Result<ReadBody, String> {
    let coding = encoding.map(|e| e.trim().to_ascii_lowercase());
    let raw = Bytes::from(body.bytes);
    let mut decoded = Vec::new();
    let limit = cap.saturating_add(1);
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
        Err(e) => {
            return Err(format!(
                "cannot decode {} body: {e}",
                coding.unwrap_or_default()
            ));
        }
        Ok(_) => {}
    }
    let truncated = body.truncated || decoded.len() as u64 > cap;
    decoded.truncate(cap as usize);
    Ok(ReadBody {
        bytes: decoded,
        wire_len: body.wire_len,
        truncated,
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
        };
        let out = decode(Some("gzip"), body, 100).map(|b| b.bytes);
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
        };
        let out = decode(Some("gzip"), body, 1 << 20);
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
        };
        let out = decode(None, body, 10).map(|b| b.bytes);
        assert_eq!(out.ok().as_deref(), Some(&b"abc"[..]));
    }
}
