use super::fake::{FakeIo, error, response};
use super::*;
use crate::auth::oauth2::STATE_KEY;
use crate::config::Config;
use wasmprobe_sdk::http::ErrorKind;

const TARGET: &str = "http://127.0.0.1:8080/health";
const TOKEN_URL: &str = "http://127.0.0.1:9000/token";

fn check(json: &str) -> Check {
    let config: Config = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
    Check::new(config).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn value(r: &Report, name: &str) -> Option<f64> {
    r.samples.iter().find(|s| s.name == name).map(|s| s.value)
}

fn oauth2(extra: &str) -> Check {
    check(&format!(
        r#"{{"oauth2": {{"client_id": "probe", "client_secret_secret": "cs", "token_url": "{TOKEN_URL}"{extra}}}}}"#
    ))
}

fn token(access_token: &str, expires_in: u64) -> Result<Response, HttpError> {
    Ok(response(
        200,
        &format!(
            r#"{{"access_token": "{access_token}", "token_type": "bearer", "expires_in": {expires_in}}}"#
        ),
        &[("Content-Type", "application/json")],
    ))
}

#[test]
fn basic_auth_goes_on_the_probe_request() {
    let c = check(r#"{"basic_auth": {"username": "Aladdin", "password_secret": "pw"}}"#);
    let io = FakeIo::with_secrets(&[("pw", "open sesame")]);
    io.answer(Ok(response(200, "ok", &[])));
    let r = run(&c, TARGET, &io);
    assert!(r.success, "{:?}", r.message);
    assert_eq!(io.sent.borrow().len(), 1);
    assert_eq!(io.sent.borrow()[0].url, TARGET);
    assert_eq!(
        io.authorization(0).as_deref(),
        Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    );
}

#[test]
fn no_auth_sends_no_authorization() {
    let io = FakeIo::default();
    io.answer(Ok(response(200, "ok", &[])));
    assert!(run(&check("{}"), TARGET, &io).success);
    assert_eq!(io.authorization(0), None);
}

#[test]
fn a_missing_secret_fails_before_sending() {
    let c = check(r#"{"authorization": {"credentials_secret": "token"}}"#);
    let io = FakeIo::default();
    let r = run(&c, TARGET, &io);
    assert!(!r.success);
    assert!(io.sent.borrow().is_empty());
    assert!(
        r.message
            .as_deref()
            .is_some_and(|m| m.contains("secret \"token\" is not set")),
        "{:?}",
        r.message
    );
    assert_eq!(value(&r, "probe_http_status_code"), Some(0.0));
    assert_eq!(value(&r, "probe_failed_due_to_cel"), None);
}

#[test]
fn oauth2_fetches_a_token_then_reuses_it_until_it_expires() {
    let c = oauth2(r#", "scopes": ["probe"]"#);
    let io = FakeIo::with_secrets(&[("cs", "client-secret")]);
    io.answer(token("first", 3600))
        .answer(Ok(response(200, "ok", &[])));
    let r = run(&c, TARGET, &io);
    assert!(r.success, "{:?}", r.message);
    {
        let sent = io.sent.borrow();
        assert_eq!(sent.len(), 2);
        assert_eq!(
            (sent[0].method.as_str(), sent[0].url.as_str()),
            ("POST", TOKEN_URL)
        );
        assert_eq!(sent[1].url, TARGET);
    }
    assert_eq!(io.authorization(1).as_deref(), Some("Bearer first"));
    assert!(io.state.borrow().contains_key(STATE_KEY));

    // The next run, a minute later: the kept token, no token request.
    io.now.set(io.now.get() + 60);
    io.answer(Ok(response(200, "ok", &[])));
    assert!(run(&c, TARGET, &io).success);
    assert_eq!(io.sent.borrow().len(), 3);
    assert_eq!(io.authorization(2).as_deref(), Some("Bearer first"));

    // Near its expiry: a new one.
    io.now.set(io.now.get() + 3600);
    io.answer(token("second", 3600))
        .answer(Ok(response(200, "ok", &[])));
    assert!(run(&c, TARGET, &io).success);
    assert_eq!(io.sent.borrow()[3].url, TOKEN_URL);
    assert_eq!(io.authorization(4).as_deref(), Some("Bearer second"));

    // Another config (scopes): a new one too.
    let other = oauth2(r#", "scopes": ["probe", "more"]"#);
    io.answer(token("third", 3600))
        .answer(Ok(response(200, "ok", &[])));
    assert!(run(&other, TARGET, &io).success);
    assert_eq!(io.sent.borrow()[5].url, TOKEN_URL);
    assert_eq!(io.authorization(6).as_deref(), Some("Bearer third"));
}

#[test]
fn a_failed_token_request_fails_the_probe() {
    let c = oauth2("");
    let io = FakeIo::with_secrets(&[("cs", "client-secret")]);
    io.answer(Ok(response(400, r#"{"error": "invalid_scope"}"#, &[])));
    let r = run(&c, TARGET, &io);
    assert!(!r.success);
    assert_eq!(io.sent.borrow().len(), 1, "the target is not asked");
    assert_eq!(
        r.message.as_deref(),
        Some("oauth2: token endpoint http://127.0.0.1:9000/token answered 400: invalid_scope")
    );
    assert_eq!(value(&r, "probe_http_status_code"), Some(0.0));

    let io = FakeIo::with_secrets(&[("cs", "client-secret")]);
    io.answer(Err(error(
        ErrorKind::Denied,
        "http://127.0.0.1:9000 is not allowed",
    )));
    let r = run(&c, TARGET, &io);
    assert!(!r.success);
    assert!(
        r.message.as_deref().is_some_and(|m| m.contains("Denied")),
        "{:?}",
        r.message
    );
    // No client secret: no token request.
    let io = FakeIo::default();
    let r = run(&c, TARGET, &io);
    assert!(!r.success);
    assert!(io.sent.borrow().is_empty());
}

#[test]
fn a_token_the_target_refuses_is_not_offered_again() {
    let c = oauth2("");
    let io = FakeIo::with_secrets(&[("cs", "client-secret")]);
    io.answer(token("revoked", 3600))
        .answer(Ok(response(401, "", &[])));
    let r = run(&c, TARGET, &io);
    assert!(!r.success);
    assert!(!io.state.borrow().contains_key(STATE_KEY));
    io.answer(token("fresh", 3600))
        .answer(Ok(response(200, "ok", &[])));
    assert!(run(&c, TARGET, &io).success);
    assert_eq!(io.sent.borrow()[2].url, TOKEN_URL);
    assert_eq!(io.authorization(3).as_deref(), Some("Bearer fresh"));
}

#[test]
fn a_full_state_still_probes_and_says_so() {
    let c = oauth2("");
    let io = FakeIo {
        state_full: true,
        ..FakeIo::with_secrets(&[("cs", "client-secret")])
    };
    io.answer(token("t", 3600))
        .answer(Ok(response(200, "ok", &[])));
    assert!(run(&c, TARGET, &io).success);
    assert_eq!(io.authorization(1).as_deref(), Some("Bearer t"));
    assert_eq!(io.notes.borrow().len(), 1);
}
