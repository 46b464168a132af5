//! Proxy mode: an app points its SDK's base URL here and gets warming with
//! no other change.
//!
//! `/proxy/anthropic/...` and `/proxy/openai/...` forward method, path,
//! query, headers and body to the provider and stream the answer back
//! unchanged, chunk by chunk. Meanwhile the request's start is a turn start,
//! the end of its answer a settled turn with the request as the warm
//! template, and the usage in the answer goes to history.

mod enrolment;
mod headers;
mod identity;
mod path;
mod relay;
mod watch;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use warming_core::ConversationId;

use enrolment::Enrolment;
use headers::end_to_end;
pub use identity::conversation_id;
use path::forwarded_path;
use relay::{Lifecycle, Relay};

use crate::config::{ProviderKind, ServerConfig};
use warming_service::generations::Generations;

use crate::http::{ApiError, AppState};
use crate::provider::root_cause;

/// Request header that names a conversation instead of the derived id.
const CONVERSATION_HEADER: &str = "x-conversation-id";

/// Request header turning warming on or off for the proxied conversation.
const WARMING_HEADER: &str = "x-warming";

/// Request header choosing its interval, in seconds.
const WARMING_INTERVAL_HEADER: &str = "x-warming-interval";

/// What the proxy needs.
#[derive(Debug)]
pub struct Proxy {
    /// Client for forwarding: no overall timeout, streams may be long.
    http: reqwest::Client,
    /// Anthropic's base URL.
    anthropic: String,
    /// OpenAI's base URL.
    openai: String,
    /// The flags that set them, for error messages.
    anthropic_flag: &'static str,
    openai_flag: &'static str,
    /// Enrol every proxied conversation (`--proxy-warming on`).
    enroll_all: bool,
    /// Longest wait for an upstream's answer to begin.
    first_byte_timeout: std::time::Duration,
    /// Largest body forwarded, when configured (`--proxy-max-body-mb`);
    /// else each upstream's documented limit.
    max_body_bytes: Option<usize>,
    /// Response header naming the serving backend.
    backend_header: HeaderName,
    /// Request header carrying the preferred backend.
    preferred_backend_header: HeaderName,
    /// Headers naming the conversation, in the order they are tried:
    /// `x-conversation-id`, then the configured session headers.
    conversation_headers: Vec<HeaderName>,
    /// Generations `close` aborts, and their credentials.
    pub generations: Arc<Generations>,
}

impl Proxy {
    /// A proxy for the configured upstreams.
    ///
    /// # Errors
    /// A message when a header name is invalid or the client cannot be built.
    pub fn new(config: &ServerConfig, generations: Arc<Generations>) -> Result<Self, String> {
        let header = |name: &str| {
            HeaderName::try_from(name).map_err(|_| format!("invalid header name {name:?}"))
        };
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            anthropic: config.upstream_for(ProviderKind::Anthropic),
            openai: config.upstream_for(ProviderKind::OpenAi),
            anthropic_flag: config.upstream_flag(ProviderKind::Anthropic),
            openai_flag: config.upstream_flag(ProviderKind::OpenAi),
            enroll_all: config.proxy_warming,
            first_byte_timeout: config.proxy_first_byte_timeout,
            max_body_bytes: config.proxy_max_body_bytes,
            backend_header: header(&config.backend_header)?,
            preferred_backend_header: header(&config.preferred_backend_header)?,
            conversation_headers: std::iter::once(CONVERSATION_HEADER)
                .chain(config.session_headers.iter().map(String::as_str))
                .map(header)
                .collect::<Result<_, _>>()?,
            generations,
        })
    }
}

/// The largest request body an upstream documents taking:
/// - Anthropic "Errors" (request size limits): 32 MB for the Messages API.
/// - OpenAI "Images and vision": up to 50 MB of payload per request.
#[must_use]
pub const fn documented_body_limit(kind: ProviderKind) -> usize {
    match kind {
        ProviderKind::Anthropic | ProviderKind::Webhook => 32 * 1024 * 1024,
        ProviderKind::OpenAi => 50 * 1024 * 1024,
    }
}

impl Proxy {
    /// The largest body forwarded to `kind`, and what sets it (for the 413).
    fn body_limit(&self, kind: ProviderKind) -> (usize, &'static str) {
        match self.max_body_bytes {
            Some(limit) => (limit, "--proxy-max-body-mb"),
            None => (
                documented_body_limit(kind),
                "the upstream's documented limit; --proxy-max-body-mb changes it",
            ),
        }
    }
}

/// Whether this call is a model turn (and so a lifecycle event).
fn is_turn(provider: ProviderKind, method: &axum::http::Method, rest: &str) -> bool {
    let path = rest.trim_end_matches('/');
    method == axum::http::Method::POST
        && match provider {
            ProviderKind::Anthropic => path == "v1/messages",
            ProviderKind::OpenAi => path == "v1/chat/completions" || path == "v1/responses",
            ProviderKind::Webhook => false,
        }
}

/// Whether a turn's body carries the conversation a warm replays: a
/// `messages` list (Anthropic Messages, OpenAI Chat) or an `input` (OpenAI
/// Responses: a list of items, or one string).
fn carries_a_conversation(body: &Value) -> bool {
    body.get("messages").is_some_and(Value::is_array)
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

/// One upstream: its kind, base URL and the flag that sets it.
struct Route<'a> {
    kind: ProviderKind,
    base: &'a str,
    flag: &'static str,
}

impl Proxy {
    /// The upstream `/proxy/{provider}` goes to.
    fn route(&self, provider: &str) -> Result<Route<'_>, ApiError> {
        let (kind, base, flag) = match provider {
            "anthropic" => (
                ProviderKind::Anthropic,
                &self.anthropic,
                self.anthropic_flag,
            ),
            "openai" => (ProviderKind::OpenAi, &self.openai, self.openai_flag),
            other => {
                return Err(ApiError::not_found(format!(
                    "no proxy for {other:?}: use /proxy/anthropic or /proxy/openai"
                )))
            }
        };
        Ok(Route { kind, base, flag })
    }
}

async fn forward_inner(
    state: &AppState,
    provider: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let proxy = &state.proxy;
    let route = proxy.route(provider)?;
    let (parts, body) = request.into_parts();
    let rest = forwarded_path(parts.uri.path(), provider)?;
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
        .filter(carries_a_conversation);
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
    let lifecycle = match turn {
        Some(request_json) => Some(
            begin_turn(
                state,
                &route,
                &parts,
                request_json,
                enrolment,
                carries_our_token,
                &mut headers,
            )
            .await?,
        ),
        None => None,
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
async fn begin_turn(
    state: &AppState,
    route: &Route<'_>,
    parts: &Parts,
    request: Value,
    enrolment: Enrolment,
    carries_our_token: bool,
    headers: &mut HeaderMap,
) -> Result<Lifecycle, ApiError> {
    let proxy = &state.proxy;
    let id = turn_conversation(proxy, parts, &request)?;
    // From the headers that go upstream: warming's token is not among them.
    let credentials = headers::credentials(route.kind, headers, carries_our_token);
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
    Ok(Lifecycle {
        driver: state.driver.clone(),
        id,
        request,
        started_at,
        cancel,
    })
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
