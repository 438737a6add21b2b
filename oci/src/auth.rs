//! Registry authentication: anonymous first, then whatever the registry
//! asks for in `WWW-Authenticate`.
//!
//! - `Basic`: the caller's credentials on the retried request.
//! - `Bearer realm=…,service=…,scope=…`: a token from the realm (sent the
//!   caller's credentials as Basic if there are any, anonymous otherwise),
//!   then the retried request with `Authorization: Bearer`.
//!
//! A [`Session`] lives for one push, pull or resolve of one repository and
//! remembers the header that worked, so only the first request of an
//! operation (and the first needing a wider scope, such as push after
//! pull) pays the extra round trips. Credentials are never read from the
//! environment or files here: the caller owns where they come from.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ureq::http::{Method, StatusCode};
use url::Url;

use crate::error::OciError;
use crate::transport::{self, Request, Response, Transport};

/// A registry user name and password (or token used as a password, as
/// GitHub and most cloud registries issue them).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Redacted: credentials end up in `{:?}` of options structs and logs.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", BASE64.encode(pair))
    }
}

/// One parsed `WWW-Authenticate` challenge we know how to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// The authenticated conversation with one repository of one registry.
#[derive(Debug)]
pub(crate) struct Session<'a> {
    transport: &'a Transport,
    credentials: Option<&'a Credentials>,
    base: Url,
    registry: String,
    repository: String,
    authorization: Option<String>,
    /// Whether `authorization` was obtained with the caller's credentials
    /// (it decides between "credentials refused" and "no credentials").
    credentials_sent: bool,
}

impl<'a> Session<'a> {
    pub(crate) fn new(
        transport: &'a Transport,
        credentials: Option<&'a Credentials>,
        registry: &str,
        repository: &str,
    ) -> Result<Self, OciError> {
        Ok(Self {
            transport,
            credentials,
            base: transport::registry_base(registry)?,
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            authorization: None,
            credentials_sent: false,
        })
    }

    pub(crate) fn registry(&self) -> &str {
        &self.registry
    }

    pub(crate) fn repository(&self) -> &str {
        &self.repository
    }

    pub(crate) fn transport(&self) -> &Transport {
        self.transport
    }

    /// `https://registry/v2/<repository>/<tail>`.
    pub(crate) fn url(&self, tail: &str) -> Result<Url, OciError> {
        let path = format!("v2/{}/{tail}", self.repository);
        self.base.join(&path).map_err(|e| OciError::Protocol {
            registry: self.registry.clone(),
            detail: format!("cannot form a URL from {path:?}: {e}"),
        })
    }

    /// Sends `request`, answering one authentication challenge if the
    /// registry raises one. A second 401 is final.
    pub(crate) fn send(&mut self, request: &Request<'_>) -> Result<Response, OciError> {
        let response = self
            .transport
            .send(request, self.authorization.as_deref())?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        self.authenticate(&response)?;
        let response = self
            .transport
            .send(request, self.authorization.as_deref())?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized(401));
        }
        Ok(response)
    }

    fn unauthorized(&self, status: u16) -> OciError {
        OciError::Unauthorized {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            status,
            credentials_sent: self.credentials_sent,
        }
    }

    /// Sets `authorization` from the challenge in a 401 response.
    fn authenticate(&mut self, response: &Response) -> Result<(), OciError> {
        let challenges: Vec<Challenge> = response
            .headers("www-authenticate")
            .flat_map(parse_challenges)
            .collect();
        // Bearer first: a registry offering both prefers tokens, and a
        // token scoped to one repository is the smaller secret to send.
        let challenge = challenges
            .iter()
            .find(|c| matches!(c, Challenge::Bearer { .. }))
            .or_else(|| challenges.first());
        match challenge {
            None => {
                let raw: Vec<&str> = response.headers("www-authenticate").collect();
                if raw.is_empty() {
                    // No way to authenticate was offered: report as a
                    // refusal, naming whether credentials were used.
                    self.credentials_sent = self.credentials.is_some();
                    return Err(self.unauthorized(401));
                }
                Err(OciError::Protocol {
                    registry: self.registry.clone(),
                    detail: format!("unsupported authentication challenge {:?}", raw.join(", ")),
                })
            }
            Some(Challenge::Basic) => {
                let Some(credentials) = self.credentials else {
                    self.credentials_sent = false;
                    return Err(self.unauthorized(401));
                };
                let header = credentials.basic_header();
                if self.authorization.as_deref() == Some(header.as_str()) {
                    // These very credentials were just refused.
                    self.credentials_sent = true;
                    return Err(self.unauthorized(401));
                }
                self.authorization = Some(header);
                self.credentials_sent = true;
                Ok(())
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let token = self.fetch_token(realm, service.as_deref(), scope.as_deref())?;
                self.authorization = Some(format!("Bearer {token}"));
                self.credentials_sent = self.credentials.is_some();
                Ok(())
            }
        }
    }

    /// Asks the realm for a token, as the distribution token spec says:
    /// `GET realm?service=…&scope=…`, Basic credentials when we have them.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String, OciError> {
        let mut url = Url::parse(realm).map_err(|e| OciError::Protocol {
            registry: self.registry.clone(),
            detail: format!("token realm {realm:?} is not a URL: {e}"),
        })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            // Several scopes arrive space-separated in one challenge and
            // go out as one parameter each.
            for scope in scope.unwrap_or_default().split_whitespace() {
                query.append_pair("scope", scope);
            }
        }
        let realm_host = transport::host_label(&url);
        let basic = self.credentials.map(Credentials::basic_header);
        let request = Request::new(Method::GET, url).accept("application/json");
        let mut response = self.transport.send(&request, basic.as_deref())?;
        match response.status().as_u16() {
            200 => {}
            401 | 403 => {
                return Err(OciError::Unauthorized {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    status: response.status().as_u16(),
                    credentials_sent: self.credentials.is_some(),
                });
            }
            status => {
                return Err(OciError::Status {
                    registry: self.registry.clone(),
                    action: format!("token request to {realm_host}"),
                    status,
                    code: String::new(),
                });
            }
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = self.transport.read_small(&mut response)?;
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|e| OciError::Protocol {
                registry: self.registry.clone(),
                detail: format!("token service {realm_host} answered malformed JSON: {e}"),
            })?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| OciError::Protocol {
                registry: self.registry.clone(),
                detail: format!("token service {realm_host} answered without a usable token"),
            })
    }
}

/// Parses one `WWW-Authenticate` value into the challenges we support
/// (unknown schemes are skipped). RFC 7235 syntax: `scheme param=value,
/// param="quoted", …`, challenges separated by commas too.
fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    // Each round consumes a non-empty scheme, so the loop ends; anything
    // that is not a scheme where one is due ends parsing.
    loop {
        p.skip(|b| b == b' ' || b == b'\t' || b == b',');
        let scheme = p.token();
        if scheme.is_empty() {
            break;
        }
        let mut params: Vec<(String, String)> = Vec::new();
        loop {
            p.skip(|b| b == b' ' || b == b'\t' || b == b',');
            let save = p.i;
            let name = p.token();
            p.skip(|b| b == b' ' || b == b'\t');
            if name.is_empty() || !p.eat(b'=') {
                // Not a parameter: the next challenge's scheme (or junk).
                p.i = save;
                break;
            }
            p.skip(|b| b == b' ' || b == b'\t');
            let value = if p.eat(b'"') { p.quoted() } else { p.token() };
            params.push((name.to_ascii_lowercase(), value));
        }
        let param = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        if scheme.eq_ignore_ascii_case("basic") {
            out.push(Challenge::Basic);
        } else if scheme.eq_ignore_ascii_case("bearer")
            && let Some(realm) = param("realm")
        {
            out.push(Challenge::Bearer {
                realm,
                service: param("service"),
                scope: param("scope"),
            });
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.s.get(self.i).is_some_and(|&b| f(b)) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// RFC 7230 `token` characters (and `/`, `:` that unquoted realms and
    /// scopes use in the wild).
    fn token(&mut self) -> String {
        let start = self.i;
        self.skip(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&b));
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// The rest of a quoted string after its opening quote.
    fn quoted(&mut self) -> String {
        let mut out = Vec::new();
        while let Some(&b) = self.s.get(self.i) {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(&escaped) = self.s.get(self.i) {
                        out.push(escaped);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_and_bearer() {
        assert_eq!(
            parse_challenges(r#"Basic realm="test-realm""#),
            vec![Challenge::Basic]
        );
        assert_eq!(
            parse_challenges(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/probe:pull,push""#
            ),
            vec![Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:team/probe:pull,push".into()),
            }]
        );
    }

    #[test]
    fn parses_several_challenges_unquoted_values_and_escapes() {
        let got = parse_challenges(
            r#"Newauth realm="apps", type=1, title="Login to \"apps\"", bearer realm=https://a.example/t , Basic realm="x""#,
        );
        assert_eq!(
            got,
            vec![
                Challenge::Bearer {
                    realm: "https://a.example/t".into(),
                    service: None,
                    scope: None,
                },
                Challenge::Basic,
            ]
        );
    }

    #[test]
    fn ignores_bearer_without_realm_and_junk() {
        assert_eq!(parse_challenges("Bearer service=x"), vec![]);
        assert_eq!(parse_challenges(""), vec![]);
        assert_eq!(parse_challenges("=,,\"\""), vec![]);
        assert_eq!(parse_challenges("Basic"), vec![Challenge::Basic]);
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("\"u\"") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert_eq!(c.basic_header(), "Basic dTpodW50ZXIy");
    }
}
