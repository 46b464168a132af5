//! Proxy mode: an app points its SDK's base URL here and gets warming with
//! no other change.
//!
//! `/proxy/anthropic/...` and `/proxy/openai/...` forward method, path,
//! query, headers and body to the provider and stream the answer back
//! unchanged, chunk by chunk. Meanwhile the request's start is a turn start,
//! the end of its answer a settled turn with the request as the warm
//! template, and the usage in the answer goes to history.

mod identity;
mod watch;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{BoxStream, StreamExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use warming_core::{ConversationId, Template, Timestamp};

pub use identity::conversation_id;
use watch::UsageWatch;

use crate::config::{ProviderKind, ServerConfig};
use warming_service::generations::Generations;
use warming_service::{Credentials, DriverHandle, ProxiedTurn, Secret};

use crate::http::{ApiError, AppState, MAX_BODY_BYTES};
use crate::provider::root_cause;

/// Request headers that name a conversation instead of the derived id.
const CONVERSATION_HEADER: &str = "x-conversation-id";

/// Request header turning warming on or off for the proxied conversation.
const WARMING_HEADER: &str = "x-warming";

/// Request header choosing its interval, in seconds.
const WARMING_INTERVAL_HEADER: &str = "x-warming-interval";

/// Headers that belong to one hop, never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers warms may reuse (credentials and API selection).
const CREDENTIAL_HEADERS: &[&str] = &[
    "x-api-key",
    "authorization",
    "anthropic-version",
    "anthropic-beta",
    "openai-organization",
    "openai-project",
];

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
    /// Response header naming the serving backend.
    backend_header: HeaderName,
    /// Request header carrying the preferred backend.
    preferred_backend_header: HeaderName,
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
            backend_header: header(&config.backend_header)?,
            preferred_backend_header: header(&config.preferred_backend_header)?,
            generations,
        })
    }
}

/// Names of headers listed in `Connection`, which are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect()
}

fn end_to_end(headers: &HeaderMap, extra_drop: &[&str]) -> HeaderMap {
    let listed = connection_listed(headers);
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || extra_drop.contains(&n) || listed.iter().any(|l| l == n) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Whether this call is a model turn (and so a lifecycle event).
fn is_turn(provider: ProviderKind, method: &axum::http::Method, rest: &str) -> bool {
    let path = rest.trim_end_matches('/');
    method == axum::http::Method::POST
        && match provider {
            ProviderKind::Anthropic => path == "v1/messages",
            ProviderKind::OpenAi => path == "v1/chat/completions",
            ProviderKind::Webhook => false,
        }
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

/// The path below `/proxy/{provider}/` exactly as sent (percent-encoding
/// kept, so `%3F` stays a character of the path and never becomes a query).
/// A dot segment, plain or encoded, or an encoded slash or backslash could
/// climb above the upstream's base path, so any is a 400.
fn forwarded_path<'a>(uri_path: &'a str, provider: &str) -> Result<&'a str, ApiError> {
    let rest = uri_path
        .strip_prefix("/proxy/")
        .and_then(|p| p.strip_prefix(provider))
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or("");
    for segment in rest.split('/') {
        let lower = segment.to_ascii_lowercase();
        let decoded = lower.replace("%2e", ".");
        if decoded == "."
            || decoded == ".."
            || lower.contains("%2f")
            || lower.contains("%5c")
            || segment.contains('\\')
        {
            return Err(ApiError::bad_request(format!(
                "proxy path segment {segment:?} is refused: only paths below the upstream's \
                 base path are forwarded"
            )));
        }
    }
    Ok(rest)
}

async fn forward_inner(
    state: &AppState,
    provider: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let proxy = &state.proxy;
    let (kind, base, flag) = match provider {
        "anthropic" => (
            ProviderKind::Anthropic,
            &proxy.anthropic,
            proxy.anthropic_flag,
        ),
        "openai" => (ProviderKind::OpenAi, &proxy.openai, proxy.openai_flag),
        other => {
            return Err(ApiError::not_found(format!(
                "no proxy for {other:?}: use /proxy/anthropic or /proxy/openai"
            )))
        }
    };
    let (parts, body) = request.into_parts();
    let rest = forwarded_path(parts.uri.path(), provider)?;
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::payload_too_large())?;
    let mut url = format!("{base}/{rest}");
    if let Some(query) = parts.uri.query() {
        url.push('?');
        url.push_str(query);
    }
    // Identity encoding, so usage can be read from the answer as it passes.
    let mut headers = end_to_end(
        &parts.headers,
        &[
            "host",
            "content-length",
            "accept-encoding",
            CONVERSATION_HEADER,
            WARMING_HEADER,
            WARMING_INTERVAL_HEADER,
            crate::http::auth::PROXY_TOKEN_HEADER,
        ],
    );
    // Warming's own token never reaches a provider, even sent by mistake
    // as the provider key.
    let carries_our_token = state.token.is_some()
        && crate::http::auth::bearer(&headers)
            .is_some_and(|given| crate::http::auth::token_matches(state, Some(given)));
    if carries_our_token {
        headers.remove(axum::http::header::AUTHORIZATION);
    }
    let enrolment = Enrolment::from_headers(&parts.headers)?;

    let turn = if is_turn(kind, &parts.method, rest) {
        serde_json::from_slice::<Value>(&body)
            .ok()
            .filter(|v| v.get("messages").is_some_and(Value::is_array))
    } else {
        None
    };
    let lifecycle = match turn {
        Some(request_json) => {
            let id = match parts.headers.get(CONVERSATION_HEADER) {
                Some(raw) => ConversationId::new(raw.to_str().unwrap_or(""))
                    .map_err(|e| ApiError::bad_request(format!("{CONVERSATION_HEADER}: {e}")))?,
                None => conversation_id(&request_json),
            };
            let credentials = Credentials {
                kind,
                headers: CREDENTIAL_HEADERS
                    .iter()
                    .filter(|name| !(carries_our_token && **name == "authorization"))
                    .filter_map(|name| {
                        let value = parts.headers.get(*name)?.to_str().ok()?;
                        Some(((*name).to_owned(), Secret::new(value)))
                    })
                    .collect(),
            };
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
            Some(Lifecycle {
                driver: state.driver.clone(),
                id,
                request: request_json,
                started_at,
                cancel,
            })
        }
        None => None,
    };

    let send = proxy
        .http
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(body)
        .send();
    let Ok(sent) = tokio::time::timeout(proxy.first_byte_timeout, send).await else {
        if let Some(lifecycle) = lifecycle {
            lifecycle.settle(false, None, None);
        }
        return Err(ApiError::upstream_timeout(format!(
            "the upstream {base} did not answer within {} ms (--proxy-first-byte-timeout-ms)",
            proxy.first_byte_timeout.as_millis()
        )));
    };
    let upstream = match sent {
        Ok(upstream) => upstream,
        Err(e) => {
            if let Some(lifecycle) = lifecycle {
                lifecycle.settle(false, None, None);
            }
            tracing::warn!(error = %e, "proxy: upstream unreachable");
            return Err(ApiError::upstream(format!(
                "cannot reach the upstream {base} (set by {flag}): {}",
                root_cause(&e)
            )));
        }
    };
    let status = upstream.status();
    let response_headers = end_to_end(upstream.headers(), &[]);
    let backend = upstream
        .headers()
        .get(&proxy.backend_header)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = upstream
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let relay = Relay {
        upstream: upstream.bytes_stream().boxed(),
        cancel: lifecycle.as_ref().map(|l| l.cancel.clone()),
        watch: UsageWatch::new(&content_type),
        finish: lifecycle.map(|l| (l, status.is_success(), backend)),
        done: false,
    };
    let mut response = Response::new(Body::from_stream(relay.into_stream()));
    *response.status_mut() =
        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    *response.headers_mut() = response_headers;
    Ok(response)
}

/// What a proxied request asks of warming through `x-warming` and
/// `x-warming-interval`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Enrolment {
    /// `on`, `off`, or no header.
    enabled: Option<bool>,
    /// The interval asked for, ms.
    interval_ms: Option<f64>,
}

impl Enrolment {
    /// Reads the headers; a value that is neither `on` nor `off`, or an
    /// interval that is not a number of seconds, is a 400 naming it.
    fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let text = |name: &str| -> Result<Option<String>, ApiError> {
            headers
                .get(name)
                .map(|v| {
                    v.to_str()
                        .map(|t| t.trim().to_ascii_lowercase())
                        .map_err(|_| ApiError::bad_request(format!("{name} is not text")))
                })
                .transpose()
        };
        let enabled = match text(WARMING_HEADER)?.as_deref() {
            None => None,
            Some("on" | "true" | "1") => Some(true),
            Some("off" | "false" | "0") => Some(false),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "{WARMING_HEADER}: {other:?} is neither on nor off"
                )))
            }
        };
        let interval_ms = match text(WARMING_INTERVAL_HEADER)? {
            None => None,
            Some(raw) => match raw.parse::<f64>() {
                Ok(seconds) if seconds.is_finite() && seconds > 0.0 => Some(seconds * 1000.0),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "{WARMING_INTERVAL_HEADER}: {raw:?} is not a number of seconds"
                    )))
                }
            },
        };
        Ok(Self {
            enabled,
            interval_ms,
        })
    }

    /// Applies it before the turn is forwarded, so the settle that follows
    /// arms the timer: `x-warming: on|off` is the app deciding for this
    /// conversation (as a person would, under the server's `--policy`);
    /// without it, `--proxy-warming on` enrols a conversation nobody decided
    /// about, under `--proxy-policy`. A write only when something changes.
    async fn apply(
        self,
        driver: &DriverHandle,
        id: &ConversationId,
        enroll_all: bool,
    ) -> Result<(), ApiError> {
        // Most proxied calls ask nothing of warming: no read for them.
        if self.enabled.is_none() && !enroll_all {
            return Ok(());
        }
        let current = driver.get(id.clone()).await?;
        let interval_changes = self
            .interval_ms
            .is_some_and(|ms| (ms.round() as u64) != current.interval_ms);
        match self.enabled {
            Some(enabled) if enabled != current.enabled || interval_changes => {
                let change = warming_core::SettingsChange {
                    enabled: Some(enabled),
                    interval_ms: self.interval_ms,
                    policy: None,
                };
                driver.update(id.clone(), change).await?;
            }
            Some(_) => {}
            None if enroll_all && !current.enabled => {
                driver.enroll(id.clone(), self.interval_ms).await?;
            }
            None => {}
        }
        Ok(())
    }
}

/// One proxied turn, to settle when its answer ends.
struct Lifecycle {
    driver: DriverHandle,
    id: ConversationId,
    request: Value,
    started_at: Timestamp,
    cancel: CancellationToken,
}

impl Lifecycle {
    /// Reports the end of the answer. A failed call keeps the old template.
    fn settle(self, success: bool, usage: Option<warming_core::Usage>, backend: Option<String>) {
        let template = success.then(|| Arc::new(Template::new(self.request, None, None)));
        let turn = ProxiedTurn {
            id: self.id,
            template,
            started_at: self.started_at,
            usage: usage.filter(|_| success),
            backend,
        };
        let driver = self.driver;
        tokio::spawn(async move { driver.proxied_turn(turn).await });
    }
}

/// Streams the upstream answer through, watching it for usage, and settles
/// the turn when it ends, is aborted by `close`, or the client goes away.
struct Relay {
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    cancel: Option<CancellationToken>,
    watch: UsageWatch,
    finish: Option<(Lifecycle, bool, Option<String>)>,
    done: bool,
}

impl Relay {
    fn finish(&mut self) {
        if let Some((lifecycle, success, backend)) = self.finish.take() {
            let usage = self.watch.finish();
            lifecycle.settle(success, usage, backend);
        }
    }

    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.done {
            return None;
        }
        let cancel = self.cancel.clone().unwrap_or_default();
        let chunk = tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            chunk = self.upstream.next() => chunk,
        };
        match chunk {
            Some(Ok(bytes)) => {
                self.watch.feed(&bytes);
                Some(Ok(bytes))
            }
            Some(Err(e)) => {
                self.done = true;
                self.finish();
                Some(Err(std::io::Error::other(e)))
            }
            None => {
                // The end of the answer, or `close` aborted it: either way the
                // client sees the stream end here.
                self.done = true;
                self.finish();
                None
            }
        }
    }

    fn into_stream(self) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
        futures_util::stream::unfold(self, |mut relay| async move {
            relay.next().await.map(|item| (item, relay))
        })
    }
}

impl Drop for Relay {
    /// The client went away mid-answer: the turn is over all the same.
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_below_the_upstream_base_and_keep_their_encoding() {
        let ok = |p: &str| forwarded_path(p, "anthropic").unwrap().to_owned();
        assert_eq!(ok("/proxy/anthropic/v1/messages"), "v1/messages");
        assert_eq!(
            ok("/proxy/anthropic/v1/messages%3Finjected=1"),
            "v1/messages%3Finjected=1"
        );
        assert_eq!(ok("/proxy/anthropic/v1/files/a..b"), "v1/files/a..b");
        for escape in [
            "/proxy/anthropic/v1/../../../admin",
            "/proxy/anthropic/%2e%2e/%2e%2e/admin",
            "/proxy/anthropic/v1/%2E./admin",
            "/proxy/anthropic/..%2f..%2fadmin",
            "/proxy/anthropic/v1/.",
            "/proxy/anthropic/..%5cadmin",
        ] {
            assert!(forwarded_path(escape, "anthropic").is_err(), "{escape}");
        }
    }
}
