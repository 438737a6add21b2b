//! `/metrics`: the whole exposition, in the format the client asked for,
//! gzip-compressed when it accepts that.
//!
//! An exposition that fits in one piece is sent whole (with its length);
//! a larger one is written and sent piece by piece, so a scrape of 100,000
//! probes holds one piece of the text at a time, not all of it.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use flate2::write::GzEncoder;
use http_body::{Frame, SizeHint};

use crate::app::App;
use crate::exposition::{Format, Scrape};

/// Below this size compression costs more than it saves.
const GZIP_MIN: usize = 16 << 10;

/// Text written per piece of a streamed scrape.
const PIECE: usize = 256 << 10;

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|c| {
            let mut parts = c.split(';').map(str::trim);
            parts.next().is_some_and(|n| n.eq_ignore_ascii_case("gzip"))
                && parts.all(|p| p.replace(' ', "") != "q=0")
        })
}

pub(super) async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let mut scrape = app.exposition.scrape(format);
    let mut body = String::with_capacity(PIECE + (PIECE >> 4));
    let more = scrape.fill(&mut body, PIECE);
    let content_type = HeaderValue::from_static(format.content_type());
    let gzip = (more || body.len() >= GZIP_MIN) && accepts_gzip(&headers);
    if more {
        let streamed = Streamed {
            scrape,
            first: Some(body),
            gzip: gzip.then(|| GzEncoder::new(Vec::new(), flate2::Compression::fast())),
            done: false,
        };
        let mut response =
            ([(header::CONTENT_TYPE, content_type)], Body::new(streamed)).into_response();
        if gzip {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        return response;
    }
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        if enc.write_all(body.as_bytes()).is_ok()
            && let Ok(gz) = enc.finish()
        {
            return (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
                ],
                gz,
            )
                .into_response();
        }
    }
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The body of a scrape too large for one piece: each frame is the next
/// piece of text (or what gzip made of it so far).
struct Streamed {
    scrape: Scrape,
    /// The piece written before the response started.
    first: Option<String>,
    gzip: Option<GzEncoder<Vec<u8>>>,
    done: bool,
}

impl Streamed {
    /// The next frame's bytes; `None` once everything is sent.
    fn next_frame(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
            if self.done && self.first.is_none() {
                return Ok(self
                    .gzip
                    .take()
                    .map(|gz| gz.finish())
                    .transpose()?
                    .map(Bytes::from));
            }
            let piece = match self.first.take() {
                Some(piece) => piece,
                None => {
                    let mut piece = String::with_capacity(PIECE + (PIECE >> 4));
                    self.done = !self.scrape.fill(&mut piece, PIECE);
                    piece
                }
            };
            match &mut self.gzip {
                None if piece.is_empty() => continue,
                None => return Ok(Some(Bytes::from(piece))),
                Some(gz) => {
                    gz.write_all(piece.as_bytes())?;
                    let out = std::mem::take(gz.get_mut());
                    if !out.is_empty() {
                        return Ok(Some(Bytes::from(out)));
                    }
                }
            }
        }
    }
}

impl HttpBody for Streamed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(
            self.get_mut()
                .next_frame()
                .transpose()
                .map(|r| r.map(Frame::data)),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.first.is_none() && self.gzip.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_acceptance() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0"),
        );
        assert!(!accepts_gzip(&h));
    }
}
