//! A scripted host for tests: secrets from a map, a state store, a clock,
//! and HTTP answers given in order, every request kept.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};

use wasmprobe_sdk::http::{
    ErrorKind, HttpError, HttpVersion, IpProtocol, PhaseTimings, Request, Response,
};

use super::Io;

#[derive(Debug, Default)]
pub(crate) struct FakeIo {
    pub(crate) secrets: BTreeMap<String, String>,
    pub(crate) state: RefCell<BTreeMap<String, Vec<u8>>>,
    pub(crate) now: Cell<u64>,
    pub(crate) answers: RefCell<VecDeque<Result<Response, HttpError>>>,
    pub(crate) sent: RefCell<Vec<Request>>,
    pub(crate) notes: RefCell<Vec<String>>,
    /// Every `state_set` fails as a full quota does.
    pub(crate) state_full: bool,
}

impl FakeIo {
    pub(crate) fn with_secrets(secrets: &[(&str, &str)]) -> FakeIo {
        FakeIo {
            secrets: secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            now: Cell::new(1_000_000),
            ..FakeIo::default()
        }
    }

    /// Queues an answer for the next request.
    pub(crate) fn answer(&self, answer: Result<Response, HttpError>) -> &Self {
        self.answers.borrow_mut().push_back(answer);
        self
    }

    /// The `Authorization` header of the `i`th request sent.
    pub(crate) fn authorization(&self, i: usize) -> Option<String> {
        self.sent.borrow().get(i).and_then(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.clone())
        })
    }
}

impl Io for FakeIo {
    fn secret(&self, name: &str) -> Option<String> {
        self.secrets.get(name).cloned()
    }

    fn state_get(&self, key: &str) -> Option<Vec<u8>> {
        self.state.borrow().get(key).cloned()
    }

    fn state_set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        if self.state_full {
            return Err("the probe's state is full".into());
        }
        self.state.borrow_mut().insert(key.into(), value.to_vec());
        Ok(())
    }

    fn state_delete(&self, key: &str) {
        self.state.borrow_mut().remove(key);
    }

    fn send(&self, request: &Request) -> Result<Response, HttpError> {
        self.sent.borrow_mut().push(request.clone());
        self.answers
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| Err(error(ErrorKind::Connect, "no answer scripted")))
    }

    fn now(&self) -> u64 {
        self.now.get()
    }

    fn note(&self, message: &str) {
        self.notes.borrow_mut().push(message.into());
    }
}

pub(crate) fn timings() -> PhaseTimings {
    PhaseTimings {
        resolve: 0.001,
        connect: 0.002,
        tls: 0.0,
        processing: 0.003,
        transfer: 0.004,
    }
}

/// An answer from `127.0.0.1:8080`.
pub(crate) fn response(status: u16, body: &str, headers: &[(&str, &str)]) -> Response {
    Response {
        status,
        version: HttpVersion::Http11,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
        body_truncated: false,
        content_length: Some(body.len() as u64),
        wire_body_length: body.len() as u64,
        trailers: Vec::new(),
        redirects: 0,
        final_url: "http://127.0.0.1:8080/health".into(),
        remote_addr: "127.0.0.1:8080".into(),
        ip_protocol: IpProtocol::Ip4,
        timings: timings(),
        tls: None,
    }
}

pub(crate) fn error(kind: ErrorKind, message: &str) -> HttpError {
    HttpError {
        kind,
        message: message.into(),
        timings: timings(),
        remote_addr: None,
        ip_protocol: None,
        tls: None,
        redirects: 0,
    }
}
