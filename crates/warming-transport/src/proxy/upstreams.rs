//! The proxy's upstreams: where each provider's calls go, and the largest
//! body each takes.

use std::sync::Arc;

use axum::http::HeaderName;
use warming_service::generations::Generations;

use warming_service::{ProviderKind, Upstreams};

use super::headers::CONVERSATION_HEADER;
use crate::http::ApiError;

/// What the proxy is configured with: its part of the binary's
/// configuration.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Where each provider's calls go.
    pub upstreams: Upstreams,
    /// Enrol every proxied conversation (`--proxy-warming on`; default off:
    /// warming is opt-in).
    pub enroll_all: bool,
    /// Longest the proxy waits for an upstream's answer to begin (its
    /// status and headers); a stream may then run longer.
    pub first_byte_timeout: std::time::Duration,
    /// Largest request body forwarded, bytes; `None` for each upstream's
    /// documented limit ([`documented_body_limit`]).
    pub max_body_bytes: Option<usize>,
    /// Response header naming the backend that served a request.
    pub backend_header: String,
    /// Request header carrying the preferred backend.
    pub preferred_backend_header: String,
    /// Request headers naming a conversation when `x-conversation-id` is
    /// absent (gateways' and agents' session headers); the first present
    /// wins.
    pub session_headers: Vec<String>,
}

/// What the proxy needs.
#[derive(Debug)]
pub struct Proxy {
    /// Client for forwarding: no overall timeout, streams may be long.
    pub(super) http: reqwest::Client,
    /// Anthropic's and OpenAI's base URLs, and the flags that set them
    /// (for error messages).
    pub(super) upstreams: Upstreams,
    /// Enrol every proxied conversation (`--proxy-warming on`).
    pub(super) enroll_all: bool,
    /// Longest wait for an upstream's answer to begin.
    pub(super) first_byte_timeout: std::time::Duration,
    /// Largest body forwarded, when configured (`--proxy-max-body-mb`);
    /// else each upstream's documented limit.
    pub(super) max_body_bytes: Option<usize>,
    /// Response header naming the serving backend.
    pub(super) backend_header: HeaderName,
    /// Request header carrying the preferred backend.
    pub(super) preferred_backend_header: HeaderName,
    /// Headers naming the conversation, in the order they are tried:
    /// `x-conversation-id`, then the configured session headers.
    pub(super) conversation_headers: Vec<HeaderName>,
    /// Generations `close` aborts, and their credentials.
    pub generations: Arc<Generations>,
}

impl Proxy {
    /// A proxy for the configured upstreams.
    ///
    /// # Errors
    /// A message when a header name is invalid or the client cannot be built.
    pub fn new(options: &ProxyOptions, generations: Arc<Generations>) -> Result<Self, String> {
        let header = |name: &str| {
            HeaderName::try_from(name).map_err(|_| format!("invalid header name {name:?}"))
        };
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            upstreams: options.upstreams.clone(),
            enroll_all: options.enroll_all,
            first_byte_timeout: options.first_byte_timeout,
            max_body_bytes: options.max_body_bytes,
            backend_header: header(&options.backend_header)?,
            preferred_backend_header: header(&options.preferred_backend_header)?,
            conversation_headers: std::iter::once(CONVERSATION_HEADER)
                .chain(options.session_headers.iter().map(String::as_str))
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
        ProviderKind::Gemini | ProviderKind::Vertex => 20 * 1024 * 1024,
    }
}

impl Proxy {
    /// The largest body forwarded to `kind`, and what sets it (for the 413).
    pub(super) fn body_limit(&self, kind: ProviderKind) -> (usize, &'static str) {
        match self.max_body_bytes {
            Some(limit) => (limit, "--proxy-max-body-mb"),
            None => (
                documented_body_limit(kind),
                "the upstream's documented limit; --proxy-max-body-mb changes it",
            ),
        }
    }
}

/// One upstream: its kind, base URL and the flag that sets it.
pub(super) struct Route<'a> {
    pub(super) kind: ProviderKind,
    pub(super) base: std::borrow::Cow<'a, str>,
    pub(super) flag: &'static str,
}

impl Proxy {
    /// The upstream `/proxy/{provider}` goes to, for a call to `rest`
    /// (a regional Vertex AI location's own host, at the default).
    pub(super) fn route(&self, provider: &str, rest: &str) -> Result<Route<'_>, ApiError> {
        let (kind, upstream) = match provider {
            "anthropic" => (ProviderKind::Anthropic, &self.upstreams.anthropic),
            "openai" => (ProviderKind::OpenAi, &self.upstreams.openai),
            "gemini" => (ProviderKind::Gemini, &self.upstreams.gemini),
            "vertex" => (ProviderKind::Vertex, &self.upstreams.vertex),
            other => {
                return Err(ApiError::not_found(format!(
                    "no proxy for {other:?}: use /proxy/anthropic, /proxy/openai, /proxy/gemini or /proxy/vertex"
                )))
            }
        };
        Ok(Route {
            kind,
            base: if kind == ProviderKind::Vertex {
                std::borrow::Cow::Owned(upstream.vertex_base(rest))
            } else {
                std::borrow::Cow::Borrowed(&upstream.url)
            },
            flag: upstream.flag,
        })
    }
}
