//! The `http` prober to the http-health plugin, whose `config` keys are
//! plugins/http-health/src/config.rs: blackbox_exporter's own names, so
//! most options carry over as they are. Credentials do not: probes.toml
//! never holds a credential (a blackbox.yml holds them in clear, or in
//! files only the operator can turn into secrets). A `proxy_url` carries
//! over as the probe's `proxy_url`, its origin added to the allow-list;
//! the proxy settings around it that the engine has no equivalent of are
//! reported.

use yaml_serde::Value;

use super::credentials;
use super::read::Ctx;
use super::{Section, array, flag, ip_protocol, tls};
use crate::import::lines::KeyPath;

/// Why credentials stay behind; the probe then goes without them.
pub(super) const CREDENTIALS: &str =
    "credentials must come from secrets, never from probes.toml: the imported probe sends none";

/// The engine reads no proxy settings from its environment.
const PROXY_ENV: &str =
    "the engine reads no proxy from its environment: set the probe's `proxy_url`";

/// Headers that carry credentials.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// The versions http-health reports (plugins/http-health/src/check.rs).
const HTTP_VERSIONS: [&str; 4] = ["HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "HTTP/2"];

pub(super) fn convert(ctx: &mut Ctx<'_>, path: &KeyPath, value: &Value) -> Section {
    let mut s = Section::default();
    for (key, p, v) in ctx.entries(path, value) {
        let c = &mut s.config;
        match key.as_str() {
            "valid_status_codes" => {
                let codes = match v {
                    Value::Null => Vec::new(),
                    Value::Sequence(items) => items
                        .iter()
                        .enumerate()
                        .filter_map(|(i, item)| ctx.uint(&p.index(i), item, 999))
                        .map(|n| toml::Value::Integer(n as i64))
                        .collect(),
                    _ => {
                        ctx.strings(&p, v);
                        Vec::new()
                    }
                };
                if !codes.is_empty() {
                    c.insert(key, toml::Value::Array(codes));
                }
            }
            "valid_http_versions" => {
                let mut versions = ctx.strings(&p, v).unwrap_or_default();
                let before = versions.len();
                versions.retain(|v| HTTP_VERSIONS.contains(&v.as_str()));
                if versions.len() != before {
                    ctx.not_carried(
                        &p,
                        format!(
                            "http-health knows {}; the others are left out{}",
                            HTTP_VERSIONS.join(", "),
                            if versions.is_empty() {
                                ", and an empty list accepts any version"
                            } else {
                                ""
                            }
                        ),
                    );
                }
                if !versions.is_empty() {
                    c.insert(key, array(versions));
                }
            }
            "method" => {
                if let Some(m) = ctx.string(&p, v).filter(|m| m != "GET" && !m.is_empty()) {
                    c.insert(key, m.into());
                }
            }
            "headers" => {
                let mut headers = toml::Table::new();
                for (name, hp, hv) in ctx.entries(&p, v) {
                    if CREDENTIAL_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                        ctx.not_carried(&hp, CREDENTIALS);
                    } else if let Some(value) = ctx.string(&hp, hv) {
                        headers.insert(name, value.into());
                    }
                }
                if !headers.is_empty() {
                    c.insert(key, toml::Value::Table(headers));
                }
            }
            "body" => {
                if let Some(b) = ctx.string(&p, v).filter(|b| !b.is_empty()) {
                    c.insert(key, b.into());
                }
            }
            "body_file" => ctx.not_carried(
                &p,
                "plugins read no files: write the body into the module as `body`",
            ),
            "fail_if_ssl" | "fail_if_not_ssl" => flag(ctx, &p, v, &key, false, c),
            "fail_if_body_matches_regexp" | "fail_if_body_not_matches_regexp" => {
                if let Some(list) = ctx.regexes(&p, v).filter(|l| !l.is_empty()) {
                    c.insert(key, array(list));
                }
            }
            "fail_if_header_matches" | "fail_if_header_not_matches" => {
                let specs = header_specs(ctx, &p, v);
                if !specs.is_empty() {
                    c.insert(key, toml::Value::Array(specs));
                }
            }
            "fail_if_body_json_matches_cel" | "fail_if_body_json_not_matches_cel" => {
                if let Some(expr) = ctx.string(&p, v).filter(|e| !e.is_empty()) {
                    c.insert(key, expr.into());
                }
            }
            "follow_redirects" => flag(ctx, &p, v, &key, true, c),
            // blackbox_exporter's older spelling of the same switch.
            "no_follow_redirects" => {
                if ctx.boolean(&p, v) == Some(true) {
                    c.insert("follow_redirects".into(), false.into());
                }
            }
            "enable_http2" => flag(ctx, &p, v, &key, true, c),
            "preferred_ip_protocol" => ip_protocol(ctx, &p, v, c),
            "ip_protocol_fallback" => flag(ctx, &p, v, &key, true, c),
            "compression" => match ctx.string(&p, v).as_deref() {
                None | Some("" | "identity") => {}
                Some(coding @ ("gzip" | "deflate")) => {
                    c.insert(key, coding.into());
                }
                Some(other) => ctx.not_carried(
                    &p,
                    format!("http-health decodes gzip and deflate, not {other:?}"),
                ),
            },
            "body_size_limit" => match body_size_limit(v) {
                Some(0) => {}
                Some(n) => {
                    c.insert(key, toml::Value::Integer(n as i64));
                }
                None => ctx.not_carried(
                    &p,
                    "not a size (bytes, or a number with B, KB, MB, GB, KiB, MiB, GiB)",
                ),
            },
            "tls_config" => tls::tls_config(ctx, &p, v, &mut s.tls),
            "basic_auth" | "bearer_token" | "bearer_token_file" | "authorization" | "oauth2" => {
                credentials::convert(ctx, &key, &p, v, &mut s);
            }
            "http_headers" => ctx.not_carried(
                &p,
                "set plain headers with `headers`; header values from secrets or files are not supported",
            ),
            "proxy_url" => {
                if !is_unset(v) {
                    s.proxy_url = proxy_origin(ctx, &p, v);
                }
            }
            "no_proxy" => {
                if !is_unset(v) {
                    ctx.not_carried(
                        &p,
                        "a probe's proxy applies to every target it reaches: give the targets that bypass it a probe without `proxy_url`",
                    );
                }
            }
            "proxy_from_environment" => {
                if ctx.boolean(&p, v) == Some(true) {
                    ctx.not_carried(&p, PROXY_ENV);
                }
            }
            "proxy_connect_header" => {
                if !is_unset(v) {
                    ctx.not_carried(
                        &p,
                        "the engine sends no headers of its own choosing with CONNECT: use a proxy that admits it without them",
                    );
                }
            }
            // The engine never resolves a target it reaches through a
            // proxy: the proxy does.
            "skip_resolve_phase_with_proxy" => {}
            _ => ctx.unknown(&p),
        }
    }
    s
}

/// A `proxy_url` as the probe's: its `http://host:port` origin. A proxy
/// spoken to over TLS, or one that needs credentials, is reported; the
/// credential is never repeated.
fn proxy_origin(ctx: &mut Ctx<'_>, path: &KeyPath, value: &Value) -> Option<String> {
    let text = ctx.string(path, value)?;
    let Ok(url) = url::Url::parse(&text) else {
        ctx.not_carried(path, "not a URL");
        return None;
    };
    if url.scheme() != "http" || !url.has_host() {
        ctx.not_carried(
            path,
            format!(
                "the engine speaks to a proxy in plain http://, not {:?}",
                url.scheme()
            ),
        );
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        ctx.not_carried(
            path,
            "a proxy's credentials never go into probes.toml, and the engine sends none: the proxy must admit it without them (the proxy itself was carried over)",
        );
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let host = url.host_str()?;
    ctx.note(
        path,
        "carried over as the probe's proxy_url; the proxy was added to its allow-list",
    );
    Some(format!("http://{host}:{port}"))
}

/// `[{ header, regexp, allow_missing }]`, as http-health's `HeaderMatch`.
fn header_specs(ctx: &mut Ctx<'_>, path: &KeyPath, value: &Value) -> Vec<toml::Value> {
    let mut out = Vec::new();
    for (p, item) in ctx.items(path, value) {
        let mut spec = toml::Table::new();
        for (key, kp, kv) in ctx.entries(&p, item) {
            match key.as_str() {
                "header" => {
                    if let Some(h) = ctx.string(&kp, kv) {
                        spec.insert(key, h.into());
                    }
                }
                "regexp" => {
                    if let Some(re) = ctx.string(&kp, kv) {
                        ctx.regex(&kp, &re);
                        spec.insert(key, re.into());
                    }
                }
                "allow_missing" => {
                    if ctx.boolean(&kp, kv) == Some(true) {
                        spec.insert(key, true.into());
                    }
                }
                _ => ctx.unknown(&kp),
            }
        }
        if spec.contains_key("header") && spec.contains_key("regexp") {
            out.push(toml::Value::Table(spec));
        } else {
            ctx.not_carried(&p, "a header match needs `header` and `regexp`");
        }
    }
    out
}

/// True for a value that leaves an option at its default (nothing, empty,
/// false), which need not be carried.
fn is_unset(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Mapping(m) => m.is_empty(),
        Value::Sequence(s) => s.is_empty(),
        _ => false,
    }
}

/// `body_size_limit` in bytes: a number, or one with a unit as
/// Prometheus' `Base2Bytes` reads it (`KB` and `KiB` alike are 1024).
fn body_size_limit(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let text = value.as_str()?.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: u64 = text.get(..digits)?.parse().ok()?;
    let unit = text.get(digits..)?.trim().to_ascii_uppercase();
    let power = match unit.as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 1,
        "M" | "MB" | "MIB" => 2,
        "G" | "GB" | "GIB" => 3,
        "T" | "TB" | "TIB" => 4,
        "P" | "PB" | "PIB" => 5,
        "E" | "EB" | "EIB" => 6,
        _ => return None,
    };
    n.checked_mul(1024u64.checked_pow(power)?)
        .filter(|n| i64::try_from(*n).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::blackbox::tests::convert_section;

    #[test]
    fn every_option_with_a_counterpart_is_carried_over() {
        let (s, report) = convert_section(
            "http",
            "valid_status_codes: [200, 204]
valid_http_versions: [\"HTTP/1.1\", \"HTTP/2.0\"]
method: POST
headers:
  Content-Type: application/json
  Host: vhost.example.com
body: '{\"a\": 1}'
fail_if_ssl: true
fail_if_not_ssl: false
fail_if_body_matches_regexp: [\"Could not connect\"]
fail_if_body_not_matches_regexp: [\"^ok\"]
fail_if_header_matches:
  - header: Set-Cookie
    allow_missing: true
    regexp: '.*'
fail_if_header_not_matches:
  - header: Access-Control-Allow-Origin
    regexp: '(\\*|example\\.com)'
follow_redirects: false
enable_http2: false
preferred_ip_protocol: ip4
ip_protocol_fallback: false
compression: gzip
body_size_limit: 10MB
tls_config:
  server_name: vhost.example.com
",
        );
        assert!(report.ends_with("everything carried over"), "{report}");
        let expected: toml::Table = toml::from_str(
            r#"valid_status_codes = [200, 204]
valid_http_versions = ["HTTP/1.1", "HTTP/2.0"]
method = "POST"
headers = { Content-Type = "application/json", Host = "vhost.example.com" }
body = '{"a": 1}'
fail_if_ssl = true
fail_if_body_matches_regexp = ["Could not connect"]
fail_if_body_not_matches_regexp = ["^ok"]
fail_if_header_matches = [{ header = "Set-Cookie", regexp = ".*", allow_missing = true }]
fail_if_header_not_matches = [{ header = "Access-Control-Allow-Origin", regexp = '(\*|example\.com)' }]
follow_redirects = false
enable_http2 = false
preferred_ip_protocol = "ip4"
ip_protocol_fallback = false
compression = "gzip"
body_size_limit = 10485760
"#,
        )
        .unwrap_or_default();
        assert_eq!(s.config, expected);
        assert_eq!(s.tls.server_name.as_deref(), Some("vhost.example.com"));
    }

    #[test]
    fn defaults_are_not_written() {
        let (s, report) = convert_section(
            "http",
            "method: GET\nvalid_status_codes: []\nfollow_redirects: true\npreferred_ip_protocol: ip6\ncompression: identity\nbody_size_limit: 0\nproxy_url: ''\nno_follow_redirects: false\n",
        );
        assert!(s.config.is_empty(), "{:?}", s.config);
        assert!(report.ends_with("everything carried over"), "{report}");
    }

    #[test]
    fn credentials_proxies_and_the_rest_are_reported_at_their_lines() {
        let (s, report) = convert_section(
            "http",
            "basic_auth:
  username: user
  password: hunter2
bearer_token: t0ken
headers:
  Authorization: Bearer t0ken
  Accept: text/plain
proxy_url: http://127.0.0.1:3128
compression: br
valid_http_versions: [HTTP/3]
body_file: /tmp/body
no_follow_redirects: true
frobnicate: 1
",
        );
        for line in [
            "b.yml:7: m.http.basic_auth.password: not carried over: a credential in clear is never copied into probes.toml; set environment variable BLACKBOX_M_HTTP_BASIC_AUTH_PASSWORD",
            "b.yml:8: m.http.bearer_token: not carried over: http-health takes one of basic_auth, authorization and oauth2",
            "b.yml:10: m.http.headers.Authorization: not carried over: credentials",
            "b.yml:12: m.http.proxy_url: note: carried over as the probe's proxy_url",
            "b.yml:13: m.http.compression: not carried over: http-health decodes gzip and deflate, not \"br\"",
            "b.yml:14: m.http.valid_http_versions: not carried over: http-health knows",
            "b.yml:15: m.http.body_file: not carried over: plugins read no files",
            "b.yml:17: m.http.frobnicate: unknown key: not carried over",
        ] {
            assert!(report.contains(line), "{line}\n---\n{report}");
        }
        assert!(
            !report.contains("hunter2") && !report.contains("t0ken"),
            "{report}"
        );
        assert_eq!(s.config["headers"]["Accept"].as_str(), Some("text/plain"));
        assert!(s.config["headers"].get("Authorization").is_none());
        assert_eq!(s.config["follow_redirects"].as_bool(), Some(false));
        assert_eq!(
            s.config["basic_auth"]["password_secret"].as_str(),
            Some("basic_auth_password")
        );
        assert_eq!(
            s.secrets["basic_auth_password"]["env"].as_str(),
            Some("BLACKBOX_M_HTTP_BASIC_AUTH_PASSWORD")
        );
    }

    #[test]
    fn sizes_read_as_base2_bytes() {
        let v = |s: &str| body_size_limit(&Value::String(s.into()));
        assert_eq!(v("1024"), Some(1024));
        assert_eq!(v("10MB"), Some(10 << 20));
        assert_eq!(v("1KiB"), Some(1024));
        assert_eq!(v("2 GB"), Some(2 << 30));
        assert_eq!(v("lots"), None);
        assert_eq!(v("99999EB"), None);
        assert_eq!(body_size_limit(&Value::Number(512.into())), Some(512));
    }
}
