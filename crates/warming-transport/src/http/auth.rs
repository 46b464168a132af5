//! Token checks: bearer (or `?token=`) for `/v1`, `/metrics` and the
//! dashboard; `x-warming-token` for the proxy, whose `authorization` header
//! belongs to the provider.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::query::query_value;

/// Compares without an early exit, so timing does not reveal the token.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The header a proxied call carries warming's token in.
pub const PROXY_TOKEN_HEADER: &str = "x-warming-token";

/// Whether `given` is the configured token (always, when none is).
pub fn token_matches(state: &AppState, given: Option<&str>) -> bool {
    match &state.token {
        None => true,
        Some(token) => given.is_some_and(|g| same(g.as_bytes(), token.expose().as_bytes())),
    }
}

/// Lets a proxied call through when no token is configured, or when it
/// carries `x-warming-token: TOKEN`.
pub async fn require_proxy_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let given = req
        .headers()
        .get(PROXY_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok());
    if token_matches(&state, given) {
        next.run(req).await
    } else {
        ApiError::unauthorized_proxy().into_response()
    }
}

/// `/metrics` and the dashboard: as `/v1`, unless `--public-metrics`.
pub async fn require_token_unless_public(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if state.public_metrics {
        return next.run(req).await;
    }
    // A person opening the dashboard in a browser is told how to get in,
    // in a page, not a JSON error.
    let page = req.uri().path() == "/" && !token_matches(&state, given_token(&req));
    if page {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            axum::response::Html(TOKEN_PAGE),
        )
            .into_response();
    }
    require_token(State(state), req, next).await
}

/// What `GET /` answers without the right token.
const TOKEN_PAGE: &str = "<!doctype html><meta charset=utf-8><title>warming: token needed</title>\
<body style=\"font-family:system-ui;max-width:40em;margin:3em auto\">\
<h1>This warming server needs its token</h1>\
<p>It was started with <code>--token</code> (or <code>WARMING_TOKEN</code>). Open \
<code>/?token=YOUR_TOKEN</code> to see the dashboard, or send \
<code>authorization: Bearer YOUR_TOKEN</code>.</p></body>";

/// The token a request carries: `authorization: Bearer`, else `?token=`.
fn given_token(req: &Request) -> Option<&str> {
    bearer(req.headers()).or_else(|| query_value(req.uri().query(), "token"))
}

/// Lets a request through when no token is configured, or when it carries
/// `authorization: Bearer TOKEN` (or `?token=TOKEN`, for browsers opening a
/// WebSocket, which cannot set headers).
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let given = given_token(&req);
    if token_matches(&state, given) {
        next.run(req).await
    } else if given.is_some() {
        ApiError::wrong_token().into_response()
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// The token of an `authorization: Bearer TOKEN` header, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Whether a request may be served on a connection admitted on the
/// reserve (see [`crate::admission`]): a probe (`/healthz`, `/readyz`),
/// or a caller with the token in any of the places routes take it. With
/// no token configured, everyone holds it.
pub fn trusted_on_reserve(state: &AppState) -> crate::listen::Trusted {
    let state = state.clone();
    std::sync::Arc::new(move |parts: &http::request::Parts| {
        if matches!(parts.uri.path(), "/healthz" | "/readyz") {
            return true;
        }
        let query = query_value(parts.uri.query(), "token");
        let proxy = parts
            .headers
            .get(PROXY_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok());
        [bearer(&parts.headers), proxy, query]
            .into_iter()
            .flatten()
            .any(|given| token_matches(&state, Some(given)))
            || state.token.is_none()
    })
}
