//! `oauth2`: an access token from the client-credentials grant (RFC 6749
//! section 4.4), as blackbox_exporter's `oauth2` gets one.
//!
//! The token request is a form POST of `grant_type=client_credentials`
//! (`scope` and `endpoint_params` added) to `token_url`, the client
//! authenticated with HTTP Basic (section 2.3.1: id and secret
//! form-encoded first). It goes through the host like the probe's request,
//! so the token endpoint's origin must be in the probe's `allow` list, and
//! it follows no redirect (the client secret stays with the URL written).
//!
//! The token is kept in the probe's state between runs, with what it was
//! fetched for (URL, client, scopes, parameters): it is reused until
//! `expires_in` less [`EXPIRY_MARGIN`], or, without `expires_in`, until the
//! target answers 401 (as golang.org/x/oauth2 treats a token without
//! expiry). A config change fetches a new one. A failed token request
//! fails the probe with the reason; blackbox_exporter has no metric for
//! it, so neither is there one here.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use wasmprobe_sdk::http::{HttpError, Request, Response};

use super::{Credential, is_token, refuse, refuse_file, secret};
use crate::config::{OAuth2, SecretName};
use crate::run::Io;

/// The state key the token is kept under.
pub const STATE_KEY: &str = "http-health/oauth2-token";
/// A token this close to its expiry (seconds) is fetched anew, so it does
/// not expire during the probe's request.
pub const EXPIRY_MARGIN: u64 = 10;
/// The largest token response read.
const MAX_TOKEN_RESPONSE: u64 = 64 * 1024;
/// Form parameters that carry a credential: refused in `endpoint_params`.
const CREDENTIAL_PARAMS: [&str; 4] = [
    "client_secret",
    "client_assertion",
    "password",
    "refresh_token",
];

/// An `oauth2` table, checked.
#[derive(Debug, Clone)]
pub struct Client {
    client_id: String,
    client_secret: SecretName,
    token_url: String,
    scopes: Vec<String>,
    params: BTreeMap<String, String>,
}

/// A token as kept in the probe's state, with what it was fetched for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    token_url: String,
    client_id: String,
    scopes: Vec<String>,
    params: BTreeMap<String, String>,
    token_type: String,
    access_token: String,
    /// Unix seconds; none: no `expires_in` was given.
    expires_at: Option<u64>,
}

/// A token endpoint's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub token_type: String,
    pub access_token: String,
    pub expires_in: Option<u64>,
}

impl Client {
    pub fn new(c: &OAuth2) -> Result<Client, String> {
        refuse(
            &c.client_secret,
            "oauth2.client_secret",
            "oauth2.client_secret_secret",
        )?;
        refuse_file(
            &c.client_secret_file,
            "oauth2.client_secret_file",
            "oauth2.client_secret_secret",
        )?;
        if !(c.token_url.starts_with("http://") || c.token_url.starts_with("https://")) {
            return Err(format!(
                "oauth2.token_url: {:?} is not an http:// or https:// URL",
                c.token_url
            ));
        }
        if c.client_id.is_empty() {
            return Err("oauth2.client_id is empty".into());
        }
        for key in c.endpoint_params.keys() {
            if CREDENTIAL_PARAMS.contains(&key.as_str()) {
                return Err(format!(
                    "oauth2.endpoint_params.{key}: credentials are never written in the config; \
                     the client secret comes from oauth2.client_secret_secret"
                ));
            }
            if key == "scope" && !c.scopes.is_empty() {
                return Err("oauth2.endpoint_params.scope: scopes are set too; keep one".into());
            }
        }
        Ok(Client {
            client_id: c.client_id.clone(),
            client_secret: c.client_secret_secret.clone(),
            token_url: c.token_url.clone(),
            scopes: c.scopes.clone(),
            params: c.endpoint_params.clone(),
        })
    }

    /// The header for this run: the kept token while it is fresh, else a
    /// new one (kept for the next runs).
    pub(super) fn credential(&self, io: &impl Io, base: &Request) -> Result<Credential, String> {
        let now = io.now();
        if let Some(kept) = io
            .state_get(STATE_KEY)
            .and_then(|b| serde_json::from_slice::<Kept>(&b).ok())
            .filter(|k| self.reuses(k, now))
        {
            return Ok(Credential {
                header: header(&kept.token_type, &kept.access_token),
                token: true,
            });
        }
        let client_secret = secret(io, &self.client_secret, "oauth2.client_secret_secret")?;
        let token = self.parse(io.send(&self.token_request(&client_secret, base)))?;
        match self.keep(&token, now) {
            Some(kept) => {
                let bytes = serde_json::to_vec(&kept).unwrap_or_default();
                if let Err(e) = io.state_set(STATE_KEY, &bytes) {
                    io.note(&format!(
                        "oauth2: the token is not kept for the next runs: {e}"
                    ));
                }
            }
            None => io.state_delete(STATE_KEY),
        }
        Ok(Credential {
            header: header(&token.token_type, &token.access_token),
            token: true,
        })
    }

    /// Whether `kept` was fetched for this config and is fresh at `now`.
    pub fn reuses(&self, kept: &Kept, now: u64) -> bool {
        kept.token_url == self.token_url
            && kept.client_id == self.client_id
            && kept.scopes == self.scopes
            && kept.params == self.params
            && kept
                .expires_at
                .is_none_or(|at| now.saturating_add(EXPIRY_MARGIN) < at)
    }

    /// What to keep of `token` fetched at `now`; none when it would be
    /// stale by the next run anyway.
    pub fn keep(&self, token: &Token, now: u64) -> Option<Kept> {
        if token.expires_in.is_some_and(|e| e <= EXPIRY_MARGIN) {
            return None;
        }
        Some(Kept {
            token_url: self.token_url.clone(),
            client_id: self.client_id.clone(),
            scopes: self.scopes.clone(),
            params: self.params.clone(),
            token_type: token.token_type.clone(),
            access_token: token.access_token.clone(),
            expires_at: token.expires_in.map(|e| now.saturating_add(e)),
        })
    }

    /// The token request, on `base`'s transport settings (IP protocol,
    /// HTTP/2).
    pub fn token_request(&self, client_secret: &str, base: &Request) -> Request {
        let mut form = vec![("grant_type", "client_credentials".to_string())];
        if !self.scopes.is_empty() {
            form.push(("scope", self.scopes.join(" ")));
        }
        for (k, v) in &self.params {
            // Some servers want another grant_type; golang.org/x/oauth2
            // lets endpoint_params replace it too.
            if k == "grant_type" {
                form[0].1 = v.clone();
            } else {
                form.push((k, v.clone()));
            }
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let client = format!(
            "{}:{}",
            form_encode(&self.client_id),
            form_encode(client_secret)
        );
        let mut req = base.clone();
        req.method = "POST".into();
        req.url = self.token_url.clone();
        req.headers = vec![
            (
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            ("Accept".into(), "application/json".into()),
            (
                "Authorization".into(),
                format!("Basic {}", STANDARD.encode(client)),
            ),
        ];
        req.body = Some(body.into_bytes());
        req.follow_redirects = false;
        req.max_body_bytes = Some(MAX_TOKEN_RESPONSE);
        req.decompress = false;
        req
    }

    /// The token in the token endpoint's answer, or why there is none.
    pub fn parse(&self, result: Result<Response, HttpError>) -> Result<Token, String> {
        let url = &self.token_url;
        let resp = result.map_err(|e| {
            format!(
                "oauth2: token request to {url} failed: {:?}: {}",
                e.kind, e.message
            )
        })?;
        if !(200..300).contains(&resp.status) {
            let why = serde_json::from_slice::<ErrorAnswer>(&resp.body)
                .ok()
                .map(|e| e.describe())
                .unwrap_or_default();
            return Err(format!(
                "oauth2: token endpoint {url} answered {}{why}",
                resp.status
            ));
        }
        let answer: TokenAnswer = serde_json::from_slice(&resp.body).map_err(|e| {
            format!(
                "oauth2: token endpoint {url} answered {} with no JSON token: {e}",
                resp.status
            )
        })?;
        if answer.access_token.is_empty() || answer.access_token.chars().any(char::is_control) {
            return Err(format!(
                "oauth2: token endpoint {url} answered an empty or unusable access_token"
            ));
        }
        let token_type = match answer.token_type.as_deref() {
            None | Some("") => "Bearer".to_string(),
            Some(t) if t.eq_ignore_ascii_case("bearer") => "Bearer".to_string(),
            Some(t) if is_token(t) => t.to_string(),
            Some(t) => {
                return Err(format!(
                    "oauth2: token endpoint {url} answered token_type {t:?}, not an authentication scheme"
                ));
            }
        };
        Ok(Token {
            token_type,
            access_token: answer.access_token,
            expires_in: answer.expires_in.as_ref().and_then(seconds),
        })
    }
}

fn header(token_type: &str, access_token: &str) -> String {
    format!("{token_type} {access_token}")
}

/// A successful answer (RFC 6749 section 5.1); other fields are ignored.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
}

/// `expires_in` in seconds: a number, or a number in a string as some
/// servers send; zero or less means no expiry was given (as
/// golang.org/x/oauth2 reads it).
fn seconds(v: &serde_json::Value) -> Option<u64> {
    let s = match v {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(t) => t.trim().parse().ok()?,
        _ => return None,
    };
    (s.is_finite() && s >= 1.0).then_some(s as u64)
}

/// An error answer (RFC 6749 section 5.2).
#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    error_description: Option<String>,
}

impl ErrorAnswer {
    fn describe(&self) -> String {
        let cut = |s: &str| s.chars().take(200).collect::<String>();
        match &self.error_description {
            Some(d) => format!(": {} ({})", cut(&self.error), cut(d)),
            None => format!(": {}", cut(&self.error)),
        }
    }
}

/// `application/x-www-form-urlencoded`: letters, digits and `-._~` kept,
/// space as `+`, every other byte `%XX`.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
