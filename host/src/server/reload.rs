//! Reloading from outside: `POST /-/reload` and SIGHUP take the same path,
//! [`reload_all`]: the config (with its packages and plugins) and, when
//! the endpoint has one, the web config. 200 with what happened, or 400
//! with every problem found; whatever is refused keeps running as it was.
//!
//! `POST /-/reload` changes state, so a browser must not be able to send it
//! on a web page's behalf: a request whose `Origin` is not the endpoint
//! itself, or that a browser marks `Sec-Fetch-Site: cross-site`, is
//! refused with 403 (CSRF), and so is one whose `Host` names neither an
//! address nor `localhost` while the endpoint listens on loopback only
//! (DNS rebinding: a page's own domain that resolves to 127.0.0.1).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};

use super::web::WebState;
use crate::lifecycle::{Lifecycle, ReloadError, Reloaded};

/// What `/-/reload` needs: the lifecycle, the web config, and whether the
/// endpoint listens on loopback only.
#[derive(Debug, Clone)]
pub(super) struct ReloadState {
    pub(super) lifecycle: Arc<Lifecycle>,
    pub(super) web: Option<Arc<WebState>>,
}

/// Reloads the config and, when there is one, the web config (off the
/// server's threads: it reads files and may hash a password). A web config
/// that does not load leaves the running one in place and is said in the
/// second element.
pub async fn reload_all(
    lifecycle: &Arc<Lifecycle>,
    web: Option<&Arc<WebState>>,
    trigger: &'static str,
) -> (Result<Reloaded, ReloadError>, Option<String>) {
    let config = lifecycle.reload(trigger).await;
    let web_problem = match web {
        None => None,
        Some(web) => {
            let web = web.clone();
            let path = web.path().display().to_string();
            match tokio::task::spawn_blocking(move || web.reload()).await {
                Ok(Ok(())) => {
                    tracing::info!(path, trigger, "web config reloaded");
                    None
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, trigger, "web config reload refused; the running one stays");
                    Some(e.to_string())
                }
                Err(e) => {
                    tracing::warn!(path, error = %e, "web config reload failed; the running one stays");
                    Some(format!("{path}: {e}"))
                }
            }
        }
    };
    (config, web_problem)
}

/// Why a state-changing request is refused before it is served: `None`
/// when it may go on.
fn cross_site(headers: &HeaderMap) -> Option<String> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("?");
        let same = origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host));
        if !same {
            return Some(format!("Origin {origin} is not this endpoint ({host})"));
        }
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return Some("a cross-site request".into());
    }
    None
}

/// Whether `host` (a `Host` header) names this machine by address or as
/// `localhost`: anything else reaching a loopback listener came through a
/// name that someone else's DNS points here.
fn names_loopback_directly(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

pub(super) async fn reload(
    State(state): State<ReloadState>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    if let Some(why) = cross_site(&headers) {
        return (StatusCode::FORBIDDEN, format!("refused: {why}\n"));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if state.lifecycle.listens_on_loopback() && !names_loopback_directly(host) {
        return (
            StatusCode::FORBIDDEN,
            format!("refused: Host {host:?} is not an address of this loopback endpoint\n"),
        );
    }
    let (config, web) = reload_all(&state.lifecycle, state.web.as_ref(), "http").await;
    let web = web.map(|w| format!("web config refused, the running one stays: {w}\n"));
    match config {
        Ok(Reloaded::Applied { probes }) if web.is_none() => {
            (StatusCode::OK, format!("reloaded: {probes} probes\n"))
        }
        Ok(Reloaded::Unchanged) if web.is_none() => (StatusCode::OK, "unchanged\n".into()),
        Ok(_) => (StatusCode::BAD_REQUEST, web.unwrap_or_default()),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!(
                "reload refused, the running config stays: {e:#}\n{}",
                web.unwrap_or_default()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                *k,
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    #[test]
    fn same_origin_and_tools_without_an_origin_pass() {
        assert_eq!(cross_site(&headers(&[("host", "127.0.0.1:10464")])), None);
        assert_eq!(
            cross_site(&headers(&[
                ("host", "127.0.0.1:10464"),
                ("origin", "http://127.0.0.1:10464")
            ])),
            None
        );
    }

    #[test]
    fn another_origin_or_a_cross_site_fetch_is_refused() {
        assert!(
            cross_site(&headers(&[
                ("host", "127.0.0.1:10464"),
                ("origin", "https://evil.example")
            ]))
            .is_some()
        );
        assert!(cross_site(&headers(&[("host", "127.0.0.1:10464"), ("origin", "null")])).is_some());
        assert!(
            cross_site(&headers(&[
                ("host", "127.0.0.1:10464"),
                ("sec-fetch-site", "cross-site")
            ]))
            .is_some()
        );
    }

    #[test]
    fn only_addresses_and_localhost_name_a_loopback_endpoint() {
        for ok in [
            "127.0.0.1:10464",
            "localhost:10464",
            "[::1]:10464",
            "LOCALHOST",
            "127.0.0.1",
        ] {
            assert!(names_loopback_directly(ok), "{ok}");
        }
        for bad in ["rebind.example:10464", "evil.localhost.example", ""] {
            assert!(!names_loopback_directly(bad), "{bad}");
        }
    }
}
