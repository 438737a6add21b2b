//! The schema `wasmprobe check` validates probes against: every key of the
//! config is in it, and a credential written in the config is refused
//! without its value showing in the error.

use super::*;

/// The errors `wasmprobe check` would report for `config`.
fn errors(config: serde_json::Value) -> Vec<String> {
    let schema = serde_json::to_value(schemars::schema_for!(Config)).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator
        .iter_errors(&config)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_schema_admits_every_key() {
    let all = serde_json::json!({
        "method": "POST",
        "headers": {"X-Probe": "1"},
        "fail_if_body_json_matches_cel": "body.status == 'down'",
        "fail_if_body_json_not_matches_cel": "body.ok",
        "basic_auth": {"username": "probe", "password_secret": "pw"},
    });
    assert_eq!(errors(all), Vec::<String>::new());
    let oauth2 = serde_json::json!({
        "oauth2": {
            "client_id": "probe",
            "client_secret_secret": "cs",
            "token_url": "https://127.0.0.1:9443/token",
            "scopes": ["read"],
            "endpoint_params": {"audience": "api"},
        },
    });
    assert_eq!(errors(oauth2.clone()), Vec::<String>::new());
    // What the schema admits, serde parses.
    assert!(serde_json::from_value::<Config>(oauth2).is_ok());
    let authorization = serde_json::json!({
        "authorization": {"type": "Token", "credentials_secret": "t"},
    });
    assert_eq!(errors(authorization), Vec::<String>::new());
}

#[test]
fn the_schema_refuses_credentials_without_showing_them() {
    for config in [
        serde_json::json!({"basic_auth": {"username": "u", "password": "hunter22"}}),
        serde_json::json!({"authorization": {"credentials_secret": "t", "credentials": "hunter22"}}),
        serde_json::json!({"oauth2": {"client_id": "c", "client_secret_secret": "s",
            "token_url": "http://127.0.0.1/t", "client_secret": "hunter22"}}),
        serde_json::json!({"bearer_token": "hunter22"}),
        serde_json::json!({"headers": {"Authorization": "Bearer hunter22"}}),
        serde_json::json!({"headers": {"authorization": "Bearer hunter22"}}),
    ] {
        let errors = errors(config.clone());
        assert_eq!(errors.len(), 1, "{config}: {errors:?}");
        assert!(!errors[0].contains("hunter22"), "{config}: {errors:?}");
    }
}

#[test]
fn the_schema_refuses_mistakes() {
    for (config, at) in [
        (
            serde_json::json!({"authorization": {"type": "Bearer"}}),
            "/authorization",
        ),
        (
            serde_json::json!({"authorization": {"credentials_secret": ""}}),
            "/authorization/credentials_secret",
        ),
        (
            serde_json::json!({"basic_auth": {"password_secret": 5}}),
            "/basic_auth/password_secret",
        ),
        (
            serde_json::json!({"oauth2": {"client_id": "c", "client_secret_secret": "s"}}),
            "/oauth2",
        ),
        (
            serde_json::json!({"oauth2": {"client_id": "c", "client_secret_secret": "s",
            "token_url": "http://127.0.0.1/t", "scope": "x"}}),
            "/oauth2",
        ),
        (
            serde_json::json!({"fail_if_body_json_matches_cel": ["a"]}),
            "/fail_if_body_json_matches_cel",
        ),
    ] {
        let errors = errors(config.clone());
        assert_eq!(errors.len(), 1, "{config}: {errors:?}");
        assert!(
            errors[0].starts_with(&format!("{at}: ")),
            "{config}: {errors:?}"
        );
    }
}
