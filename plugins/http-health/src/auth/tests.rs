use super::oauth2::{self, EXPIRY_MARGIN, Token, form_encode};
use super::*;
use crate::run::fake::{FakeIo, error, response};
use wasmprobe_sdk::http::{self, ErrorKind};

fn config(json: &str) -> Config {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn auth(json: &str) -> Auth {
    Auth::from_config(&config(json)).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn refused(json: &str) -> String {
    match Auth::from_config(&config(json)) {
        Ok(a) => panic!("{json} was accepted: {a:?}"),
        Err(e) => e,
    }
}

fn base() -> http::Request {
    http::request("GET", "http://127.0.0.1:8080/health")
}

fn header(a: &Auth, io: &FakeIo) -> Result<Option<String>, String> {
    a.credential(io, &base()).map(|c| c.map(|c| c.header))
}

#[test]
fn basic_auth_reads_the_password_secret() {
    // RFC 7617's example.
    let a = auth(r#"{"basic_auth": {"username": "Aladdin", "password_secret": "pw"}}"#);
    let io = FakeIo::with_secrets(&[("pw", "open sesame")]);
    assert_eq!(
        header(&a, &io),
        Ok(Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into()))
    );
    let a = auth(r#"{"basic_auth": {"username_secret": "user", "password_secret": "pw"}}"#);
    let io = FakeIo::with_secrets(&[("user", "Aladdin"), ("pw", "open sesame")]);
    assert_eq!(
        header(&a, &io),
        Ok(Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into()))
    );
    // No password: an empty one, as blackbox_exporter sends.
    let a = auth(r#"{"basic_auth": {"username": "probe"}}"#);
    assert_eq!(
        header(&a, &FakeIo::default()),
        Ok(Some(basic_header("probe", "")))
    );
}

#[test]
fn authorization_sends_type_and_credentials() {
    let io = FakeIo::with_secrets(&[("token", "t0k3n")]);
    let a = auth(r#"{"authorization": {"credentials_secret": "token"}}"#);
    assert_eq!(header(&a, &io), Ok(Some("Bearer t0k3n".into())));
    let a = auth(r#"{"authorization": {"type": "Token", "credentials_secret": "token"}}"#);
    assert_eq!(header(&a, &io), Ok(Some("Token t0k3n".into())));
    assert_eq!(header(&auth("{}"), &io), Ok(None));
}

#[test]
fn a_missing_secret_fails_naming_it() {
    let a = auth(r#"{"authorization": {"credentials_secret": "token"}}"#);
    let e = header(&a, &FakeIo::default()).unwrap_err();
    assert!(
        e.starts_with("authorization.credentials_secret: secret \"token\" is not set"),
        "{e}"
    );
}

#[test]
fn a_secret_with_a_line_break_is_refused_without_showing_it() {
    let a = auth(r#"{"authorization": {"credentials_secret": "token"}}"#);
    let io = FakeIo::with_secrets(&[("token", "abc\r\nX-Injected: 1")]);
    let e = header(&a, &io).unwrap_err();
    assert!(e.contains("control character"), "{e}");
    assert!(!e.contains("abc"), "{e}");
    let a = auth(r#"{"basic_auth": {"username_secret": "user"}}"#);
    let io = FakeIo::with_secrets(&[("user", "a:b")]);
    let e = header(&a, &io).unwrap_err();
    assert!(e.contains("colon"), "{e}");
    assert!(!e.contains("a:b"), "{e}");
}

#[test]
fn literal_credentials_are_refused_without_repeating_them() {
    for (json, key, instead) in [
        (
            r#"{"basic_auth": {"username": "u", "password": "hunter22"}}"#,
            "basic_auth.password:",
            "basic_auth.password_secret",
        ),
        (
            r#"{"basic_auth": {"username": "u", "password_file": "/run/hunter22"}}"#,
            "basic_auth.password_file:",
            "basic_auth.password_secret",
        ),
        (
            r#"{"basic_auth": {"username_file": "/run/hunter22"}}"#,
            "basic_auth.username_file:",
            "basic_auth.username_secret",
        ),
        (
            r#"{"authorization": {"credentials": "hunter22", "credentials_secret": "t"}}"#,
            "authorization.credentials:",
            "authorization.credentials_secret",
        ),
        (
            r#"{"authorization": {"credentials_file": "/hunter22", "credentials_secret": "t"}}"#,
            "authorization.credentials_file:",
            "authorization.credentials_secret",
        ),
        (
            r#"{"bearer_token": "hunter22"}"#,
            "bearer_token:",
            "authorization.credentials_secret",
        ),
        (
            r#"{"bearer_token_file": "/hunter22"}"#,
            "bearer_token_file:",
            "authorization.credentials_secret",
        ),
        (
            r#"{"oauth2": {"client_id": "c", "client_secret": "hunter22", "client_secret_secret": "s", "token_url": "http://127.0.0.1/t"}}"#,
            "oauth2.client_secret:",
            "oauth2.client_secret_secret",
        ),
        (
            r#"{"oauth2": {"client_id": "c", "client_secret_file": "/hunter22", "client_secret_secret": "s", "token_url": "http://127.0.0.1/t"}}"#,
            "oauth2.client_secret_file:",
            "oauth2.client_secret_secret",
        ),
        (
            r#"{"oauth2": {"client_id": "c", "client_secret_secret": "s", "token_url": "http://127.0.0.1/t", "endpoint_params": {"client_secret": "hunter22"}}}"#,
            "oauth2.endpoint_params.client_secret:",
            "oauth2.client_secret_secret",
        ),
        (
            r#"{"headers": {"authorization": "Bearer hunter22"}}"#,
            "headers.Authorization:",
            "credentials_secret",
        ),
    ] {
        let e = refused(json);
        assert!(e.starts_with(key), "{json}: {e}");
        assert!(e.contains(instead), "{json}: {e}");
        assert!(!e.contains("hunter22"), "{json}: {e}");
    }
}

#[test]
fn one_way_to_authenticate_at_a_time() {
    let e = refused(
        r#"{"basic_auth": {"username": "u"}, "authorization": {"credentials_secret": "t"}}"#,
    );
    assert_eq!(
        e,
        "basic_auth and authorization are set: at most one of basic_auth, authorization and oauth2 may be"
    );
    let e = refused(
        r#"{"authorization": {"credentials_secret": "t"}, "oauth2": {"client_id": "c", "client_secret_secret": "s", "token_url": "http://127.0.0.1/t"}}"#,
    );
    assert!(e.starts_with("authorization and oauth2 are set"), "{e}");
}

#[test]
fn bad_auth_config_is_refused() {
    for (json, start) in [
        (
            r#"{"authorization": {"type": "Basic", "credentials_secret": "t"}}"#,
            "authorization.type: \"Basic\" is basic_auth's",
        ),
        (
            r#"{"authorization": {"type": "Bearer token", "credentials_secret": "t"}}"#,
            "authorization.type: \"Bearer token\" is not an authentication scheme",
        ),
        (
            r#"{"basic_auth": {"username": "a:b"}}"#,
            "basic_auth.username: \"a:b\" holds a colon",
        ),
        (
            r#"{"basic_auth": {"username": "a", "username_secret": "u"}}"#,
            "basic_auth: username and username_secret are both set",
        ),
        (
            r#"{"oauth2": {"client_id": "c", "client_secret_secret": "s", "token_url": "ftp://127.0.0.1/t"}}"#,
            "oauth2.token_url: \"ftp://127.0.0.1/t\" is not an http:// or https:// URL",
        ),
        (
            r#"{"oauth2": {"client_id": "c", "client_secret_secret": "s", "token_url": "http://127.0.0.1/t", "scopes": ["a"], "endpoint_params": {"scope": "b"}}}"#,
            "oauth2.endpoint_params.scope: scopes are set too",
        ),
    ] {
        let e = refused(json);
        assert!(e.starts_with(start), "{json}: {e}");
    }
    // An empty secret name is a parse error.
    let e = serde_json::from_str::<Config>(r#"{"authorization": {"credentials_secret": ""}}"#)
        .map(|_| ())
        .unwrap_err();
    assert!(e.to_string().contains("a secret name is empty"), "{e}");
}

fn client(extra: &str) -> oauth2::Client {
    let json = format!(
        r#"{{"oauth2": {{"client_id": "probe client", "client_secret_secret": "cs", "token_url": "http://127.0.0.1:9000/token"{extra}}}}}"#
    );
    match auth(&json) {
        Auth::OAuth2(c) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn token_request_is_a_client_credentials_grant() {
    let c = client(
        r#", "scopes": ["read", "write:all"], "endpoint_params": {"audience": "https://api/"}"#,
    );
    let mut b = base();
    b.preferred_ip_protocol = Some(http::IpProtocol::Ip4);
    let req = c.token_request("s3cr&t", &b);
    assert_eq!(req.method, "POST");
    assert_eq!(req.url, "http://127.0.0.1:9000/token");
    assert!(!req.follow_redirects);
    assert_eq!(req.preferred_ip_protocol, Some(http::IpProtocol::Ip4));
    assert_eq!(
        String::from_utf8(req.body.clone().unwrap_or_default()).unwrap(),
        "grant_type=client_credentials&scope=read+write%3Aall&audience=https%3A%2F%2Fapi%2F"
    );
    // RFC 6749 2.3.1: id and secret form-encoded, then Basic.
    let expected = basic_header("probe+client", "s3cr%26t");
    assert!(
        req.headers
            .contains(&("Authorization".to_string(), expected)),
        "{:?}",
        req.headers
    );
    assert!(req.headers.contains(&(
        "Content-Type".to_string(),
        "application/x-www-form-urlencoded".to_string()
    )));
    // endpoint_params may replace grant_type, as golang.org/x/oauth2 allows.
    let c = client(r#", "endpoint_params": {"grant_type": "urn:custom"}"#);
    let req = c.token_request("s", &base());
    assert_eq!(req.body.as_deref(), Some(&b"grant_type=urn%3Acustom"[..]));
}

#[test]
fn form_encoding() {
    assert_eq!(form_encode("a b+c/é~_.-"), "a+b%2Bc%2F%C3%A9~_.-");
}

#[test]
fn token_answers() {
    let c = client("");
    let ok = |body: &str| c.parse(Ok(response(200, body, &[])));
    assert_eq!(
        ok(r#"{"access_token": "at", "token_type": "bearer", "expires_in": 3600}"#),
        Ok(Token {
            token_type: "Bearer".into(),
            access_token: "at".into(),
            expires_in: Some(3600),
        })
    );
    assert_eq!(
        ok(r#"{"access_token": "at", "expires_in": "60"}"#),
        Ok(Token {
            token_type: "Bearer".into(),
            access_token: "at".into(),
            expires_in: Some(60),
        })
    );
    assert_eq!(
        ok(r#"{"access_token": "at", "token_type": "MAC", "expires_in": 0}"#)
            .map(|t| (t.token_type, t.expires_in)),
        Ok(("MAC".into(), None))
    );
    let e = ok(r#"{"token_type": "bearer"}"#).unwrap_err();
    assert!(
        e.starts_with(
            "oauth2: token endpoint http://127.0.0.1:9000/token answered 200 with no JSON token"
        ),
        "{e}"
    );
    assert!(ok(r#"{"access_token": ""}"#).is_err());
    assert!(ok(r#"{"access_token": "a", "token_type": "two words"}"#).is_err());
    let e = c
        .parse(Ok(response(
            401,
            r#"{"error": "invalid_client", "error_description": "bad secret"}"#,
            &[],
        )))
        .unwrap_err();
    assert_eq!(
        e,
        "oauth2: token endpoint http://127.0.0.1:9000/token answered 401: invalid_client (bad secret)"
    );
    let e = c
        .parse(Ok(response(503, "<html>down</html>", &[])))
        .unwrap_err();
    assert_eq!(
        e,
        "oauth2: token endpoint http://127.0.0.1:9000/token answered 503"
    );
    let e = c
        .parse(Err(error(ErrorKind::Denied, "not in allow")))
        .unwrap_err();
    assert_eq!(
        e,
        "oauth2: token request to http://127.0.0.1:9000/token failed: ErrorKind::Denied: not in allow"
    );
}

#[test]
fn a_kept_token_is_reused_while_fresh_and_for_the_same_config() {
    let c = client("");
    let token = Token {
        token_type: "Bearer".into(),
        access_token: "at".into(),
        expires_in: Some(100),
    };
    let kept = c.keep(&token, 1000).unwrap();
    assert!(c.reuses(&kept, 1000));
    assert!(c.reuses(&kept, 1100 - EXPIRY_MARGIN - 1));
    assert!(!c.reuses(&kept, 1100 - EXPIRY_MARGIN));
    assert!(!client(r#", "scopes": ["x"]"#).reuses(&kept, 1000));
    // Without expires_in: until the target refuses it.
    let forever = c
        .keep(
            &Token {
                expires_in: None,
                ..token.clone()
            },
            1000,
        )
        .unwrap();
    assert!(c.reuses(&forever, u64::MAX));
    // Stale by the next run: not kept.
    let short = Token {
        expires_in: Some(EXPIRY_MARGIN),
        ..token
    };
    assert_eq!(c.keep(&short, 1000), None);
}
