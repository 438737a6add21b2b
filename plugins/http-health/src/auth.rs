//! Credentials on the probe's request: `basic_auth`, `authorization` or
//! `oauth2`, at most one, each reading its credentials from the probe's
//! `secrets` when the run starts.
//!
//! Invariants, checked by [`Auth::from_config`] before anything is sent:
//! - no credential is ever written in the config: blackbox_exporter's keys
//!   for a literal credential or a credential file are refused with the
//!   `..._secret` key to use instead, and so is an `Authorization` entry of
//!   `headers` (which would also fight the header these keys set, as
//!   blackbox_exporter refuses);
//! - messages never carry a credential's value, only its secret's name.
//!
//! The host keeps `Authorization` on redirects within the origin and drops
//! it on a redirect to another origin.

pub mod oauth2;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::config::{BasicAuth, Config, Refused, SecretName};
use crate::run::Io;

/// How the probe's request is authenticated: the config's credential keys,
/// checked.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// `basic_auth`.
    Basic {
        username: Username,
        password: Option<SecretName>,
    },
    /// `authorization`: `SCHEME CREDENTIALS`.
    Scheme {
        scheme: String,
        credentials: SecretName,
    },
    /// `oauth2`.
    OAuth2(oauth2::Client),
}

/// `basic_auth`'s user name: written out, or a secret.
#[derive(Debug, Clone)]
pub enum Username {
    Literal(String),
    Secret(SecretName),
}

/// The `Authorization` header value of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub header: String,
    /// An OAuth 2.0 access token: a 401 answer makes the next run fetch a
    /// new one instead of reusing it.
    pub token: bool,
}

impl Auth {
    pub fn from_config(c: &Config) -> Result<Auth, String> {
        refuse(
            &c.bearer_token,
            "bearer_token",
            "authorization.credentials_secret",
        )?;
        refuse_file(
            &c.bearer_token_file,
            "bearer_token_file",
            "authorization.credentials_secret",
        )?;
        if c.headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("authorization"))
        {
            return Err(
                "headers.Authorization: credentials are never written in the config; \
                 use authorization = { type = \"Bearer\", credentials_secret = \"NAME\" }, \
                 basic_auth or oauth2, which read the probe's secrets"
                    .into(),
            );
        }
        let set: Vec<&str> = [
            ("basic_auth", c.basic_auth.is_some()),
            ("authorization", c.authorization.is_some()),
            ("oauth2", c.oauth2.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        if set.len() > 1 {
            return Err(format!(
                "{} are set: at most one of basic_auth, authorization and oauth2 may be",
                set.join(" and ")
            ));
        }
        if let Some(b) = &c.basic_auth {
            return basic(b);
        }
        if let Some(a) = &c.authorization {
            refuse(
                &a.credentials,
                "authorization.credentials",
                "authorization.credentials_secret",
            )?;
            refuse_file(
                &a.credentials_file,
                "authorization.credentials_file",
                "authorization.credentials_secret",
            )?;
            if !is_token(&a.scheme) {
                return Err(format!(
                    "authorization.type: {:?} is not an authentication scheme (one word, such as Bearer)",
                    a.scheme
                ));
            }
            if a.scheme.eq_ignore_ascii_case("basic") {
                return Err(
                    "authorization.type: \"Basic\" is basic_auth's: use basic_auth = { username = \"...\", password_secret = \"NAME\" }"
                        .into(),
                );
            }
            return Ok(Auth::Scheme {
                scheme: a.scheme.clone(),
                credentials: a.credentials_secret.clone(),
            });
        }
        if let Some(o) = &c.oauth2 {
            return oauth2::Client::new(o).map(Auth::OAuth2);
        }
        Ok(Auth::None)
    }

    /// The `Authorization` header for this run, reading secrets and, for
    /// `oauth2`, the token (cached in the probe's state, or fetched).
    /// `base` is a request with the probe's transport settings, for the
    /// token request.
    pub fn credential(
        &self,
        io: &impl Io,
        base: &wasmprobe_sdk::http::Request,
    ) -> Result<Option<Credential>, String> {
        match self {
            Auth::None => Ok(None),
            Auth::Basic { username, password } => {
                let username = match username {
                    Username::Literal(u) => u.clone(),
                    Username::Secret(name) => {
                        let u = secret(io, name, "basic_auth.username_secret")?;
                        if u.contains(':') {
                            return Err(format!(
                                "basic_auth.username_secret: secret {:?} holds a colon, which a Basic user name cannot (RFC 7617)",
                                name.as_str()
                            ));
                        }
                        u
                    }
                };
                let password = match password {
                    Some(name) => secret(io, name, "basic_auth.password_secret")?,
                    None => String::new(),
                };
                Ok(Some(Credential {
                    header: basic_header(&username, &password),
                    token: false,
                }))
            }
            Auth::Scheme {
                scheme,
                credentials,
            } => {
                let value = secret(io, credentials, "authorization.credentials_secret")?;
                Ok(Some(Credential {
                    header: format!("{scheme} {value}"),
                    token: false,
                }))
            }
            Auth::OAuth2(client) => client.credential(io, base).map(Some),
        }
    }
}

fn basic(b: &BasicAuth) -> Result<Auth, String> {
    refuse(
        &b.password,
        "basic_auth.password",
        "basic_auth.password_secret",
    )?;
    refuse_file(
        &b.password_file,
        "basic_auth.password_file",
        "basic_auth.password_secret",
    )?;
    refuse_file(
        &b.username_file,
        "basic_auth.username_file",
        "basic_auth.username_secret",
    )?;
    let username = match (&b.username, &b.username_secret) {
        (Some(_), Some(_)) => {
            return Err("basic_auth: username and username_secret are both set; keep one".into());
        }
        (Some(u), None) => {
            if u.contains(':') {
                return Err(format!(
                    "basic_auth.username: {u:?} holds a colon, which a Basic user name cannot (RFC 7617)"
                ));
            }
            if u.chars().any(char::is_control) {
                return Err("basic_auth.username: holds a control character".into());
            }
            Username::Literal(u.clone())
        }
        (None, Some(name)) => Username::Secret(name.clone()),
        // blackbox_exporter sends an empty user name too.
        (None, None) => Username::Literal(String::new()),
    };
    Ok(Auth::Basic {
        username,
        password: b.password_secret.clone(),
    })
}

/// `Basic base64(user:password)` (RFC 7617).
pub fn basic_header(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{username}:{password}"))
    )
}

/// The value of the secret `name`, for the config key `key`. A value that
/// cannot go in a header (a line break) is refused here, without showing
/// it.
pub(crate) fn secret(io: &impl Io, name: &SecretName, key: &str) -> Result<String, String> {
    let value = io.secret(name.as_str()).ok_or_else(|| {
        format!(
            "{key}: secret {:?} is not set: the probe's secrets table does not name it, or its variable or file is missing",
            name.as_str()
        )
    })?;
    if value.chars().any(char::is_control) {
        return Err(format!(
            "{key}: secret {:?} holds a control character (a line break?), which a header cannot",
            name.as_str()
        ));
    }
    Ok(value)
}

/// An HTTP token (RFC 9110 section 5.6.2): an authentication scheme.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn refuse(value: &Option<Refused>, key: &str, instead: &str) -> Result<(), String> {
    match value {
        Some(Refused) => Err(format!(
            "{key}: credentials are never written in the config; put it in the probe's secrets \
             ([probes.NAME.secrets] NAME = {{ env = \"VAR\" }}) and name it with {instead}"
        )),
        None => Ok(()),
    }
}

fn refuse_file(value: &Option<Refused>, key: &str, instead: &str) -> Result<(), String> {
    match value {
        Some(Refused) => Err(format!(
            "{key}: the plugin reads no files; make the file a secret \
             ([probes.NAME.secrets] NAME = {{ file = \"PATH\" }}) and name it with {instead}"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
