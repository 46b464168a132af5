//! The proxy's upstreams: where each provider's calls go, and the largest
//! body each takes.

use std::sync::Arc;

use axum::http::HeaderName;
use warming_service::generations::Generations;

use super::headers::CONVERSATION_HEADER;
use crate::config::{ProviderKind, ServerConfig};
use crate::http::ApiError;

/// What the proxy needs.
#[derive(Debug)]
pub struct Proxy {
    /// Client for forwarding: no overall timeout, streams may be long.
    pub(super) http: reqwest::Client,
    /// Anthropic's base URL.
    pub(super) anthropic: String,
    /// OpenAI's base URL.
    pub(super) openai: String,
    /// The flags that set them, for error messages.
    pub(super) anthropic_flag: &'static str,
    pub(super) openai_flag: &'static str,
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
    pub(super) base: &'a str,
    pub(super) flag: &'static str,
}

impl Proxy {
    /// The upstream `/proxy/{provider}` goes to.
    pub(super) fn route(&self, provider: &str) -> Result<Route<'_>, ApiError> {
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
