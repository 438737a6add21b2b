//! Record and replay of a run's network exchanges, so a plugin author can
//! test a plugin deterministically with no network.
//!
//! `wasmprobe probe --record FILE` keeps every `http.send`,
//! `http.send-batch` and `icmp.echo` call with its answer; `--replay FILE`
//! answers the same calls from the file, in order, and never opens a
//! socket. A call that differs from the recording gets an error value
//! naming the difference, and the command fails. Secret values a run read
//! are written as `[redacted]`, and compared that way on replay.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::bindings::wasmprobe::plugin::http::{HttpError, Request, Response};
use crate::bindings::wasmprobe::plugin::icmp::{EchoRequest, EchoResult, IcmpError};
use crate::hostcalls::secrets::redact;

/// Version of the file format; bumped on any incompatible change.
const FORMAT_VERSION: u32 = 1;

/// One host call and what it returned.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "kebab-case")]
pub enum Exchange {
    HttpSend {
        request: Request,
        result: Box<Result<Response, HttpError>>,
    },
    HttpSendBatch {
        requests: Vec<Request>,
        concurrency: u32,
        results: Vec<Result<Response, HttpError>>,
    },
    IcmpEcho {
        request: EchoRequest,
        result: Result<EchoResult, IcmpError>,
    },
}

impl Exchange {
    fn call(&self) -> &'static str {
        match self {
            Exchange::HttpSend { .. } => "http.send",
            Exchange::HttpSendBatch { .. } => "http.send-batch",
            Exchange::IcmpEcho { .. } => "icmp.echo",
        }
    }
}

/// A recording as stored on disk (JSON).
#[derive(Debug, Serialize, Deserialize)]
pub struct Recording {
    pub version: u32,
    pub probe: String,
    pub target: String,
    pub exchanges: Vec<Exchange>,
}

/// Why a recording could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TapeError {
    #[error("cannot read recording {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("recording {path} is not a wasmprobe recording: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error(
        "recording {path} has format version {found}; this wasmprobe reads version {FORMAT_VERSION}"
    )]
    Version { path: String, found: u32 },
    #[error("cannot write recording {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug)]
enum Mode {
    Record(Vec<Exchange>),
    Replay(VecDeque<Exchange>),
}

/// The tape of one run, shared by its host calls.
#[derive(Debug)]
pub struct Tape {
    mode: Mutex<Mode>,
    mismatches: Mutex<Vec<String>>,
    /// Secret values the recorded run read, redacted when saved.
    revealed: Mutex<Vec<String>>,
}

/// What the live call was, to compare with or to store.
pub enum Call<'a> {
    HttpSend(&'a Request),
    HttpSendBatch(&'a [Request], u32),
    IcmpEcho(&'a EchoRequest),
}

impl Tape {
    pub fn recorder() -> Tape {
        Tape {
            mode: Mutex::new(Mode::Record(Vec::new())),
            mismatches: Mutex::new(Vec::new()),
            revealed: Mutex::new(Vec::new()),
        }
    }

    /// Reads a recording; the probe name and target it was made with come
    /// back for the caller to use.
    pub fn player(path: &Path) -> Result<(Tape, Recording), TapeError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TapeError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut recording: Recording =
            serde_json::from_str(&text).map_err(|source| TapeError::Parse {
                path: shown.clone(),
                source,
            })?;
        if recording.version != FORMAT_VERSION {
            return Err(TapeError::Version {
                path: shown,
                found: recording.version,
            });
        }
        let exchanges = std::mem::take(&mut recording.exchanges);
        let tape = Tape {
            mode: Mutex::new(Mode::Replay(exchanges.into())),
            mismatches: Mutex::new(Vec::new()),
            revealed: Mutex::new(Vec::new()),
        };
        Ok((tape, recording))
    }

    pub fn replaying(&self) -> bool {
        matches!(*lock(&self.mode), Mode::Replay(_))
    }

    /// Stores a live exchange (record mode only), with the secrets the
    /// run has read so far.
    pub fn record(&self, exchange: Exchange, revealed: &[String]) {
        if let Mode::Record(list) = &mut *lock(&self.mode) {
            list.push(exchange);
        }
        let mut known = lock(&self.revealed);
        for r in revealed {
            if !known.contains(r) {
                known.push(r.clone());
            }
        }
    }

    /// The recorded answer to `call`, or `Err(why)` when the next recorded
    /// call is another one. Secret values in the live call are compared
    /// redacted, as they were stored.
    pub fn replay(&self, call: Call<'_>, revealed: &[String]) -> Result<Exchange, String> {
        let mut mode = lock(&self.mode);
        let Mode::Replay(queue) = &mut *mode else {
            return Err("not replaying".to_string());
        };
        let live = match call {
            Call::HttpSend(r) => ("http.send", json(r, revealed)),
            Call::HttpSendBatch(rs, c) => ("http.send-batch", json(&(rs, c), revealed)),
            Call::IcmpEcho(r) => ("icmp.echo", json(r, revealed)),
        };
        let why = match queue.front() {
            None => format!("{} was called, but the recording has no more calls", live.0),
            Some(next) => {
                let stored = match next {
                    Exchange::HttpSend { request, .. } => json(request, &[]),
                    Exchange::HttpSendBatch {
                        requests,
                        concurrency,
                        ..
                    } => json(&(requests, concurrency), &[]),
                    Exchange::IcmpEcho { request, .. } => json(request, &[]),
                };
                if next.call() == live.0 && stored == live.1 {
                    return queue.pop_front().ok_or_else(String::new);
                }
                format!(
                    "{} {} differs from the recorded {} {}",
                    live.0,
                    live.1,
                    next.call(),
                    stored
                )
            }
        };
        lock(&self.mismatches).push(why.clone());
        Err(format!("replay: {why}"))
    }

    /// Calls that did not match, and recorded calls never made.
    pub fn problems(&self) -> Vec<String> {
        let mut out = lock(&self.mismatches).clone();
        if let Mode::Replay(queue) = &*lock(&self.mode)
            && !queue.is_empty()
        {
            out.push(format!(
                "{} recorded call(s) were not made (next: {})",
                queue.len(),
                queue.front().map_or("", Exchange::call)
            ));
        }
        out
    }

    /// Writes what was recorded, secrets redacted.
    pub fn save(&self, path: &Path, probe: &str, target: &str) -> Result<usize, TapeError> {
        let exchanges = match &*lock(&self.mode) {
            Mode::Record(list) => list.clone(),
            Mode::Replay(_) => Vec::new(),
        };
        let n = exchanges.len();
        let recording = Recording {
            version: FORMAT_VERSION,
            probe: probe.to_string(),
            target: target.to_string(),
            exchanges,
        };
        let text = serde_json::to_string_pretty(&recording).unwrap_or_default();
        let text = redact_json(&text, &lock(&self.revealed));
        std::fs::write(path, text + "\n").map_err(|source| TapeError::Write {
            path: path.display().to_string(),
            source,
        })?;
        Ok(n)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn json<T: Serialize>(value: &T, revealed: &[String]) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    redact_json(&text, revealed)
}

/// Replaces each secret, as it appears inside JSON strings, by the
/// redaction marker.
fn redact_json(text: &str, revealed: &[String]) -> String {
    if revealed.is_empty() {
        return text.to_string();
    }
    let escaped: Vec<String> = revealed
        .iter()
        .map(|s| {
            let quoted = serde_json::to_string(s).unwrap_or_default();
            quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .unwrap_or_default()
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .collect();
    redact(&escaped, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::wasmprobe::plugin::icmp::ErrorKind;

    fn echo(target: &str) -> EchoRequest {
        EchoRequest {
            target: target.to_string(),
            count: 1,
            interval_ms: 10,
            timeout_ms: 100,
            payload_size: 56,
            ttl: None,
            preferred_ip_protocol: None,
            ip_protocol_fallback: true,
            source: None,
        }
    }

    fn failed() -> Result<EchoResult, IcmpError> {
        Err(IcmpError {
            kind: ErrorKind::Io,
            message: "down".to_string(),
            resolve: 0.0,
        })
    }

    #[test]
    fn a_recording_replays_in_order_and_reports_differences() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("run.json");
        let rec = Tape::recorder();
        rec.record(
            Exchange::IcmpEcho {
                request: echo("127.0.0.1"),
                result: failed(),
            },
            &[],
        );
        assert_eq!(rec.save(&path, "p", "127.0.0.1").ok(), Some(1));

        let (tape, meta) = Tape::player(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(meta.probe, "p");
        assert!(tape.replaying());
        let other = tape.replay(Call::IcmpEcho(&echo("127.0.0.2")), &[]);
        assert!(other.is_err_and(|e| e.contains("differs")));
        let same = tape.replay(Call::IcmpEcho(&echo("127.0.0.1")), &[]);
        assert!(matches!(same, Ok(Exchange::IcmpEcho { .. })));
        assert!(
            tape.replay(Call::IcmpEcho(&echo("127.0.0.1")), &[])
                .is_err()
        );
        assert_eq!(tape.problems().len(), 2);
    }

    #[test]
    fn secrets_are_stored_and_compared_redacted() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("run.json");
        let rec = Tape::recorder();
        let secret = vec!["s3cr\"et".to_string()];
        rec.record(
            Exchange::IcmpEcho {
                request: echo("s3cr\"et.example"),
                result: failed(),
            },
            &secret,
        );
        rec.save(&path, "p", "t").unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(!text.contains("s3cr"), "{text}");
        let (tape, _) = Tape::player(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            tape.replay(Call::IcmpEcho(&echo("s3cr\"et.example")), &secret)
                .is_ok()
        );
    }

    #[test]
    fn a_foreign_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("x.json");
        std::fs::write(
            &path,
            "{\"version\": 9, \"probe\": \"p\", \"target\": \"t\", \"exchanges\": []}",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let err = Tape::player(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("x.json") && err.contains("version 9"), "{err}");
    }
}
