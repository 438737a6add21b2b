//! blackbox_exporter's HTTP credentials (`basic_auth`, `bearer_token`,
//! `authorization`, `oauth2`) to http-health's, whose values come from
//! the probe's secrets only. A `*_file` key becomes a file secret as it
//! is; a credential written in clear is never copied: it becomes an
//! environment-variable secret the operator must set, and the report
//! says which.

use yaml_serde::Value;

use super::Section;
use super::read::Ctx;
use crate::import::lines::KeyPath;

/// The environment variable an in-clear credential at `path` is to be
/// given in: the key path, upper case, `_` for anything else.
fn env_name(path: &KeyPath) -> String {
    let shown = path.to_string();
    let shown = shown.strip_prefix("modules.").unwrap_or(&shown);
    let name: String = shown
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("BLACKBOX_{name}")
}

/// Adds the secret `name` from `file`, or from `literal` (never copied:
/// an environment variable the report names). Returns whether a source
/// was there.
fn secret(
    ctx: &mut Ctx<'_>,
    s: &mut Section,
    name: &str,
    file: Option<(KeyPath, String)>,
    literal: Option<(KeyPath, String)>,
) -> bool {
    let mut source = toml::Table::new();
    if let Some((_, path)) = file {
        if let Some((at, _)) = literal {
            ctx.not_carried(
                &at,
                "its `_file` twin is used; the value in clear is dropped",
            );
        }
        source.insert("file".into(), path.into());
    } else if let Some((at, _)) = literal {
        let var = env_name(&at);
        ctx.not_carried(
            &at,
            format!(
                "a credential in clear is never copied into probes.toml; set environment variable {var} to it (the probe reads it as secret {name:?})"
            ),
        );
        source.insert("env".into(), var.into());
    } else {
        return false;
    }
    s.secrets.insert(name.into(), toml::Value::Table(source));
    true
}

/// The string at `key` of the mapping `value`, with its path.
fn field(ctx: &mut Ctx<'_>, path: &KeyPath, value: &Value, key: &str) -> Option<(KeyPath, String)> {
    let Value::Mapping(map) = value else {
        return None;
    };
    let v = map.get(key)?;
    let at = path.key(key);
    ctx.string(&at, v)
        .filter(|s| !s.is_empty())
        .map(|s| (at, s))
}

pub(super) fn convert(
    ctx: &mut Ctx<'_>,
    key: &str,
    path: &KeyPath,
    value: &Value,
    s: &mut Section,
) {
    if matches!(value, Value::Null) {
        return;
    }
    if s.config.contains_key("basic_auth")
        || s.config.contains_key("authorization")
        || s.config.contains_key("oauth2")
    {
        ctx.not_carried(
            path,
            "http-health takes one of basic_auth, authorization and oauth2",
        );
        return;
    }
    match key {
        "basic_auth" => {
            let mut auth = toml::Table::new();
            match (
                field(ctx, path, value, "username_file"),
                field(ctx, path, value, "username"),
            ) {
                (Some(file), _) => {
                    secret(ctx, s, "basic_auth_username", Some(file), None);
                    auth.insert("username_secret".into(), "basic_auth_username".into());
                }
                (None, Some((_, user))) => {
                    auth.insert("username".into(), user.into());
                }
                (None, None) => {}
            }
            let file = field(ctx, path, value, "password_file");
            let literal = field(ctx, path, value, "password");
            if secret(ctx, s, "basic_auth_password", file, literal) {
                auth.insert("password_secret".into(), "basic_auth_password".into());
            }
            s.config
                .insert("basic_auth".into(), toml::Value::Table(auth));
        }
        "bearer_token" | "bearer_token_file" => {
            let at = path.clone();
            let text = ctx.string(&at, value).unwrap_or_default();
            let (file, literal) = if key == "bearer_token_file" {
                (Some((at, text)), None)
            } else {
                (None, Some((at, text)))
            };
            if secret(ctx, s, "bearer_token", file, literal) {
                let mut auth = toml::Table::new();
                auth.insert("credentials_secret".into(), "bearer_token".into());
                s.config
                    .insert("authorization".into(), toml::Value::Table(auth));
            }
        }
        "authorization" => {
            let mut auth = toml::Table::new();
            if let Some((_, kind)) = field(ctx, path, value, "type") {
                auth.insert("type".into(), kind.into());
            }
            let file = field(ctx, path, value, "credentials_file");
            let literal = field(ctx, path, value, "credentials");
            if secret(ctx, s, "authorization_credentials", file, literal) {
                auth.insert(
                    "credentials_secret".into(),
                    "authorization_credentials".into(),
                );
            }
            s.config
                .insert("authorization".into(), toml::Value::Table(auth));
        }
        "oauth2" => {
            let mut auth = toml::Table::new();
            for name in ["client_id", "token_url"] {
                if let Some((_, v)) = field(ctx, path, value, name) {
                    auth.insert(name.into(), v.into());
                }
            }
            let file = field(ctx, path, value, "client_secret_file");
            let literal = field(ctx, path, value, "client_secret");
            if secret(ctx, s, "oauth2_client_secret", file, literal) {
                auth.insert("client_secret_secret".into(), "oauth2_client_secret".into());
            }
            if let Value::Mapping(map) = value {
                if let Some(scopes) = map.get("scopes") {
                    let at = path.key("scopes");
                    if let Some(list) = ctx.strings(&at, scopes).filter(|l| !l.is_empty()) {
                        auth.insert("scopes".into(), super::array(list));
                    }
                }
                if let Some(params) = map.get("endpoint_params") {
                    let at = path.key("endpoint_params");
                    let mut table = toml::Table::new();
                    for (name, p, v) in ctx.entries(&at, params) {
                        if let Some(v) = ctx.string(&p, v) {
                            table.insert(name, v.into());
                        }
                    }
                    if !table.is_empty() {
                        auth.insert("endpoint_params".into(), toml::Value::Table(table));
                    }
                }
                for other in [
                    "tls_config",
                    "proxy_url",
                    "no_proxy",
                    "proxy_from_environment",
                    "proxy_connect_header",
                ] {
                    if map.contains_key(other) {
                        ctx.not_carried(
                            &path.key(other),
                            "the token request uses the probe's own TLS settings and no proxy",
                        );
                    }
                }
            }
            s.config.insert("oauth2".into(), toml::Value::Table(auth));
        }
        _ => {}
    }
}
