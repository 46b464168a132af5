//! What the stand-in's handlers share: its options, its state (the prefix
//! cache, the requests seen, injected faults, Gemini's explicit caches),
//! and the record of each request the tests read back.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::cache::PrefixCache;

/// How the stand-in behaves.
#[derive(Debug, Clone)]
pub struct StandinOptions {
    /// How long a cached prefix lives after its last use.
    pub ttl: Duration,
    /// How long it lives when a request asks for the longer retention
    /// (Anthropic's `ttl: "1h"`, OpenAI's `prompt_cache_retention: "24h"`):
    /// scaled down like `ttl`, so tests can outlive one and not the other.
    pub long_ttl: Duration,
    /// Sent in `x-backend-id` on every answer.
    pub backend_id: String,
    /// Refuse `max_tokens: 0` like a model that needs at least 1.
    pub reject_zero_max_tokens: bool,
    /// Pause between streamed chunks.
    pub chunk_delay: Duration,
    /// Refuse requests without a key (`x-api-key` or `authorization`) with a
    /// 401 in the provider's error shape, as the real APIs do.
    pub require_key: bool,
    /// The shortest prefix cached, in tokens; `None` for each model's own
    /// as the providers document it ([`crate::rules::MINIMUM_CACHEABLE`]:
    /// 1 024 to 4 096 for real model names, none for test names like
    /// `claude-test`).
    pub min_cacheable_tokens: Option<u64>,
    /// How many words the model's reply has when its output bound does not
    /// cut it short: it then ends its turn (`end_turn`, `stop`,
    /// `completed`), as a real model answering an agent does.
    pub reply_words: u64,
}

impl Default for StandinOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(2),
            long_ttl: Duration::from_secs(60),
            backend_id: "standin-1".into(),
            reject_zero_max_tokens: false,
            chunk_delay: Duration::ZERO,
            require_key: false,
            min_cacheable_tokens: None,
            reply_words: 6,
        }
    }
}

/// A request the stand-in received, for assertions.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SeenRequest {
    /// The HTTP method.
    pub method: String,
    /// The path.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The body's `model`.
    pub model: Option<String>,
    /// The body's `max_tokens` (or `max_completion_tokens`).
    pub max_tokens: Option<u64>,
    /// Whether the body asked to stream.
    pub stream: bool,
    /// The `x-preferred-backend` header.
    pub preferred_backend: Option<String>,
    /// The credential it carried (`x-api-key` or `authorization`).
    pub credential: Option<String>,
    /// What the cache gave it (none for failed requests).
    pub cache_read: Option<u64>,
    /// The `x-conversation-id` header.
    pub conversation: Option<String>,
    /// Names of every header it carried, lowercase.
    pub header_names: Vec<String>,
    /// The `user-agent` header: warming's warms send `warming/VERSION`.
    pub user_agent: Option<String>,
    /// The body as received, byte for byte.
    pub body: String,
    /// When it arrived, epoch ms (the wall clock the service uses too).
    pub received_at_ms: u64,
}

/// An injected failure.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    Status(StatusCode, Option<u64>),
    Hang,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) options: StandinOptions,
    pub(crate) cache: Mutex<PrefixCache>,
    pub(crate) faults: Mutex<VecDeque<Fault>>,
    pub(crate) seen: Mutex<Vec<SeenRequest>>,
    /// Gemini's explicit caches.
    pub(crate) gemini_caches: Mutex<CachedContents>,
}

/// Locks `m`, a poisoned lock too: a handler that panicked left nothing
/// half-written the tests rely on.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which API a request spoke.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Anthropic,
    OpenAi,
    /// OpenAI Responses (`/v1/responses`).
    Responses,
}

/// A header's value as text, if present.
pub(crate) fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// One explicit cache.
#[derive(Debug, Clone)]
pub(crate) struct CachedContent {
    pub(crate) model: String,
    pub(crate) tokens: u64,
    pub(crate) expires: Instant,
    pub(crate) expires_at_ms: u64,
    pub(crate) display_name: Option<String>,
}

/// Explicit caches by name (`cachedContents/ID`).
#[derive(Debug, Default)]
pub(crate) struct CachedContents {
    pub(crate) entries: HashMap<String, CachedContent>,
    pub(crate) next_id: u64,
}

impl SeenRequest {
    /// What a request asked, as the tests read it back.
    pub(crate) fn new(api: Api, headers: &HeaderMap, body: &Value, raw: &str) -> Self {
        Self {
            method: "POST".into(),
            path: match api {
                Api::Anthropic => "/v1/messages".into(),
                Api::OpenAi => "/v1/chat/completions".into(),
                Api::Responses => "/v1/responses".into(),
            },
            query: None,
            model: body.get("model").and_then(Value::as_str).map(str::to_owned),
            max_tokens: max_tokens(body),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            preferred_backend: header(headers, "x-preferred-backend"),
            credential: header(headers, "x-api-key").or_else(|| header(headers, "authorization")),
            cache_read: None,
            conversation: header(headers, "x-conversation-id"),
            header_names: headers.keys().map(|k| k.as_str().to_owned()).collect(),
            user_agent: header(headers, "user-agent"),
            body: raw.to_owned(),
            received_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

impl SeenRequest {
    /// A Gemini API request (its model is in the path; its key in
    /// `x-goog-api-key` or `?key=`).
    pub(crate) fn gemini(
        method: &str,
        path: &str,
        headers: &HeaderMap,
        body: &Value,
        raw: &str,
    ) -> Self {
        let mut seen = Self::new(Api::OpenAi, headers, body, raw);
        seen.method = method.to_owned();
        seen.path = path.to_owned();
        seen.model = path
            .rsplit_once("/models/")
            .and_then(|(_, rest)| rest.split(':').next())
            .map(str::to_owned);
        seen.max_tokens = body
            .pointer("/generationConfig/maxOutputTokens")
            .and_then(Value::as_u64);
        seen.credential =
            header(headers, "x-goog-api-key").or_else(|| header(headers, "authorization"));
        seen
    }
}

/// The output limit a request asks for, by any API's name.
pub(crate) fn max_tokens(body: &Value) -> Option<u64> {
    body.get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .or_else(|| body.get("max_output_tokens"))
        .and_then(Value::as_u64)
}
