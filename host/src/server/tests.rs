//! The whole router in process: every route answered through `oneshot`,
//! with an engine and no plugins, so the endpoint's own behaviour (status
//! codes, content types, refusals, auth) is tested without the network.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::{WebState, router};
use crate::app::App;
use crate::config;
use crate::exposition::Exposition;
use crate::runtime::WasmEngine;
use crate::runtime::engine::PoolSize;

/// An app with an empty probe set, on the test's runtime.
fn app() -> Arc<App> {
    let config = config::parse(std::path::Path::new("probes.toml"), String::new())
        .unwrap_or_else(|e| panic!("empty config: {e}"));
    let engine = WasmEngine::new(
        PoolSize {
            instances: 2,
            max_memory: 16 << 20,
        },
        None,
    )
    .unwrap_or_else(|e| panic!("engine: {e}"));
    App::new(
        &config,
        Arc::new(engine),
        Arc::new(Exposition::new()),
        tokio::runtime::Handle::current(),
    )
}

async fn call(router: axum::Router, req: Request<Body>) -> (StatusCode, String, String) {
    let response = router.oneshot(req).await.unwrap_or_else(|e| match e {});
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    (status, content_type, body)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn liveness_holds_while_readiness_follows_the_config() {
    let app = app();
    let (status, _, _) = call(router(app.clone(), None, None), get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = call(router(app.clone(), None, None), get("/readyz")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    );
    app.ready.store(true, Ordering::Relaxed);
    let (status, _, _) = call(router(app, None, None), get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_negotiates_openmetrics_and_the_classic_format() {
    let app = app();
    let (status, content_type, body) = call(router(app.clone(), None, None), get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(body.contains("# TYPE wasmprobe_build_info gauge"), "{body}");
    assert!(!body.contains("# EOF"), "{body}");

    let req = Request::get("/metrics")
        .header(
            header::ACCEPT,
            "application/openmetrics-text; version=1.0.0",
        )
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, content_type, body) = call(router(app, None, None), req).await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
}

#[tokio::test]
async fn probe_refuses_a_missing_or_unknown_module_before_running_anything() {
    let app = app();
    let (status, _, body) = call(router(app.clone(), None, None), get("/probe")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("missing `module`"), "{body}");
    let (status, _, body) = call(
        router(app.clone(), None, None),
        get("/probe?module=nope&target=127.0.0.1"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("unknown module \"nope\""), "{body}");
}

#[tokio::test]
async fn reload_is_served_only_with_a_lifecycle_and_only_as_post() {
    let app = app();
    let req = Request::post("/-/reload")
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, _, _) = call(router(app.clone(), None, None), req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_status_page_is_html() {
    let (status, content_type, body) = call(router(app(), None, None), get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(body.contains("<table") || body.contains("<html"), "{body}");
}

#[tokio::test]
async fn basic_auth_guards_every_route_but_the_unauthenticated_ones() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let hash = bcrypt::hash("s3cret", 4).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("web.toml");
    std::fs::write(
        &path,
        format!(
            "[basic_auth_users]\nalice = \"{hash}\"\n\n[unauthenticated]\npaths = [\"/healthz\"]\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let web = Arc::new(WebState::load(&path).unwrap_or_else(|e| panic!("{e}")));
    let app = app();
    let guarded = |uri: &str, auth: Option<&str>| {
        let mut req = Request::get(uri);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        req.body(Body::empty()).unwrap_or_else(|e| panic!("{e}"))
    };
    use base64::Engine as _;
    let right = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
    );
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:guess")
    );
    for uri in ["/metrics", "/probe?module=x", "/", "/readyz"] {
        let (status, _, _) = call(
            router(app.clone(), None, Some(web.clone())),
            guarded(uri, None),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{uri} without credentials"
        );
        let (status, _, _) = call(
            router(app.clone(), None, Some(web.clone())),
            guarded(uri, Some(&wrong)),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{uri} with a wrong password"
        );
    }
    let (status, _, _) = call(
        router(app.clone(), None, Some(web.clone())),
        guarded("/metrics", Some(&right)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(router(app, None, Some(web)), guarded("/healthz", None)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an unauthenticated path needs no credentials"
    );
}

#[tokio::test]
async fn reload_refuses_cross_site_and_rebound_requests_and_serves_tools() {
    use crate::hostcalls::Services;
    use crate::lifecycle::{self, Lifecycle, Overrides};

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("probes.toml");
    std::fs::write(&path, "").unwrap_or_else(|e| panic!("{e}"));
    let config = lifecycle::load(&path, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
    let app = app();
    let lifecycle = Lifecycle::start(
        app.clone(),
        Services::default(),
        path,
        Overrides::default(),
        config,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let post = |pairs: &[(&'static str, &str)]| {
        let mut req = Request::post("/-/reload");
        for (k, v) in pairs {
            req = req.header(*k, *v);
        }
        req.body(Body::empty()).unwrap_or_else(|e| panic!("{e}"))
    };
    let route = || router(app.clone(), Some(lifecycle.clone()), None);

    let (status, _, body) = call(route(), post(&[("host", "127.0.0.1:10464")])).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "unchanged\n"));
    let (status, _, body) = call(
        route(),
        post(&[
            ("host", "127.0.0.1:10464"),
            ("origin", "https://evil.example"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, body) = call(route(), post(&[("host", "rebind.example:10464")])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) = call(
        route(),
        post(&[
            ("host", "localhost:10464"),
            ("sec-fetch-site", "cross-site"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
