//! Record and replay of a run's network exchanges, so a plugin author can
//! test a plugin deterministically with no network.
//!
//! `wasmprobe probe --record FILE` keeps every call a capability routes
//! through [`Tape::around`] (`http.send`, `http.send-batch`,
//! `icmp.echo`, `dns.query`, and each call of a `tcp` conversation, keyed
//! by the connection's number in the run) with its answer; `--replay FILE` answers the same calls
//! from the file, in order, and never opens a socket. A call that differs from the recording gets an error value
//! naming the difference, and the command fails. Secret values a run read
//! are written as `[redacted]`, and compared that way on replay.
//!
//! Bytes (bodies, TCP data) are stored so a person can edit them: as
//! `{"utf8": "..."}` when they are printable UTF-8 text, `{"base64":
//! "..."}` otherwise (format version 2). A version 1 tape, with bytes as
//! arrays of numbers, still replays.

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::secrets::{Revealed, redact};

/// Version of the file format written; bumped on any incompatible change.
/// Version 2 stores bytes as text or base64, version 1 as number arrays.
const FORMAT_VERSION: u32 = 2;
/// Oldest version still read.
const OLDEST_VERSION: u32 = 1;

/// A host call a tape can record and replay. Its serialised form (a
/// struct) is the call's arguments, stored as the exchange's fields and
/// compared field by field on replay.
pub trait TapedCall: Serialize + Sized {
    /// The call's name on tape: `interface-function`, e.g. `http-send`.
    const NAME: &'static str;
    /// The field that holds the answer.
    const ANSWER: &'static str = "result";
    type Answer: Serialize + DeserializeOwned;

    /// The answer a plugin gets when a replay cannot answer the call.
    fn refused(&self, why: String) -> Self::Answer;

    /// Runs `f` on the call with its byte fields (a body, data sent) cut
    /// to `max` bytes, then puts them back: evidence never copies a large
    /// body whole. Calls without large bytes keep the default.
    fn with_cut<R>(&mut self, _max: usize, f: impl FnOnce(&Self) -> R) -> R {
        f(self)
    }

    /// [`TapedCall::with_cut`] for the call's answer.
    fn with_answer_cut<R>(
        answer: &mut Self::Answer,
        _max: usize,
        f: impl FnOnce(&Self::Answer) -> R,
    ) -> R {
        f(answer)
    }
}

/// Cuts `bytes` to `max`, handing back the whole for [`restore`].
pub(crate) fn cut_bytes(bytes: &mut Vec<u8>, max: usize) -> Option<Vec<u8>> {
    if bytes.len() <= max {
        return None;
    }
    let kept = bytes[..max].to_vec();
    Some(std::mem::replace(bytes, kept))
}

/// Puts back what [`cut_bytes`] took.
pub(crate) fn restore(bytes: &mut Vec<u8>, whole: Option<Vec<u8>>) {
    if let Some(whole) = whole {
        *bytes = whole;
    }
}

/// Bytes of a body or of data a run's evidence keeps.
pub const EVIDENCE_BYTES: usize = 1024;

/// One host call and what it returned: `{"call": NAME, <arguments>,
/// <ANSWER>: answer}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exchange {
    pub call: String,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// `http-send` is shown as `http.send`, as the WIT names it.
fn shown(call: &str) -> String {
    call.replacen('-', ".", 1)
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
        "recording {path} has format version {found}; this wasmprobe reads versions {OLDEST_VERSION} to {FORMAT_VERSION}"
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
    /// Evidence, not a tape to replay: bytes kept are cut to this.
    cut: Option<usize>,
    mismatches: Mutex<Vec<String>>,
    /// Secret values the recorded run read, redacted when saved.
    revealed: Mutex<Vec<String>>,
}

impl Tape {
    pub fn recorder() -> Tape {
        Tape {
            mode: Mutex::new(Mode::Record(Vec::new())),
            cut: None,
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
        if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&recording.version) {
            return Err(TapeError::Version {
                path: shown,
                found: recording.version,
            });
        }
        let mut exchanges = std::mem::take(&mut recording.exchanges);
        // In memory, bytes are number arrays again, as serde reads them.
        for exchange in &mut exchanges {
            for value in exchange.fields.values_mut() {
                bytes_from_text(value);
            }
        }
        let tape = Tape {
            mode: Mutex::new(Mode::Replay(exchanges.into())),
            cut: None,
            mismatches: Mutex::new(Vec::new()),
            revealed: Mutex::new(Vec::new()),
        };
        Ok((tape, recording))
    }

    /// A recorder of a run's evidence: every call and answer, with bodies
    /// and data cut to their first [`EVIDENCE_BYTES`] (see
    /// [`Tape::evidence`]).
    pub fn evidence_recorder() -> Tape {
        Tape {
            cut: Some(EVIDENCE_BYTES),
            ..Tape::recorder()
        }
    }

    /// What an evidence recorder kept, as the run's evidence shows it:
    /// secrets and credentials redacted, bytes as text or base64, cut to
    /// their first [`EVIDENCE_BYTES`].
    pub fn evidence(&self) -> Vec<Value> {
        let Some(max) = self.cut else {
            return Vec::new();
        };
        let exchanges = match &*lock(&self.mode) {
            Mode::Record(list) => list.clone(),
            Mode::Replay(_) => return Vec::new(),
        };
        let revealed = lock(&self.revealed).clone();
        exchanges
            .into_iter()
            .map(|e| {
                let mut value = serde_json::to_value(e).unwrap_or(Value::Null);
                // Redacted at the length recorded (which kept a window past
                // `max` for this), then cut, so no secret leaves a prefix.
                redact_bytes(&mut value, &revealed);
                redact_credentials(&mut value);
                cut_arrays(&mut value, max);
                bytes_to_text(&mut value);
                let text = redact_json(&json(&value), &revealed);
                serde_json::from_str(&text).unwrap_or(Value::Null)
            })
            .collect()
    }

    pub fn replaying(&self) -> bool {
        matches!(*lock(&self.mode), Mode::Replay(_))
    }

    /// Makes `call` through `live`, or answers it from the recording when
    /// replaying; a recorder keeps the call and its answer. With no tape
    /// the call is simply made: this is the one place a host call meets
    /// record/replay.
    pub async fn around<C, F, Fut>(
        tape: Option<&Tape>,
        revealed: &Revealed,
        call: C,
        live: F,
    ) -> C::Answer
    where
        C: TapedCall,
        F: FnOnce(C) -> Fut,
        Fut: Future<Output = C::Answer>,
    {
        let Some(tape) = tape else {
            return live(call).await;
        };
        let mut call = call;
        // Evidence keeps a window past its cut, for secrets across it to
        // be redacted whole before the cut.
        let window = tape
            .cut
            .map(|max| max.saturating_add(revealed.longest().max(256)));
        let args = match window {
            Some(w) => call.with_cut(w, fields_of),
            None => fields_of(&call),
        };
        if tape.replaying() {
            return match tape.replay(C::NAME, C::ANSWER, &args, revealed) {
                Ok(answer) => answer,
                Err(why) => call.refused(why),
            };
        }
        let mut answer = live(call).await;
        let mut fields = args;
        let stored = match window {
            Some(w) => C::with_answer_cut(&mut answer, w, |a| serde_json::to_value(a)),
            None => serde_json::to_value(&answer),
        };
        fields.insert(C::ANSWER.to_string(), stored.unwrap_or(Value::Null));
        tape.record(
            Exchange {
                call: C::NAME.to_string(),
                fields,
            },
            revealed,
        );
        answer
    }

    /// Stores a live exchange (record mode only), with the secrets the
    /// run has read so far.
    fn record(&self, exchange: Exchange, revealed: &Revealed) {
        if let Mode::Record(list) = &mut *lock(&self.mode) {
            list.push(exchange);
        }
        let mut known = lock(&self.revealed);
        for r in revealed.values() {
            if !known.contains(&r) {
                known.push(r);
            }
        }
    }

    /// The recorded answer to the call `name` with `args`, or `Err(why)`
    /// when the next recorded call is another one. Secret values in the
    /// live call are compared redacted, as they were stored.
    fn replay<A: DeserializeOwned>(
        &self,
        name: &str,
        answer_field: &str,
        args: &Map<String, Value>,
        revealed: &Revealed,
    ) -> Result<A, String> {
        let mut mode = lock(&self.mode);
        let Mode::Replay(queue) = &mut *mode else {
            return Err("not replaying".to_string());
        };
        let values = revealed.values();
        let mut args = Value::Object(args.clone());
        redact_bytes(&mut args, &values);
        redact_credentials(&mut args);
        let live = redact_json(&json(&args), &values);
        let why = match queue.front() {
            None => format!(
                "{} was called, but the recording has no more calls",
                shown(name)
            ),
            Some(next) => {
                let mut stored = next.fields.clone();
                let answer = stored.remove(answer_field);
                let stored = Value::Object(stored);
                match answer {
                    Some(answer) if next.call == name && json(&stored) == live => {
                        let answer = serde_json::from_value(answer)
                            .map_err(|e| format!("replay: recorded answer unreadable: {e}"));
                        queue.pop_front();
                        return answer;
                    }
                    _ => format!(
                        "{} {} differs from the recorded {} {}",
                        shown(name),
                        redact_json(&readable(&args), &values),
                        shown(&next.call),
                        readable(&stored),
                    ),
                }
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
                queue.front().map_or_else(String::new, |e| shown(&e.call))
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
        // Bodies are byte arrays, not strings: a secret inside one (an echo
        // of the Authorization header, a token in a POST) is redacted too.
        let revealed = lock(&self.revealed).clone();
        let exchanges: Vec<Exchange> = exchanges
            .into_iter()
            .map(|mut e| {
                for value in e.fields.values_mut() {
                    redact_bytes(value, &revealed);
                    redact_credentials(value);
                    bytes_to_text(value);
                }
                e
            })
            .collect();
        let recording = Recording {
            version: FORMAT_VERSION,
            probe: probe.to_string(),
            target: target.to_string(),
            exchanges,
        };
        let text = serde_json::to_string_pretty(&recording).unwrap_or_default();
        let text = redact_json(&text, &lock(&self.revealed));
        // `--record tests/x.json` in a fresh plugin directory: make `tests/`.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| TapeError::Write {
                path: dir.display().to_string(),
                source,
            })?;
        }
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

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Header fields whose values are credentials whatever their origin: a
/// plugin builds `Basic base64(user:password)` or `Bearer TOKEN` from its
/// secrets, and neither spelling is a value the run read.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// Tokens an answer hands out (an OAuth2 token endpoint's JSON) and keys
/// a request may carry in a JSON body.
static TOKEN_FIELDS: std::sync::LazyLock<Option<regex::bytes::Regex>> = std::sync::LazyLock::new(
    || {
        regex::bytes::Regex::new(
            r#"("(?:access_token|refresh_token|id_token|client_secret|password)"\s*:\s*")(?:[^"\\]|\\.)*(")"#,
        )
        .ok()
    },
);

/// Redacts, wherever they are in a call, the values of credential header
/// fields and token fields of JSON bodies: they are derived from secrets
/// (or are secrets the server made), so the run's read secrets do not
/// match them. Applied to the live call on replay as well, so the two
/// still compare equal.
fn redact_credentials(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if key == "headers" || key == "trailers" {
                    redact_header_list(field);
                }
                redact_credentials(field);
            }
        }
        Value::Array(items) => match as_bytes(items) {
            Some(bytes) if !bytes.is_empty() => {
                if let Some(re) = TOKEN_FIELDS.as_ref()
                    && re.is_match(&bytes)
                {
                    let marker = format!("${{1}}{}${{2}}", super::secrets::REDACTED);
                    let redacted = re.replace_all(&bytes, marker.as_bytes());
                    *items = redacted.iter().map(|b| Value::from(*b)).collect();
                }
            }
            _ => items.iter_mut().for_each(redact_credentials),
        },
        _ => {}
    }
}

/// `[[name, value], ...]` with the values of credential fields redacted.
fn redact_header_list(list: &mut Value) {
    let Value::Array(pairs) = list else {
        return;
    };
    for pair in pairs {
        if let Value::Array(kv) = pair
            && kv.len() == 2
            && kv[0]
                .as_str()
                .is_some_and(|n| CREDENTIAL_HEADERS.contains(&n.to_ascii_lowercase().as_str()))
        {
            kv[1] = Value::from(super::secrets::REDACTED);
        }
    }
}

/// Replaces each secret inside every byte array of `value` (a JSON array
/// of integers 0..=255, as serde writes a `list<u8>`) with the redaction
/// marker's bytes.
fn redact_bytes(value: &mut Value, revealed: &[String]) {
    match value {
        Value::Array(items) => {
            let bytes = as_bytes(items);
            match bytes {
                Some(bytes) if !bytes.is_empty() => {
                    let redacted = redact_in_bytes(&bytes, revealed);
                    if redacted != bytes {
                        *items = redacted.into_iter().map(Value::from).collect();
                    }
                }
                _ => items.iter_mut().for_each(|v| redact_bytes(v, revealed)),
            }
        }
        Value::Object(map) => map.values_mut().for_each(|v| redact_bytes(v, revealed)),
        _ => {}
    }
}

/// Cuts every byte array inside `value` to its first `max` bytes.
fn cut_arrays(value: &mut Value, max: usize) {
    match value {
        Value::Array(items) => {
            if items.len() > max && as_bytes(items).is_some() {
                items.truncate(max);
            } else {
                items.iter_mut().for_each(|v| cut_arrays(v, max));
            }
        }
        Value::Object(map) => map.values_mut().for_each(|v| cut_arrays(v, max)),
        _ => {}
    }
}

/// A byte array (a JSON array of integers 0..=255, as serde writes a
/// `list<u8>`), when `items` is one.
fn as_bytes(items: &[Value]) -> Option<Vec<u8>> {
    items
        .iter()
        .map(|v| v.as_u64().and_then(|n| u8::try_from(n).ok()))
        .collect()
}

/// Rewrites every non-empty byte array inside `value` as `{"utf8": text}`
/// when it is printable UTF-8 (tabs and line breaks allowed), else as
/// `{"base64": ...}`, so a tape can be read and edited. A list of small
/// numbers that was not bytes comes back unchanged through
/// [`bytes_from_text`], so taking one for bytes costs only looks.
fn bytes_to_text(value: &mut Value) {
    match value {
        Value::Array(items) => match as_bytes(items) {
            Some(bytes) if !bytes.is_empty() => {
                let key_and_text = match std::str::from_utf8(&bytes) {
                    Ok(text)
                        if !text
                            .chars()
                            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
                    {
                        ("utf8", text.to_string())
                    }
                    _ => ("base64", BASE64.encode(&bytes)),
                };
                let (key, text) = key_and_text;
                *value = Value::Object(Map::from_iter([(key.to_string(), Value::from(text))]));
            }
            _ => items.iter_mut().for_each(bytes_to_text),
        },
        Value::Object(map) => map.values_mut().for_each(bytes_to_text),
        _ => {}
    }
}

/// The inverse of [`bytes_to_text`]: `{"utf8": ...}` and `{"base64":
/// ...}` objects become byte arrays again. Invalid base64 is left as it
/// is, and the replay then reports the answer unreadable.
fn bytes_from_text(value: &mut Value) {
    match value {
        Value::Object(map) if map.len() == 1 => {
            let bytes = match (map.get("utf8"), map.get("base64")) {
                (Some(Value::String(text)), _) => Some(text.as_bytes().to_vec()),
                (_, Some(Value::String(b64))) => BASE64.decode(b64.as_bytes()).ok(),
                _ => None,
            };
            match bytes {
                Some(bytes) => *value = Value::Array(bytes.into_iter().map(Value::from).collect()),
                None => map.values_mut().for_each(bytes_from_text),
            }
        }
        Value::Object(map) => map.values_mut().for_each(bytes_from_text),
        Value::Array(items) => items.iter_mut().for_each(bytes_from_text),
        _ => {}
    }
}

/// A call's fields as a tape shows them (bytes as text), for messages.
fn readable(value: &Value) -> String {
    let mut value = value.clone();
    bytes_to_text(&mut value);
    json(&value)
}

/// `bytes` with every occurrence of a secret (of the redactable length)
/// replaced by the redaction marker.
fn redact_in_bytes(bytes: &[u8], revealed: &[String]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for secret in revealed.iter().map(String::as_bytes) {
        if secret.len() < 4 {
            continue;
        }
        let mut next = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(secret) {
                next.extend_from_slice(super::secrets::REDACTED.as_bytes());
                i += secret.len();
            } else {
                next.push(out[i]);
                i += 1;
            }
        }
        out = next;
    }
    out
}

/// A call's arguments as the fields of its exchange.
fn fields_of<C: Serialize>(call: &C) -> Map<String, Value> {
    match serde_json::to_value(call) {
        Ok(Value::Object(map)) => map,
        Ok(other) => Map::from_iter([("args".to_string(), other)]),
        Err(_) => Map::new(),
    }
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

    /// A call of the test's own, to show the wrapper knows no capability.
    #[derive(Serialize)]
    struct Ping {
        target: String,
    }

    impl TapedCall for Ping {
        const NAME: &'static str = "test-ping";
        type Answer = Result<u32, String>;

        fn refused(&self, why: String) -> Self::Answer {
            Err(why)
        }
    }

    fn ping(target: &str) -> Ping {
        Ping {
            target: target.to_string(),
        }
    }

    async fn call(
        tape: &Tape,
        revealed: &Revealed,
        target: &str,
        answer: u32,
    ) -> Result<u32, String> {
        Tape::around(
            Some(tape),
            revealed,
            ping(target),
            |_| async move { Ok(answer) },
        )
        .await
    }

    #[tokio::test]
    async fn a_recording_replays_in_order_and_reports_differences() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("run.json");
        let rec = Tape::recorder();
        let none = Revealed::default();
        assert_eq!(call(&rec, &none, "127.0.0.1", 7).await, Ok(7));
        assert_eq!(rec.save(&path, "p", "127.0.0.1").ok(), Some(1));

        let (tape, meta) = Tape::player(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(meta.probe, "p");
        assert!(tape.replaying());
        let other = call(&tape, &none, "127.0.0.2", 0).await;
        assert!(other.is_err_and(|e| e.contains("differs from the recorded test.ping")));
        assert_eq!(
            call(&tape, &none, "127.0.0.1", 0).await,
            Ok(7),
            "the recorded answer, not the live one"
        );
        assert!(call(&tape, &none, "127.0.0.1", 0).await.is_err());
        assert_eq!(tape.problems().len(), 2);
    }

    #[tokio::test]
    async fn without_a_tape_the_call_is_made() {
        let answer = Tape::around(None, &Revealed::default(), ping("x"), |_| async { Ok(3) }).await;
        assert_eq!(answer, Ok(3));
    }

    #[test]
    fn a_recording_creates_its_directory() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("tests").join("nested").join("x.json");
        let saved = Tape::recorder().save(&path, "p", "t");
        assert_eq!(saved.ok(), Some(0));
        assert!(path.is_file());
    }

    #[tokio::test]
    async fn secrets_are_stored_and_compared_redacted() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("run.json");
        let rec = Tape::recorder();
        let revealed = Revealed::default();
        let mut secrets = crate::hostcalls::secrets::SecretsContext::for_test(
            dir.path(),
            "s3cr\"et",
            revealed.clone(),
        );
        let _ = crate::bindings::wasmprobe::plugin::secrets::Host::get(&mut secrets, "s".into());
        let _ = call(&rec, &revealed, "s3cr\"et.example", 1).await;
        rec.save(&path, "p", "t").unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(!text.contains("s3cr"), "{text}");
        let (tape, _) = Tape::player(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(call(&tape, &revealed, "s3cr\"et.example", 0).await, Ok(1));
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

    #[test]
    fn secrets_inside_bodies_are_redacted_as_bytes() {
        let mut value = serde_json::json!({
            "request": {"body": b"token=hunter22-token&x=1".to_vec(), "url": "http://x/"},
            "result": {"Ok": {"body": b"echo: hunter22-token".to_vec(), "status": 200}},
        });
        redact_bytes(&mut value, &["hunter22-token".to_string()]);
        let text = value.to_string();
        let body = |v: &Value| -> String {
            let bytes: Vec<u8> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|n| n.as_u64().map(|n| n as u8))
                        .collect()
                })
                .unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        assert_eq!(
            body(&value["request"]["body"]),
            "token=[redacted]&x=1",
            "{text}"
        );
        assert_eq!(
            body(&value["result"]["Ok"]["body"]),
            "echo: [redacted]",
            "{text}"
        );
        assert_eq!(
            value["result"]["Ok"]["status"], 200,
            "numbers elsewhere are kept"
        );
    }

    /// A call with bytes in it, as `http.send` has.
    #[derive(Serialize)]
    struct Upload {
        body: Vec<u8>,
    }

    impl TapedCall for Upload {
        const NAME: &'static str = "test-upload";
        type Answer = Result<Vec<u8>, String>;

        fn refused(&self, why: String) -> Self::Answer {
            Err(why)
        }
    }

    async fn upload(tape: &Tape, body: &[u8], answer: &[u8]) -> Result<Vec<u8>, String> {
        let answer = answer.to_vec();
        Tape::around(
            Some(tape),
            &Revealed::default(),
            Upload {
                body: body.to_vec(),
            },
            |_| async move { Ok(answer) },
        )
        .await
    }

    #[tokio::test]
    async fn bodies_are_stored_as_text_or_base64_and_an_edit_is_replayed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("run.json");
        let rec = Tape::recorder();
        let binary = [0x1f_u8, 0x8b, 0, 0xff];
        let _ = upload(&rec, b"name=a\n", &binary).await;
        let _ = upload(&rec, &[], b"{\"status\": \"ok\"}\n").await;
        rec.save(&path, "p", "t").unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(text.contains(r#""utf8": "name=a\n""#), "{text}");
        assert!(text.contains(r#""base64": "H4sA/w==""#), "{text}");
        assert!(
            text.contains(r#""utf8": "{\"status\": \"ok\"}\n""#),
            "{text}"
        );
        assert!(
            text.contains(r#""body": []"#),
            "empty bytes stay a list: {text}"
        );
        assert!(text.contains("\"version\": 2"), "{text}");

        // A person edits the answer as text; the replay gives the edit.
        let edited = text.replace(r#"{\"status\": \"ok\"}"#, r#"{\"status\": \"down\"}"#);
        std::fs::write(&path, edited).unwrap_or_else(|e| panic!("{e}"));
        let (tape, _) = Tape::player(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(upload(&tape, b"name=a\n", &[]).await, Ok(binary.to_vec()));
        assert_eq!(
            upload(&tape, &[], &[]).await,
            Ok(b"{\"status\": \"down\"}\n".to_vec())
        );
        assert!(tape.problems().is_empty(), "{:?}", tape.problems());
    }

    #[tokio::test]
    async fn a_version_1_tape_with_number_arrays_still_replays() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("old.json");
        let v1 = r#"{"version": 1, "probe": "p", "target": "t", "exchanges": [
            {"call": "test-upload", "body": [104, 105], "result": {"Ok": [111, 107]}}
        ]}"#;
        std::fs::write(&path, v1).unwrap_or_else(|e| panic!("{e}"));
        let (tape, _) = Tape::player(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(upload(&tape, b"hi", &[]).await, Ok(b"ok".to_vec()));
        assert!(tape.problems().is_empty(), "{:?}", tape.problems());
    }

    #[tokio::test]
    async fn a_differing_body_is_shown_as_text() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("run.json");
        let rec = Tape::recorder();
        let _ = upload(&rec, b"first", b"x").await;
        rec.save(&path, "p", "t").unwrap_or_else(|e| panic!("{e}"));
        let (tape, _) = Tape::player(&path).unwrap_or_else(|e| panic!("{e}"));
        let err = upload(&tape, b"second", &[])
            .await
            .err()
            .unwrap_or_default();
        assert!(
            err.contains(r#"{"body":{"utf8":"second"}}"#)
                && err.contains(r#"{"body":{"utf8":"first"}}"#),
            "{err}"
        );
    }

    #[test]
    fn credentials_a_plugin_derived_from_secrets_are_redacted() {
        let mut value = serde_json::json!({
            "request": {
                "headers": [["Authorization", "Basic cHJvYmU6czNjcmV0"], ["accept", "*/*"]],
                "url": "http://x/token",
            },
            "result": {"Ok": {
                "headers": [["set-cookie", "session=abc"]],
                "body": br#"{"access_token":"at-1","token_type":"bearer","expires_in":3600}"#.to_vec(),
            }},
        });
        redact_credentials(&mut value);
        let text = readable(&value);
        for leaked in ["cHJvYmU6czNjcmV0", "session=abc", "at-1"] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
        assert!(text.contains(r#"["accept","*/*"]"#), "{text}");
        assert!(text.contains(r#"\"token_type\":\"bearer\""#), "{text}");
        assert!(
            text.contains(r#"\"access_token\":\"[redacted]\""#),
            "{text}"
        );
    }
}
