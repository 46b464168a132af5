//! The provider client, the service's outbound adapter: turns a warm
//! request into a provider call (Anthropic Messages, OpenAI Chat
//! Completions and Responses, Gemini's `generateContent` or the extension
//! of its explicit cache, or a webhook) and its answer into usage or a
//! readable failure. It implements `warming_service::Provider`, and
//! `warming_service::Engine` for llama.cpp's server ([`LlamaCpp`]).

mod llama_cpp;
mod plan;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use warming_core::{WarmFailure, WarmKind, WarmRequest};

pub use llama_cpp::{LlamaCpp, LlamaCppOptions};
pub use plan::is_reasoning_model;

use warming_service::provider_usage::parse_usage;
use warming_service::{
    root_cause, BoxFuture, Credentials, Provider, ProviderKind, Secret, Upstreams, WarmAnswer,
};

/// What the provider client is configured with: its part of the binary's
/// configuration.
#[derive(Debug, Clone)]
pub struct ProviderOptions {
    /// Which API warms speak, and where each API is.
    pub upstreams: Upstreams,
    /// Anthropic key for warms of conversations not seen through the proxy.
    pub anthropic_key: Option<Secret>,
    /// OpenAI key, likewise.
    pub openai_key: Option<Secret>,
    /// Gemini API key, likewise.
    pub gemini_key: Option<Secret>,
    /// Response header naming the backend that served a warm.
    pub backend_header: String,
    /// Request header carrying the preferred backend on a warm.
    pub preferred_backend_header: String,
    /// Longest a warm may take before it counts as failed.
    pub warm_timeout: Duration,
    /// The output limit of warms sent to Anthropic's API: 0 (1 for a model
    /// that refuses 0) or 1, for engines that generate a token whatever
    /// they are asked.
    pub anthropic_warm_max_tokens: u8,
    /// The output limit of warms sent to OpenAI's API: 1 (the API refuses
    /// 0) or 0, for engines that take it.
    pub openai_warm_max_tokens: u8,
}

/// Anthropic API version sent with every warm.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Sends warms to the configured provider.
#[derive(Debug)]
pub struct ProviderClient {
    /// HTTP client with connection pooling.
    http: reqwest::Client,
    /// Which API shape to speak by default, and where each API is.
    upstreams: Upstreams,
    /// Configured keys, if any.
    anthropic_key: Option<Secret>,
    openai_key: Option<Secret>,
    gemini_key: Option<Secret>,
    /// Header naming the serving backend in answers.
    backend_header: HeaderName,
    /// Header carrying the preferred backend on warms.
    preferred_backend_header: HeaderName,
    /// Models that refused `max_tokens: 0`; they get 1 from then on.
    models_needing_one_token: Mutex<HashSet<String>>,
    /// The output limit warms ask each API for (see [`ProviderOptions`]).
    anthropic_warm_tokens: u8,
    openai_warm_tokens: u8,
}

impl ProviderClient {
    /// A client for the configured provider.
    ///
    /// # Errors
    /// A message when a header name is invalid or the HTTP client cannot be
    /// built.
    pub fn new(options: ProviderOptions) -> Result<Self, String> {
        let header = |name: &str| {
            HeaderName::try_from(name).map_err(|_| format!("invalid header name {name:?}"))
        };
        let http = reqwest::Client::builder()
            // Providers (and the stand-in) see who sends these requests.
            .user_agent(concat!("warming/", env!("CARGO_PKG_VERSION")))
            .timeout(options.warm_timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            backend_header: header(&options.backend_header)?,
            preferred_backend_header: header(&options.preferred_backend_header)?,
            upstreams: options.upstreams,
            anthropic_key: options.anthropic_key,
            openai_key: options.openai_key,
            gemini_key: options.gemini_key,
            models_needing_one_token: Mutex::new(HashSet::new()),
            anthropic_warm_tokens: options.anthropic_warm_max_tokens,
            openai_warm_tokens: options.openai_warm_max_tokens,
        })
    }

    /// Sends one warm and waits for its answer.
    ///
    /// # Errors
    /// A [`WarmFailure`] with a readable message for any upstream error,
    /// timeout or refused connection, and the provider's `retry-after`.
    pub async fn send_warm(
        &self,
        warm: &WarmRequest,
        credentials: Option<&Credentials>,
    ) -> Result<WarmAnswer, WarmFailure> {
        let model = warm.template.model().unwrap_or_default().to_owned();
        let one_token = self.anthropic_warm_tokens > 0 || self.needs_one_token(&model);
        let kind = credentials.map_or(self.upstreams.default_kind, |c| c.kind);
        let context = FailureContext {
            kind,
            url: self.base(kind),
            flag: self.flag(kind),
            own_key: credentials.is_some_and(|c| !c.headers.is_empty()),
        };
        match self.send(warm, credentials, one_token).await {
            Err(SendError::MaxTokensZeroRejected) if !one_token => {
                tracing::info!(%model, "model refused max_tokens 0; warming it with 1 from now on");
                self.models_needing_one_token
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(model);
                self.send(warm, credentials, true)
                    .await
                    .map_err(|e| e.into_failure(&context))
            }
            other => other.map_err(|e| e.into_failure(&context)),
        }
    }

    /// The flag that sets `kind`'s base URL.
    fn flag(&self, kind: ProviderKind) -> &'static str {
        self.upstreams.of(kind).flag
    }

    fn needs_one_token(&self, model: &str) -> bool {
        self.models_needing_one_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(model)
    }

    async fn send(
        &self,
        warm: &WarmRequest,
        credentials: Option<&Credentials>,
        one_token: bool,
    ) -> Result<WarmAnswer, SendError> {
        let kind = credentials.map_or(self.upstreams.default_kind, |c| c.kind);
        let (method, url, body, warm_kind) = self.build(kind, warm, one_token)?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.auth_headers(kind, &mut headers, credentials);
        if let Some(backend) = &warm.preferred_backend {
            if let Ok(value) = HeaderValue::from_str(backend) {
                headers.insert(self.preferred_backend_header.clone(), value);
            }
        }
        let response = self
            .http
            .request(method, &url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(SendError::Transport)?;
        let status = response.status();
        let backend = response
            .headers()
            .get(&self.backend_header)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after_ms = retry_after_ms(response.headers());
        let bytes = read_capped(response, MAX_WARM_ANSWER_BYTES).await?;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = error_detail(&answer, &bytes);
            if status == StatusCode::BAD_REQUEST && !one_token && detail.contains("max_tokens") {
                return Err(SendError::MaxTokensZeroRejected);
            }
            return Err(SendError::Status {
                status,
                detail,
                retry_after_ms,
            });
        }
        let usage = if warm_kind == Some(WarmKind::Extended) {
            // The extended cache's own size ("cachedContents": its
            // `usageMetadata.totalTokenCount`): what the next turn reads.
            answer
                .pointer("/usageMetadata/totalTokenCount")
                .and_then(Value::as_u64)
                .map(|tokens| warming_core::Usage::openai(tokens, tokens))
        } else {
            answer
                .get("usage")
                .or_else(|| answer.get("usageMetadata"))
                .and_then(parse_usage)
        }
        .ok_or(SendError::NoUsage)?;
        Ok(WarmAnswer {
            usage,
            backend,
            kind: warm_kind,
        })
    }

    /// The method, URL and body of a warm, and which request it is (see
    /// `plan`).
    fn build(
        &self,
        kind: ProviderKind,
        warm: &WarmRequest,
        one_token: bool,
    ) -> Result<(reqwest::Method, String, String, Option<WarmKind>), SendError> {
        // A detached template (no body) is the driver's to fill in first.
        let Some(mut request) = warm.template.request() else {
            return Err(SendError::BadTemplate);
        };
        let Some(object) = request.as_object_mut() else {
            return Err(SendError::BadTemplate);
        };
        // The model the settled turn named wins over the request's (the
        // settle body's `model`, as the agent host knows it).
        if let Some(model) = warm.template.model() {
            object.insert("model".into(), Value::from(model));
        }
        let (url, warm_kind) = match kind {
            ProviderKind::Anthropic => (
                format!("{}/v1/messages", self.base(kind)),
                plan::anthropic(object, one_token),
            ),
            ProviderKind::OpenAi if plan::is_responses(object) => (
                format!("{}/v1/responses", self.base(kind)),
                plan::openai_responses(object),
            ),
            ProviderKind::OpenAi => (
                format!("{}/v1/chat/completions", self.base(kind)),
                plan::openai(object, self.openai_warm_tokens == 0),
            ),
            // Google names every model and cache by a resource path; Vertex
            // AI's are served by their location's host (`google_base`).
            ProviderKind::Gemini | ProviderKind::Vertex => {
                if let Some(cache) = plan::gemini_explicit_cache(object) {
                    let base = self.google_base(kind, &cache);
                    let (url, body) = plan::gemini_extend(&base, &cache, warm.keep_for);
                    return Ok((reqwest::Method::PATCH, url, body, Some(WarmKind::Extended)));
                }
                let model = object
                    .remove("model")
                    .and_then(|m| m.as_str().map(str::to_owned))
                    .ok_or(SendError::BadTemplate)?;
                let resource = if kind == ProviderKind::Vertex {
                    Some(model).filter(|m| m.starts_with("projects/") && !m.contains(".."))
                } else {
                    let bare = model.strip_prefix("models/").unwrap_or(&model);
                    Some(format!("models/{bare}"))
                }
                .ok_or(SendError::BadTemplate)?;
                (
                    format!(
                        "{}/{resource}:generateContent",
                        self.google_base(kind, &resource)
                    ),
                    plan::gemini(object),
                )
            }
            ProviderKind::Webhook => {
                let body = json!({
                    "conversationId": warm.conversation.as_str(),
                    "model": warm.template.model(),
                    "request": request,
                    "preferredBackend": warm.preferred_backend.as_deref(),
                });
                return Ok((
                    reqwest::Method::POST,
                    self.upstreams.default_url.clone(),
                    body.to_string(),
                    None,
                ));
            }
        };
        Ok((
            reqwest::Method::POST,
            url,
            request.to_string(),
            Some(warm_kind),
        ))
    }

    /// Base URL for `kind`: the configured one of its API.
    fn base(&self, kind: ProviderKind) -> &str {
        match kind {
            ProviderKind::Anthropic => &self.upstreams.anthropic.url,
            ProviderKind::OpenAi => &self.upstreams.openai.url,
            ProviderKind::Gemini => &self.upstreams.gemini.url,
            ProviderKind::Vertex => &self.upstreams.vertex.url,
            ProviderKind::Webhook => &self.upstreams.default_url,
        }
    }

    /// Where a call about Google resource `resource` goes, with the API's
    /// version: Gemini's `v1beta`, or Vertex AI's `v1` at the resource's
    /// location ([`warming_service::Upstream::vertex_base`]).
    fn google_base(&self, kind: ProviderKind, resource: &str) -> String {
        if kind == ProviderKind::Vertex {
            format!("{}/v1", self.upstreams.vertex.vertex_base(resource))
        } else {
            format!("{}/v1beta", self.upstreams.gemini.url)
        }
    }

    fn auth_headers(
        &self,
        kind: ProviderKind,
        headers: &mut HeaderMap,
        credentials: Option<&Credentials>,
    ) {
        let key = match kind {
            ProviderKind::Anthropic => self.anthropic_key.as_ref(),
            ProviderKind::OpenAi => self.openai_key.as_ref(),
            ProviderKind::Gemini => self.gemini_key.as_ref(),
            // Vertex AI takes short-lived OAuth tokens: only the proxied
            // client's own.
            ProviderKind::Vertex | ProviderKind::Webhook => None,
        };
        if let Some(credentials) = credentials.filter(|c| !c.headers.is_empty()) {
            for (name, value) in &credentials.headers {
                let name = HeaderName::from_bytes(name.as_bytes());
                let value = HeaderValue::from_str(value.expose());
                if let (Ok(name), Ok(mut value)) = (name, value) {
                    value.set_sensitive(true);
                    headers.insert(name, value);
                }
            }
        } else if let Some(key) = key {
            let header = match kind {
                ProviderKind::Anthropic => HeaderValue::from_str(key.expose())
                    .ok()
                    .map(|v| (HeaderName::from_static("x-api-key"), v)),
                ProviderKind::Gemini => HeaderValue::from_str(key.expose())
                    .ok()
                    .map(|v| (HeaderName::from_static("x-goog-api-key"), v)),
                ProviderKind::OpenAi | ProviderKind::Vertex | ProviderKind::Webhook => {
                    HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                        .ok()
                        .map(|v| (reqwest::header::AUTHORIZATION, v))
                }
            };
            if let Some((name, mut value)) = header {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
        }
        if kind == ProviderKind::Anthropic {
            headers
                .entry("anthropic-version")
                .or_insert(HeaderValue::from_static(ANTHROPIC_VERSION));
        }
    }
}

/// Most bytes of a warm's answer read: its usage is in a small JSON body,
/// so anything larger is not a provider's answer to a warm and is dropped
/// instead of held in memory.
const MAX_WARM_ANSWER_BYTES: usize = 1024 * 1024;

/// Reads an answer's body, failing once it passes `cap` (the connection is
/// dropped with the response).
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, SendError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(SendError::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(SendError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The service's provider port, over HTTP.
impl Provider for ProviderClient {
    fn warm<'a>(
        &'a self,
        warm: &'a WarmRequest,
        credentials: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<WarmAnswer, WarmFailure>> {
        Box::pin(self.send_warm(warm, credentials))
    }

    fn release<'a>(
        &'a self,
        template: &'a warming_core::Template,
        credentials: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<(), WarmFailure>> {
        Box::pin(self.delete_explicit_cache(template, credentials))
    }
}

impl ProviderClient {
    /// Deletes the explicit cache `template` reads (Gemini's or Vertex
    /// AI's `DELETE .../{cachedContent}`); one already gone is released
    /// too. Nothing for a template that reads none.
    ///
    /// # Errors
    /// A [`WarmFailure`] naming the provider's refusal or the transport's.
    pub async fn delete_explicit_cache(
        &self,
        template: &warming_core::Template,
        credentials: Option<&Credentials>,
    ) -> Result<(), WarmFailure> {
        let Some(request) = template.request() else {
            return Ok(());
        };
        let Some(name) = request.as_object().and_then(plan::gemini_explicit_cache) else {
            return Ok(());
        };
        let kind = credentials.map_or(self.upstreams.default_kind, |c| c.kind);
        if !matches!(kind, ProviderKind::Gemini | ProviderKind::Vertex) {
            return Ok(());
        }
        let url = format!("{}/{name}", self.google_base(kind, &name));
        let mut headers = HeaderMap::new();
        self.auth_headers(kind, &mut headers, credentials);
        let failure = |message: String| WarmFailure {
            message,
            retry_after: None,
            refused: false,
        };
        let response = self
            .http
            .delete(&url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| failure(format!("cannot delete {name}: {}", root_cause(&e))))?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        let bytes = read_capped(response, MAX_WARM_ANSWER_BYTES)
            .await
            .unwrap_or_default();
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(failure(format!(
            "upstream {} refused to delete {name}: {}",
            status.as_u16(),
            error_detail(&answer, &bytes)
        )))
    }
}

/// What went wrong sending one warm.
#[derive(Debug)]
enum SendError {
    /// The model refused `max_tokens: 0`.
    MaxTokensZeroRejected,
    /// The upstream answered with an error status.
    Status {
        status: StatusCode,
        detail: String,
        retry_after_ms: Option<u64>,
    },
    /// Connecting, sending or reading failed.
    Transport(reqwest::Error),
    /// A success without usage.
    NoUsage,
    /// The answer passed the cap, in bytes.
    TooLarge(usize),
    /// The stored request is not a JSON object.
    BadTemplate,
}

/// What a failure message needs to say what to do.
struct FailureContext<'a> {
    /// The API the warm went to.
    kind: ProviderKind,
    /// Its base URL.
    url: &'a str,
    /// The flag that sets that URL.
    flag: &'static str,
    /// Whether the warm carried a proxied client's own key.
    own_key: bool,
}

impl SendError {
    fn into_failure(self, context: &FailureContext<'_>) -> WarmFailure {
        let (message, retry_after_ms) = match self {
            Self::MaxTokensZeroRejected => (
                "upstream 400: the model refused max_tokens 0".to_owned(),
                None,
            ),
            Self::Status { status, detail, .. }
                if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) =>
            {
                let fix = match (context.own_key, context.kind) {
                    (true, _) => "the key the client sent through the proxy was refused",
                    (false, ProviderKind::OpenAi) => "set OPENAI_API_KEY (or ANTHROPIC_API_KEY)",
                    (false, ProviderKind::Gemini) => "set GEMINI_API_KEY",
                    (false, ProviderKind::Vertex) => {
                        "Vertex AI warms use the token of the client seen through /proxy/vertex; \
                         send its next request through the proxy"
                    }
                    (false, _) => "set ANTHROPIC_API_KEY (or OPENAI_API_KEY)",
                };
                (
                    format!(
                        "upstream {}: {fix}; the provider said: {detail}",
                        status.as_u16()
                    ),
                    None,
                )
            }
            Self::Status { status, detail, .. } if refused(status) => {
                return WarmFailure {
                    message: format!(
                        "upstream {} refused the warm: {detail}; warming stopped for this \
                         conversation (a new turn, a manual warm or re-enabling tries again)",
                        status.as_u16()
                    ),
                    retry_after: None,
                    refused: true,
                };
            }
            Self::Status {
                status,
                detail,
                retry_after_ms,
            } => (
                format!(
                    "upstream {}: {detail}; warming retries with backoff",
                    status.as_u16()
                ),
                retry_after_ms,
            ),
            Self::Transport(e) if e.is_timeout() => (
                format!("upstream {} timed out (--warm-timeout-ms)", context.url),
                None,
            ),
            Self::Transport(e) if e.is_connect() => (
                format!(
                    "cannot connect to upstream {} (set by {}): {}",
                    context.url,
                    context.flag,
                    root_cause(&e)
                ),
                None,
            ),
            Self::Transport(e) => (
                format!(
                    "upstream request to {} failed: {}",
                    context.url,
                    root_cause(&e)
                ),
                None,
            ),
            Self::NoUsage => ("upstream answered without usage".to_owned(), None),
            Self::TooLarge(cap) => (
                format!(
                    "upstream {} answered with more than {} KiB: not an answer to a warm, dropped",
                    context.url,
                    cap / 1024
                ),
                None,
            ),
            Self::BadTemplate => ("the stored request is not a JSON object".to_owned(), None),
        };
        WarmFailure {
            message,
            retry_after: retry_after_ms.map(Duration::from_millis),
            refused: false,
        }
    }
}

/// Whether a status means the provider refused the request itself, so the
/// same warm would be refused again: a malformed or unacceptable request,
/// not a rate limit, a conflict, a timeout or an authentication problem
/// (which a new key can fix).
fn refused(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::NOT_FOUND
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNPROCESSABLE_ENTITY
    )
}

/// The provider's error message, or the start of the body.
fn error_detail(answer: &Value, bytes: &[u8]) -> String {
    let error = answer.get("error");
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .or_else(|| error.and_then(Value::as_str));
    let kind = error.and_then(|e| e.get("type")).and_then(Value::as_str);
    // OpenAI names the field in `param`; Anthropic starts the message with it.
    let param = error.and_then(|e| e.get("param")).and_then(Value::as_str);
    let message = match (param, message) {
        (Some(param), Some(message)) if !message.contains(param) => {
            Some(format!("{param}: {message}"))
        }
        (_, message) => message.map(str::to_owned),
    };
    match (kind, message) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        (None, Some(message)) => message,
        _ => {
            let text = String::from_utf8_lossy(bytes);
            let text = text.trim();
            if text.is_empty() {
                "no details".to_owned()
            } else {
                text.chars().take(200).collect()
            }
        }
    }
}

/// `retry-after` in seconds (the form providers send), as milliseconds.
fn retry_after_ms(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then_some((seconds * 1000.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details_prefer_the_provider_message() {
        let body = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        assert_eq!(error_detail(&body, b""), "overloaded_error: Overloaded");
        assert_eq!(error_detail(&Value::Null, b"  bad gateway "), "bad gateway");
        assert_eq!(error_detail(&Value::Null, b""), "no details");
    }

    #[test]
    fn retry_after_takes_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after_ms(&headers), Some(7_000));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("soon"),
        );
        assert_eq!(retry_after_ms(&headers), None);
    }
}
