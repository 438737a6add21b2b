//! The probe's `config` table: blackbox_exporter's http module options.
//!
//! Credentials are never written here: `basic_auth`, `authorization` and
//! `oauth2` name entries of the probe's `secrets` table, which the plugin
//! reads at run time. Every key blackbox_exporter uses for a literal
//! credential or a credential file (`password`, `credentials`,
//! `client_secret`, `bearer_token`, `..._file`) is left out of the schema, so
//! `wasmprobe check` refuses it as an unknown key without repeating its
//! value, and is still parsed (as [`Refused`]) so that a run that skipped the
//! check says what to write instead.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// A header condition.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub header: String,
    pub regexp: String,
    /// For `fail_if_header_not_matches`: a missing header passes.
    #[serde(default)]
    pub allow_missing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IpProtocol {
    Ip4,
    Ip6,
}

/// Content coding to ask for and decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Deflate,
}

/// The name of an entry of the probe's `secrets` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SecretName(String);

impl JsonSchema for SecretName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "description": "The name of an entry of the probe's secrets table.",
        })
    }
}

impl TryFrom<String> for SecretName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        if name.is_empty() {
            return Err(
                "a secret name is empty: name an entry of the probe's secrets table".into(),
            );
        }
        Ok(SecretName(name))
    }
}

impl SecretName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key that would hold a credential written in the config (or the name
/// of a file the plugin cannot read). Its value is skipped unread, so no
/// error can repeat it; [`crate::auth::Auth::from_config`] refuses the key and
/// names the `..._secret` key to use instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

impl<'de> Deserialize<'de> for Refused {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Refused)
    }
}

/// `basic_auth`: HTTP Basic authentication (RFC 7617).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuth {
    /// The user name, written out: a user name is not a credential.
    pub username: Option<String>,
    /// Or the secret holding the user name.
    #[schemars(with = "SecretName")]
    pub username_secret: Option<SecretName>,
    /// The secret holding the password; none sends an empty password.
    #[schemars(with = "SecretName")]
    pub password_secret: Option<SecretName>,
    #[schemars(skip)]
    pub password: Option<Refused>,
    #[schemars(skip)]
    pub password_file: Option<Refused>,
    #[schemars(skip)]
    pub username_file: Option<Refused>,
}

/// `authorization`: `Authorization: TYPE CREDENTIALS`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// The scheme, e.g. `Bearer` (the default) or `Token`; `Basic` is
    /// `basic_auth`'s.
    #[serde(rename = "type", default = "bearer")]
    #[schemars(default = "bearer")]
    pub scheme: String,
    /// The secret holding the credentials (a token).
    pub credentials_secret: SecretName,
    #[serde(default)]
    #[schemars(skip)]
    pub credentials: Option<Refused>,
    #[serde(default)]
    #[schemars(skip)]
    pub credentials_file: Option<Refused>,
}

fn bearer() -> String {
    "Bearer".into()
}

/// `oauth2`: an access token from the client-credentials grant (RFC 6749
/// section 4.4), sent as `Authorization: Bearer TOKEN`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    pub client_id: String,
    /// The secret holding the client secret.
    pub client_secret_secret: SecretName,
    /// The token endpoint (`http://` or `https://`); its origin must be in
    /// the probe's `allow` list.
    pub token_url: String,
    /// Scopes asked for, sent space-separated as `scope`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// More form parameters of the token request (`audience`,
    /// `resource`, ...).
    #[serde(default)]
    pub endpoint_params: BTreeMap<String, String>,
    #[serde(default)]
    #[schemars(skip)]
    pub client_secret: Option<Refused>,
    #[serde(default)]
    #[schemars(skip)]
    pub client_secret_file: Option<Refused>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Request method.
    pub method: String,
    /// Request headers. `Authorization` is refused: credentials come from
    /// `basic_auth`, `authorization` or `oauth2`.
    #[schemars(extend("propertyNames" = { "not": { "pattern": AUTHORIZATION_PATTERN } }))]
    pub headers: BTreeMap<String, String>,
    /// Request body.
    pub body: Option<String>,
    /// Accepted status codes; empty means any 2xx.
    pub valid_status_codes: Vec<u16>,
    /// Accepted versions as `HTTP/1.0`, `HTTP/1.1`, `HTTP/2.0`; empty
    /// means any.
    pub valid_http_versions: Vec<String>,
    pub fail_if_ssl: bool,
    pub fail_if_not_ssl: bool,
    pub fail_if_body_matches_regexp: Vec<String>,
    pub fail_if_body_not_matches_regexp: Vec<String>,
    pub fail_if_header_matches: Vec<HeaderMatch>,
    pub fail_if_header_not_matches: Vec<HeaderMatch>,
    pub follow_redirects: bool,
    /// Redirect hops followed before failing.
    pub max_redirects: u32,
    pub preferred_ip_protocol: IpProtocol,
    pub ip_protocol_fallback: bool,
    pub enable_http2: bool,
    pub compression: Option<Compression>,
    /// Body bytes read; more fails the probe (the host caps it too).
    pub body_size_limit: Option<u64>,
    /// Fail when the body, parsed as JSON and bound to `body`, makes this
    /// CEL expression true.
    pub fail_if_body_json_matches_cel: Option<String>,
    /// Fail unless the body, parsed as JSON and bound to `body`, makes
    /// this CEL expression true.
    pub fail_if_body_json_not_matches_cel: Option<String>,
    // The tables below are plain `$ref`s in the schema, not `anyOf` with
    // null (TOML has no null): an `anyOf` error would print the whole
    // table, and with it a refused literal credential.
    /// HTTP Basic authentication from the probe's secrets.
    #[schemars(with = "BasicAuth")]
    pub basic_auth: Option<BasicAuth>,
    /// `Authorization: TYPE CREDENTIALS` from the probe's secrets.
    #[schemars(with = "Authorization")]
    pub authorization: Option<Authorization>,
    /// A token from an OAuth 2.0 token endpoint (client credentials).
    #[schemars(with = "OAuth2")]
    pub oauth2: Option<OAuth2>,
    #[schemars(skip)]
    pub bearer_token: Option<Refused>,
    #[schemars(skip)]
    pub bearer_token_file: Option<Refused>,
}

/// `Authorization` in any letter case, for the schema of `headers`
/// (JSON Schema patterns have no case-insensitive flag).
const AUTHORIZATION_PATTERN: &str = "^[Aa][Uu][Tt][Hh][Oo][Rr][Ii][Zz][Aa][Tt][Ii][Oo][Nn]$";

impl Default for Config {
    fn default() -> Self {
        Config {
            method: "GET".into(),
            headers: BTreeMap::new(),
            body: None,
            valid_status_codes: Vec::new(),
            valid_http_versions: Vec::new(),
            fail_if_ssl: false,
            fail_if_not_ssl: false,
            fail_if_body_matches_regexp: Vec::new(),
            fail_if_body_not_matches_regexp: Vec::new(),
            fail_if_header_matches: Vec::new(),
            fail_if_header_not_matches: Vec::new(),
            follow_redirects: true,
            max_redirects: 10,
            preferred_ip_protocol: IpProtocol::Ip6,
            ip_protocol_fallback: true,
            enable_http2: true,
            compression: None,
            body_size_limit: None,
            fail_if_body_json_matches_cel: None,
            fail_if_body_json_not_matches_cel: None,
            basic_auth: None,
            authorization: None,
            oauth2: None,
            bearer_token: None,
            bearer_token_file: None,
        }
    }
}

#[cfg(test)]
mod tests;
