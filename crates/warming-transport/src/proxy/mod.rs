//! Proxy mode: an app points its SDK's base URL here and gets warming with
//! no other change.
//!
//! `/proxy/anthropic/...` and `/proxy/openai/...` forward method, path,
//! query, headers and body to the provider and stream the answer back
//! unchanged, chunk by chunk. Meanwhile the request's start is a turn start,
//! the end of its answer a settled turn with the request as the warm
//! template, and the usage in the answer goes to history.

mod engine_pin;
mod enrolment;
mod headers;
mod identity;
mod path;
mod relay;
mod upgrade;
mod upstreams;
mod watch;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use warming_core::{ConversationId, KeepAlive};

use enrolment::Enrolment;
use headers::end_to_end;
use headers::{CONVERSATION_HEADER, WARMING_HEADER, WARMING_INTERVAL_HEADER};
pub use identity::conversation_id;
use path::forwarded_path;
use relay::{Lifecycle, Relay};
use upstreams::Route;
pub use upstreams::{documented_body_limit, Proxy, ProxyOptions};

use warming_service::ProviderKind;

use crate::http::{ApiError, AppState};
use warming_service::root_cause;

/// The model of a Gemini turn's path (`v1beta/models/{model}:generateContent`
/// or `:streamGenerateContent`; `v1` alike), if it is one.
fn gemini_model(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("v1beta/models/")
        .or_else(|| path.strip_prefix("v1/models/"))?;
    let (model, action) = rest.rsplit_once(':')?;
    (matches!(action, "generateContent" | "streamGenerateContent") && !model.contains('/'))
        .then_some(model)
}

/// The model resource of a Vertex AI turn's path
/// (`v1/projects/{p}/locations/{l}/publishers/google/models/{model}:generateContent`,
/// `:streamGenerateContent`; `v1beta1` alike), if it is one.
fn vertex_model(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("v1/")
        .or_else(|| path.strip_prefix("v1beta1/"))?;
    let (resource, action) = rest.rsplit_once(':')?;
    let parts: Vec<&str> = resource.split('/').collect();
    let shaped = matches!(
        parts.as_slice(),
        ["projects", p, "locations", l, "publishers", _, "models", m]
            if [p, l, m].iter().all(|s| !s.is_empty() && **s != "..")
    );
    (shaped && matches!(action, "generateContent" | "streamGenerateContent")).then_some(resource)
}

/// The model a Gemini or Vertex AI turn names in its path: the body does
/// not.
fn model_in_path(provider: ProviderKind, path: &str) -> Option<&str> {
    match provider {
        ProviderKind::Gemini => gemini_model(path),
        ProviderKind::Vertex => vertex_model(path),
        _ => None,
    }
}

/// Whether this call is a model turn (and so a lifecycle event).
fn is_turn(provider: ProviderKind, method: &axum::http::Method, rest: &str) -> bool {
    let path = rest.trim_end_matches('/');
    method == axum::http::Method::POST
        && match provider {
            ProviderKind::Anthropic => path == "v1/messages",
            ProviderKind::OpenAi => path == "v1/chat/completions" || path == "v1/responses",
            ProviderKind::Gemini | ProviderKind::Vertex => model_in_path(provider, path).is_some(),
            ProviderKind::Webhook => false,
        }
}

/// Whether a turn's body carries the conversation a warm replays: a
/// `messages` list (Anthropic Messages, OpenAI Chat) or an `input` (OpenAI
/// Responses: a list of items, or one string).
fn carries_a_conversation(body: &Value) -> bool {
    body.get("messages").is_some_and(Value::is_array)
        || body.get("contents").is_some_and(Value::is_array)
        || body
            .get("input")
            .is_some_and(|i| i.is_array() || i.is_string())
}

/// `ANY /proxy/{provider}/{*rest}`.
pub async fn forward(
    State(state): State<AppState>,
    // The decoded rest is not used: the raw path is forwarded as sent.
    Path((provider, _)): Path<(String, String)>,
    request: Request,
) -> Response {
    match forward_inner(&state, &provider, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn forward_inner(
    state: &AppState,
    provider: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let proxy = &state.proxy;
    let (parts, body) = request.into_parts();
    let rest = forwarded_path(parts.uri.path(), provider)?;
    let route = proxy.route(provider, rest)?;
    let (limit, setting) = proxy.body_limit(route.kind);
    let too_large = || ApiError::payload_too_large(limit, setting);
    if !is_turn(route.kind, &parts.method, rest) {
        // Not a model turn: nothing to learn from the body, which streams
        // through as it arrives.
        if crate::http::body::declared_length(&parts.headers).is_some_and(|n| n > limit as u64) {
            return Ok(crate::http::body::refuse_oversize(&parts.headers, body, too_large()).await);
        }
        return pass_through(state, &route, &parts, rest, body).await;
    }
    let body = match crate::http::body::read_limited(&parts.headers, body, limit, too_large).await {
        Ok(body) => body,
        Err(refused) => return Ok(refused),
    };
    let url = upstream_url(&route, rest, &parts);
    let (mut headers, carries_our_token) = outgoing_headers(state, &parts.headers);
    let enrolment = Enrolment::from_headers(&parts.headers)?;
    let turn = serde_json::from_slice::<Value>(&body)
        .ok()
        .filter(carries_a_conversation)
        .map(|mut turn| {
            // Gemini names the model in the path, not the body: the
            // conversation's template carries it for its warms and prices.
            if let (Some(model), Some(map)) =
                (model_in_path(route.kind, rest), turn.as_object_mut())
            {
                map.entry("model").or_insert_with(|| Value::from(model));
            }
            turn
        });
    // Several instances: a turn of a conversation another one holds is
    // that instance's to relay (its lifecycle, its client's key).
    if let Some(request_json) = &turn {
        if state.driver.clustered() && !crate::http::forward::from_peer(state, &parts.headers) {
            let id = turn_conversation(&state.proxy, &parts, request_json)?;
            if let Some(peer) = crate::peer::holder(state, &id)
                .await
                .map_err(ApiError::storage)?
            {
                return crate::http::forward::proxied_turn_to(state, &id, &peer, &parts, body)
                    .await;
            }
        }
    }
    let (lifecycle, body) = match turn {
        Some(request_json) => {
            let (lifecycle, rewritten) = begin_turn(
                state,
                &route,
                &parts,
                request_json,
                enrolment,
                carries_our_token,
                &mut headers,
            )
            .await?;
            let body = rewritten.unwrap_or(body);
            // The deployment's own engine behind the OpenAI API: a saved
            // prefix goes back before the turn that reads it.
            let body = if route.kind == ProviderKind::OpenAi {
                engine_pin::restored(&state.driver, &lifecycle.id, body).await
            } else {
                body
            };
            (Some(lifecycle), body)
        }
        None => (None, body),
    };
    let send = proxy
        .http
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(body)
        .send();
    let upstream = match tokio::time::timeout(proxy.first_byte_timeout, send).await {
        Ok(Ok(upstream)) => upstream,
        failed => {
            if let Some(lifecycle) = lifecycle {
                lifecycle.failed().await;
            }
            return Err(upstream_error(proxy, &route, failed.ok()));
        }
    };
    let backend = upstream
        .headers()
        .get(&proxy.backend_header)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(relayed(upstream, lifecycle, backend))
}

/// The upstream URL of a proxied call: the path kept below the upstream's
/// base, the client's query without warming's token.
fn upstream_url(route: &Route<'_>, rest: &str, parts: &Parts) -> String {
    let mut url = format!("{}/{rest}", route.base);
    if let Some(query) = parts.uri.query().and_then(forwarded_query) {
        url.push('?');
        url.push_str(&query);
    }
    url
}

/// The upstream's answer relayed to the client: its status and end-to-end
/// headers, the body chunk by chunk through a [`Relay`].
fn relayed(
    upstream: reqwest::Response,
    lifecycle: Option<Lifecycle>,
    backend: Option<String>,
) -> Response {
    let status = upstream.status();
    let response_headers = end_to_end(upstream.headers(), &[]);
    let relay = Relay::new(upstream, lifecycle, backend);
    let mut response = Response::new(Body::from_stream(relay.into_stream()));
    *response.status_mut() =
        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    *response.headers_mut() = response_headers;
    response
}

/// Forwards a call that is not a model turn, its body streamed as it
/// arrives, and relays the answer.
async fn pass_through(
    state: &AppState,
    route: &Route<'_>,
    parts: &Parts,
    rest: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let proxy = &state.proxy;
    let url = upstream_url(route, rest, parts);
    let (mut headers, _) = outgoing_headers(state, &parts.headers);
    let declared = crate::http::body::declared_length(&parts.headers);
    let chunked = parts
        .headers
        .contains_key(axum::http::header::TRANSFER_ENCODING);
    let mut request = proxy.http.request(parts.method.clone(), &url);
    if let Some(length) = declared.filter(|&n| n > 0) {
        // Streamed with its declared length, not re-chunked.
        headers.insert(
            axum::http::header::CONTENT_LENGTH,
            HeaderValue::from(length),
        );
        request = request.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    } else if chunked {
        request = request.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let send = request.headers(headers).send();
    let upstream = match tokio::time::timeout(proxy.first_byte_timeout, send).await {
        Ok(Ok(upstream)) => upstream,
        failed => return Err(upstream_error(proxy, route, failed.ok())),
    };
    Ok(relayed(upstream, None, None))
}

/// The headers sent upstream, and whether the client sent warming's own
/// token as `authorization` (removed: it never reaches a provider, even
/// sent by mistake as the provider key). Identity encoding, so usage can be
/// read from the answer as it passes.
fn outgoing_headers(state: &AppState, incoming: &HeaderMap) -> (HeaderMap, bool) {
    let mut headers = end_to_end(
        incoming,
        &[
            "host",
            "content-length",
            "accept-encoding",
            CONVERSATION_HEADER,
            WARMING_HEADER,
            WARMING_INTERVAL_HEADER,
            crate::http::auth::PROXY_TOKEN_HEADER,
            // The cluster's secret never reaches a provider.
            "x-warming-forwarded",
        ],
    );
    // Warming's token never leaves: not as a bearer, not as a provider key
    // (`x-api-key: TOKEN`), not in any other header.
    let mut carries_our_token = false;
    if let Some(token) = &state.token {
        let token = token.expose().as_bytes();
        let ours = |value: &HeaderValue| {
            let value = value.as_bytes();
            let bare = value
                .strip_prefix(b"Bearer ")
                .or_else(|| value.strip_prefix(b"bearer "))
                .unwrap_or(value);
            crate::http::auth::same(bare, token)
        };
        let leaked: Vec<HeaderName> = headers
            .iter()
            .filter(|(_, value)| ours(value))
            .map(|(name, _)| name.clone())
            .collect();
        carries_our_token = !leaked.is_empty();
        for name in leaked {
            headers.remove(name);
        }
    }
    (headers, carries_our_token)
}

/// The query forwarded upstream: the client's, without warming's token
/// (`?token=...`, which the dashboard's WebSocket may use) whatever its
/// value.
fn forwarded_query(query: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some("token"))
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// The conversation a proxied turn belongs to: the first header of
/// `x-conversation-id` and the session headers that is present, else the
/// session its body names (Claude Code's metadata), else the one its
/// request names by content.
fn turn_conversation(
    proxy: &Proxy,
    parts: &Parts,
    request: &Value,
) -> Result<ConversationId, ApiError> {
    let named = proxy
        .conversation_headers
        .iter()
        .find_map(|name| parts.headers.get(name).map(|raw| (name, raw)));
    match named {
        Some((name, raw)) => ConversationId::new(raw.to_str().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("{name}: {e}"))),
        None => Ok(identity::session_in_body(request)
            .and_then(|session| ConversationId::new(&session).ok())
            .unwrap_or_else(|| conversation_id(request))),
    }
}

/// A model turn is starting: names its conversation, applies what the
/// request asks of warming, keeps its credentials for warms, reports the
/// turn start, and asks the upstream for the conversation's sticky backend.
/// Where the conversation's plan says so, the request asks the provider for
/// its longer retention: the body to send instead is returned with it.
async fn begin_turn(
    state: &AppState,
    route: &Route<'_>,
    parts: &Parts,
    request: Value,
    enrolment: Enrolment,
    carries_our_token: bool,
    headers: &mut HeaderMap,
) -> Result<(Lifecycle, Option<axum::body::Bytes>), ApiError> {
    let proxy = &state.proxy;
    let id = turn_conversation(proxy, parts, &request)?;
    // From the headers that go upstream: warming's token is not among them.
    let credentials =
        headers::credentials(route.kind, headers, parts.uri.query(), carries_our_token);
    // Before the turn starts, so a refused write leaves no turn open.
    enrolment
        .apply(&state.driver, &id, proxy.enroll_all)
        .await?;
    let cancel = proxy.generations.begin(&id, credentials);
    let started_at = state.driver.now();
    let state_now = state.driver.turn_started(id.clone()).await?;
    if let Some(backend) = &state_now.backend {
        if !headers.contains_key(&proxy.preferred_backend_header) {
            if let Ok(v) = HeaderValue::from_str(backend) {
                headers.insert(proxy.preferred_backend_header.clone(), v);
            }
        }
    }
    // Asked once the plan says so, and on every request after: the client
    // goes on sending what it always did.
    let mut request = request;
    let first = state_now.plan.keep_alive == KeepAlive::Upgrade;
    let rewritten = ((first || state_now.upgraded_at.is_some())
        && upgrade::ask_longer_retention(route.kind, &mut request))
    .then(|| serde_json::to_vec(&request).map(axum::body::Bytes::from))
    .and_then(Result::ok);
    if rewritten.is_some() && first {
        // `content-length` is not forwarded (`outgoing_headers`): the new
        // body's is sent.
        state.driver.request_upgraded(id.clone()).await;
    }
    let lifecycle = Lifecycle {
        driver: state.driver.clone(),
        id,
        request,
        started_at,
        cancel,
    };
    Ok((lifecycle, rewritten))
}

/// The 502/504 for an upstream that timed out (`None`) or failed.
fn upstream_error(
    proxy: &Proxy,
    route: &Route<'_>,
    failed: Option<reqwest::Result<reqwest::Response>>,
) -> ApiError {
    match failed {
        Some(Err(e)) => {
            tracing::warn!(error = %e, "proxy: upstream unreachable");
            ApiError::upstream(format!(
                "cannot reach the upstream {} (set by {}): {}",
                route.base,
                route.flag,
                root_cause(&e)
            ))
        }
        _ => ApiError::upstream_timeout(format!(
            "the upstream {} did not answer within {} ms (--proxy-first-byte-timeout-ms)",
            route.base,
            proxy.first_byte_timeout.as_millis()
        )),
    }
}
