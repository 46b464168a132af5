//! The stand-in's Gemini API, following Google's pages (by title):
//! - "Context caching": implicit caching is automatic, every request's
//!   prefix cached and read back by later requests that share it (so here
//!   every content boundary is an entry, living the stand-in's TTL after its
//!   last use); prompts below the model's minimum are never cached (the
//!   page's table, revision of 2026-07: Gemini 2.5 Flash and Pro 2 048
//!   tokens, Gemini 3.x 4 096). Explicit caches are `cachedContents`,
//!   created with a `ttl` (default 1 hour) or an `expireTime`, whose
//!   lifetime only a `PATCH` of `ttl` or `expireTime` changes (reading one
//!   does not extend it); a request naming one (`cachedContent`) reads all
//!   of it, and fails once it expired.
//! - The REST reference of `models.generateContent`,
//!   `models.streamGenerateContent` (`?alt=sse`: server-sent events of
//!   response chunks; without it, one JSON array of them) and
//!   `cachedContents` (create, get, list, patch, delete). `usageMetadata`:
//!   `promptTokenCount` counts every prompt token, the cached ones among
//!   them (`cachedContentTokenCount`); `candidatesTokenCount`,
//!   `totalTokenCount`. Errors: `{"error": {"code", "message", "status"}}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::cache::Prompt;
use crate::rules::minimum_cacheable_tokens;
use crate::shared::{lock, CachedContent, SeenRequest, Shared};

/// Explicit caches' default lifetime ("Context caching": 1 hour).
const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(3_600);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Epoch milliseconds as RFC 3339, as the API writes times.
fn rfc3339(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Google's error shape.
fn error(status: StatusCode, message: &str) -> Response {
    let name = match status {
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "PERMISSION_DENIED",
        StatusCode::TOO_MANY_REQUESTS => "RESOURCE_EXHAUSTED",
        s if s.is_server_error() => "INTERNAL",
        _ => "INVALID_ARGUMENT",
    };
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": name}});
    (status, axum::Json(body)).into_response()
}

/// Rough tokens of a JSON value: 4 bytes a token, as the other APIs here.
fn tokens(v: &Value) -> u64 {
    (v.to_string().len() as u64).div_ceil(4)
}

/// A `ttl` such as `"300s"` or `"1.5s"`.
fn parse_ttl(text: &str) -> Option<Duration> {
    let seconds: f64 = text.strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// An RFC 3339 `expireTime`, as epoch ms.
fn parse_expire_time(text: &str) -> Option<u64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// What the tests read back of a Gemini or Vertex AI request.
fn seen(method: &Method, uri: &axum::http::Uri, headers: &HeaderMap, body: &str) -> SeenRequest {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut seen = SeenRequest::gemini(method.as_str(), uri.path(), headers, &value, body);
    seen.query = uri.query().map(str::to_owned);
    seen
}

/// A key as Gemini takes it (`x-goog-api-key`, `?key=`) or Vertex AI's
/// bearer token.
fn has_key(headers: &HeaderMap, query: &HashMap<String, String>) -> bool {
    headers.contains_key("x-goog-api-key")
        || query.contains_key("key")
        || headers.contains_key("authorization")
}

/// The Gemini API's routes, under `v1beta` and `v1` alike (Google's SDK
/// picks `v1` for a custom base URL), and Vertex AI's under `v1` and
/// `v1beta1`.
pub(crate) fn routes() -> axum::Router<Arc<Shared>> {
    use axum::routing::{any, get, post};
    let mut router = axum::Router::new();
    for version in ["v1beta", "v1"] {
        router = router
            .route(&format!("/{version}/models/{{model_action}}"), post(models))
            .route(
                &format!("/{version}/cachedContents"),
                post(cached_contents).get(cached_contents),
            )
            .route(
                &format!("/{version}/cachedContents/{{id}}"),
                get(cached_content)
                    .patch(cached_content)
                    .delete(cached_content),
            );
    }
    for version in ["v1", "v1beta1"] {
        router = router.route(&format!("/{version}/projects/{{*rest}}"), any(vertex));
    }
    router
}

/// `POST /v1beta/models/{model}:generateContent` and
/// `:streamGenerateContent`.
pub(crate) async fn models(
    State(s): State<Arc<Shared>>,
    Path(model_action): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    raw: String,
) -> Response {
    generate(&s, &model_action, &query, &uri, &headers, &raw)
}

/// A `generateContent` or `streamGenerateContent` call of `model_action`
/// (`MODEL:ACTION`), the Gemini API's or Vertex AI's.
fn generate(
    s: &Shared,
    model_action: &str,
    query: &HashMap<String, String>,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    raw: &str,
) -> Response {
    let mut record = seen(&Method::POST, uri, headers, raw);
    let Some((model, action)) = model_action.rsplit_once(':') else {
        lock(&s.seen).push(record);
        return error(StatusCode::NOT_FOUND, "no such method");
    };
    let stream = match action {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => {
            lock(&s.seen).push(record);
            return error(StatusCode::NOT_FOUND, &format!("no method {action}"));
        }
    };
    record.stream = stream;
    if s.options.require_key && !has_key(headers, query) {
        lock(&s.seen).push(record);
        return error(
            StatusCode::FORBIDDEN,
            "Method doesn't allow unregistered callers. Please use an API key.",
        );
    }
    let body: Value = match serde_json::from_str(raw) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            lock(&s.seen).push(record);
            return error(StatusCode::BAD_REQUEST, "Invalid JSON payload received.");
        }
    };
    let max_output = body
        .pointer("/generationConfig/maxOutputTokens")
        .and_then(Value::as_u64);
    if max_output == Some(0) {
        lock(&s.seen).push(record);
        return error(
            StatusCode::BAD_REQUEST,
            "max_output_tokens must be positive.",
        );
    }
    // An explicit cache is read whole; it must be alive and of this model.
    let mut explicit = 0;
    if let Some(name) = body.get("cachedContent").and_then(Value::as_str) {
        let caches = lock(&s.gemini_caches);
        match caches.entries.get(name) {
            Some(c) if c.expires > Instant::now() && c.model.ends_with(model) => {
                explicit = c.tokens;
            }
            _ => {
                drop(caches);
                lock(&s.seen).push(record);
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("CachedContent not found (or permission denied): {name}"),
                );
            }
        }
    }
    let minimum = s
        .options
        .min_cacheable_tokens
        .unwrap_or_else(|| minimum_cacheable_tokens(model));
    let prompt = Prompt::gemini(model, &body).with_minimum(minimum);
    let outcome = lock(&s.cache).serve(&prompt, Instant::now());
    record.cache_read = Some(outcome.read + explicit);
    lock(&s.seen).push(record);
    let prompt_tokens = outcome.read + outcome.written + outcome.uncached + explicit;
    let words = s.options.reply_words.min(max_output.unwrap_or(u64::MAX));
    let truncated = max_output.is_some_and(|m| m < s.options.reply_words);
    let usage = |candidates: u64| {
        json!({"promptTokenCount": prompt_tokens,
               "cachedContentTokenCount": outcome.read + explicit,
               "candidatesTokenCount": candidates,
               "totalTokenCount": prompt_tokens + candidates})
    };
    let chunk = |text: String, last: bool, candidates: u64| {
        let mut candidate = json!({"content": {"parts": [{"text": text}], "role": "model"},
                                   "index": 0});
        if last {
            candidate["finishReason"] = json!(if truncated { "MAX_TOKENS" } else { "STOP" });
        }
        json!({"candidates": [candidate], "usageMetadata": usage(candidates),
               "modelVersion": model, "responseId": "standin"})
    };
    let text: Vec<String> = (0..words).map(|i| format!("w{i} ")).collect();
    if !stream {
        return axum::Json(chunk(text.concat(), true, words)).into_response();
    }
    let n = text.len().max(1);
    let chunks: Vec<Value> = (0..n)
        .map(|i| {
            let piece = text.get(i).cloned().unwrap_or_default();
            chunk(piece, i + 1 == n, (i as u64 + 1).min(words))
        })
        .collect();
    if query.get("alt").is_some_and(|a| a == "sse") {
        let events: String = chunks
            .iter()
            .map(|c| format!("data: {c}\r\n\r\n"))
            .collect();
        ([("content-type", "text/event-stream")], events).into_response()
    } else {
        axum::Json(Value::Array(chunks)).into_response()
    }
}

/// Vertex AI (`/v1/projects/{*rest}`, `/v1beta1` alike): the same calls
/// under a project and location, the model a publisher's
/// (`projects/P/locations/L/publishers/google/models/MODEL:ACTION`), the
/// caches the location's (`projects/P/locations/L/cachedContents[/ID]`).
pub(crate) async fn vertex(
    State(s): State<Arc<Shared>>,
    Path(rest): Path<String>,
    method: Method,
    Query(query): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    raw: String,
) -> Response {
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [_, "locations", _, "publishers", _, "models", model_action] if method == Method::POST => {
            generate(&s, model_action, &query, &uri, &headers, &raw)
        }
        [project, "locations", location, "cachedContents"] => {
            let prefix = format!("projects/{project}/locations/{location}/");
            create_or_list(&s, &prefix, &method, &uri, &headers, &raw)
        }
        [project, "locations", location, "cachedContents", id] => {
            let name = format!("projects/{project}/locations/{location}/cachedContents/{id}");
            one_cache(&s, &name, &method, &uri, &headers, &raw)
        }
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("no such resource: projects/{rest}"),
        ),
    }
}

/// The API's view of a cache.
fn cache_json(name: &str, c: &CachedContent) -> Value {
    let mut v = json!({"name": name, "model": c.model, "createTime": rfc3339(now_ms()),
        "updateTime": rfc3339(now_ms()), "expireTime": rfc3339(c.expires_at_ms),
        "usageMetadata": {"totalTokenCount": c.tokens}});
    if let Some(display) = &c.display_name {
        v["displayName"] = json!(display);
    }
    v
}

/// When a cache asked to live `ttl` or until `expireTime` ends; the
/// API's complaint when neither reads.
fn lifetime(body: &Value) -> Result<Option<u64>, &'static str> {
    let now = now_ms();
    if let Some(ttl) = body.get("ttl") {
        let ttl = ttl
            .as_str()
            .and_then(parse_ttl)
            .ok_or("Invalid value at 'ttl'")?;
        return Ok(Some(
            now + u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        ));
    }
    if let Some(at) = body.get("expireTime") {
        return at
            .as_str()
            .and_then(parse_expire_time)
            .map(Some)
            .ok_or("Invalid value at 'expire_time'");
    }
    Ok(None)
}

fn instant_at(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms.saturating_sub(now_ms()))
}

/// `POST` (create) and `GET` (list) `/v1beta/cachedContents`.
pub(crate) async fn cached_contents(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    raw: String,
) -> Response {
    create_or_list(&s, "", &method, &uri, &headers, &raw)
}

/// Creates (`POST`) or lists (`GET`) the explicit caches named under
/// `prefix` (Vertex AI's `projects/P/locations/L/`; none for Gemini's).
fn create_or_list(
    s: &Shared,
    prefix: &str,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    raw: &str,
) -> Response {
    lock(&s.seen).push(seen(method, uri, headers, raw));
    if *method == Method::GET {
        let caches = lock(&s.gemini_caches);
        let now = Instant::now();
        let list: Vec<Value> = caches
            .entries
            .iter()
            .filter(|(_, c)| c.expires > now)
            .map(|(name, c)| cache_json(name, c))
            .collect();
        return axum::Json(json!({"cachedContents": list})).into_response();
    }
    let Ok(body @ Value::Object(_)) = serde_json::from_str::<Value>(raw) else {
        return error(StatusCode::BAD_REQUEST, "Invalid JSON payload received.");
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "model is required");
    };
    let expires_at_ms = match lifetime(&body) {
        Ok(at) => at.unwrap_or_else(|| {
            now_ms() + u64::try_from(DEFAULT_CACHE_TTL.as_millis()).unwrap_or(u64::MAX)
        }),
        Err(complaint) => return error(StatusCode::BAD_REQUEST, complaint),
    };
    let cached: u64 = ["systemInstruction", "contents", "tools"]
        .iter()
        .filter_map(|k| body.get(*k))
        .map(tokens)
        .sum();
    let bare = model.rsplit('/').next().unwrap_or(model);
    if cached < minimum_cacheable_tokens(bare).max(1) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "Cached content is too small. total_token_count={cached}, min_total_token_count={}",
                minimum_cacheable_tokens(bare)
            ),
        );
    }
    let mut caches = lock(&s.gemini_caches);
    caches.next_id += 1;
    let name = format!("{prefix}cachedContents/standin{}", caches.next_id);
    let entry = CachedContent {
        model: model.to_owned(),
        tokens: cached,
        expires: instant_at(expires_at_ms),
        expires_at_ms,
        display_name: body
            .get("displayName")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let answer = cache_json(&name, &entry);
    caches.entries.insert(name, entry);
    axum::Json(answer).into_response()
}

/// `GET`, `PATCH` (its `ttl` or `expireTime`) and `DELETE`
/// `/v1beta/cachedContents/{id}`.
pub(crate) async fn cached_content(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    raw: String,
) -> Response {
    one_cache(
        &s,
        &format!("cachedContents/{id}"),
        &method,
        &uri,
        &headers,
        &raw,
    )
}

/// Reads, extends or deletes the explicit cache `name`.
fn one_cache(
    s: &Shared,
    name: &str,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    raw: &str,
) -> Response {
    let name = name.to_owned();
    lock(&s.seen).push(seen(method, uri, headers, raw));
    let mut caches = lock(&s.gemini_caches);
    let alive = caches
        .entries
        .get(&name)
        .is_some_and(|c| c.expires > Instant::now());
    if !alive {
        caches.entries.remove(&name);
        return error(
            StatusCode::NOT_FOUND,
            &format!("CachedContent not found (or permission denied): {name}"),
        );
    }
    match *method {
        Method::DELETE => {
            caches.entries.remove(&name);
            axum::Json(json!({})).into_response()
        }
        Method::PATCH => {
            let Ok(body @ Value::Object(_)) = serde_json::from_str::<Value>(raw) else {
                return error(StatusCode::BAD_REQUEST, "Invalid JSON payload received.");
            };
            // Only the lifetime may change ("Context caching": update).
            if let Some(other) = body
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys())
                .find(|k| *k != "ttl" && *k != "expireTime")
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("only ttl or expireTime can be updated, not {other}"),
                );
            }
            match lifetime(&body) {
                Ok(Some(at)) => {
                    let entry = caches.entries.get_mut(&name).expect("alive above");
                    entry.expires_at_ms = at;
                    entry.expires = instant_at(at);
                    axum::Json(cache_json(&name, entry)).into_response()
                }
                Ok(None) => error(StatusCode::BAD_REQUEST, "ttl or expireTime is required"),
                Err(complaint) => error(StatusCode::BAD_REQUEST, complaint),
            }
        }
        _ => axum::Json(cache_json(&name, &caches.entries[&name])).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_and_times_read_as_the_api_writes_them() {
        assert_eq!(parse_ttl("300s"), Some(Duration::from_secs(300)));
        assert_eq!(parse_ttl("1.5s"), Some(Duration::from_millis(1_500)));
        assert_eq!(parse_ttl("5m"), None);
        let at = 1_800_000_000_000;
        assert_eq!(parse_expire_time(&rfc3339(at)), Some(at));
    }

    #[test]
    fn the_minimum_is_each_models() {
        assert_eq!(minimum_cacheable_tokens("gemini-2.5-flash"), 2_048);
        assert_eq!(minimum_cacheable_tokens("gemini-3-pro-preview"), 4_096);
        assert_eq!(minimum_cacheable_tokens("gemini-test"), 0);
    }
}
