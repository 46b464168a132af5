//! The stand-in's HTTP side.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::cache::{CacheOutcome, PrefixCache, Prompt};
use crate::shared::{lock, Api, CachedContents, Fault, SeenRequest, Shared, StandinOptions};

/// A running stand-in; stops when dropped.
#[derive(Debug)]
pub struct Standin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Standin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Standin {
    /// Starts a stand-in on 127.0.0.1 with a free port.
    ///
    /// # Errors
    /// When binding fails.
    pub async fn start(options: StandinOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::serve(listener, options)
    }

    /// Serves on `listener`.
    ///
    /// # Errors
    /// When the listener has no local address.
    pub fn serve(listener: TcpListener, options: StandinOptions) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cache: Mutex::new(PrefixCache::new(options.ttl, options.long_ttl)),
            options,
            faults: Mutex::new(VecDeque::new()),
            seen: Mutex::new(Vec::new()),
            gemini_caches: Mutex::new(CachedContents::default()),
        });
        let app = Router::new()
            .route("/v1/messages", post(anthropic))
            .route("/v1/chat/completions", post(openai))
            .route("/v1/responses", post(responses))
            .merge(crate::gemini::routes())
            .route("/_standin/requests", get(requests))
            .route("/_standin/fail", post(fail))
            // Room for the largest body any API takes, so the handler
            // answers an oversized one as its provider does.
            .layer(axum::extract::DefaultBodyLimit::max(
                crate::rules::OPENAI_MAX_REQUEST_BYTES + 1024 * 1024,
            ))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    #[must_use]
    pub fn requests(&self) -> Vec<SeenRequest> {
        lock(&self.shared.seen).clone()
    }

    /// Requests received so far from warming itself (`user-agent: warming/...`): the warms.
    #[must_use]
    pub fn warms(&self) -> Vec<SeenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r.user_agent
                    .as_deref()
                    .is_some_and(|ua| ua.starts_with("warming/"))
            })
            .collect()
    }

    /// Fails the next `count` requests with `status` (and `retry-after`).
    pub fn fail_next(&self, count: usize, status: u16, retry_after_secs: Option<u64>) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut faults = lock(&self.shared.faults);
        faults.extend(std::iter::repeat_n(
            Fault::Status(status, retry_after_secs),
            count,
        ));
    }

    /// Never answers the next `count` requests.
    pub fn hang_next(&self, count: usize) {
        lock(&self.shared.faults).extend(std::iter::repeat_n(Fault::Hang, count));
    }
}

/// The fewest output tokens OpenAI Responses accepts (`max_output_tokens`).
const RESPONSES_MIN_OUTPUT: u64 = 16;

/// Output when a Responses request sets no limit.
const RESPONSES_DEFAULT_OUTPUT: u64 = 20;

async fn anthropic(
    State(s): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    handle(s, Api::Anthropic, (uri, headers), body).await
}

async fn openai(
    State(s): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    handle(s, Api::OpenAi, (uri, headers), body).await
}

async fn responses(
    State(s): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    handle(s, Api::Responses, (uri, headers), body).await
}

/// `GET /_standin/requests?contains=TEXT&bodies=false`: the requests
/// received, only those whose body contains `TEXT` when given, without their
/// bodies when `bodies=false` (a benchmark pairs arrivals with warms
/// without copying every template).
async fn requests(
    State(s): State<Arc<Shared>>,
    axum::extract::Query(filter): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Json<Vec<SeenRequest>> {
    let contains = filter.get("contains");
    let bodies = filter.get("bodies").is_none_or(|b| b != "false");
    let seen = lock(&s.seen);
    Json(
        seen.iter()
            .filter(|r| contains.is_none_or(|text| r.body.contains(text.as_str())))
            .map(|r| {
                let mut r = r.clone();
                if !bodies {
                    r.body.clear();
                }
                r
            })
            .collect(),
    )
}

async fn fail(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> StatusCode {
    let count = body.get("count").and_then(Value::as_u64).unwrap_or(1) as usize;
    let status = body.get("status").and_then(Value::as_u64).unwrap_or(500) as u16;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let retry = body.get("retryAfterSecs").and_then(Value::as_u64);
    lock(&s.faults).extend(std::iter::repeat_n(Fault::Status(status, retry), count));
    StatusCode::NO_CONTENT
}

fn error(api: Api, status: StatusCode, kind: &str, message: &str) -> Response {
    let body = match api {
        Api::Anthropic => json!({"type": "error", "error": {"type": kind, "message": message}}),
        Api::OpenAi | Api::Responses => {
            json!({"error": {"type": kind, "message": message, "code": null}})
        }
    };
    (status, Json(body)).into_response()
}

/// Why a request gets no model answer.
enum Rejection {
    /// An error answer, as the provider would give it (boxed: a response
    /// is large beside the `Ok` of an output limit).
    Answer(Box<Response>),
    /// An injected hang: no answer at all.
    Hang,
}

async fn handle(
    s: Arc<Shared>,
    api: Api,
    (uri, headers): (axum::http::Uri, HeaderMap),
    raw: String,
) -> Response {
    let limit = match api {
        Api::Anthropic => crate::rules::ANTHROPIC_MAX_REQUEST_BYTES,
        Api::OpenAi | Api::Responses => crate::rules::OPENAI_MAX_REQUEST_BYTES,
    };
    if raw.len() > limit {
        return error(
            api,
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        );
    }
    let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let mut seen = SeenRequest::new(api, &headers, &body, &raw);
    seen.query = uri.query().map(str::to_owned);
    let max_tokens = match admit(&s, api, &body, &seen) {
        Ok(max_tokens) => max_tokens,
        Err(rejection) => {
            lock(&s.seen).push(seen);
            return match rejection {
                Rejection::Answer(response) => *response,
                Rejection::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    StatusCode::GATEWAY_TIMEOUT.into_response()
                }
            };
        }
    };
    let model_name = body.get("model").and_then(Value::as_str).unwrap_or("");
    let minimum = s
        .options
        .min_cacheable_tokens
        .unwrap_or_else(|| crate::rules::minimum_cacheable_tokens(model_name));
    let prompt = match api {
        Api::Anthropic => Prompt::anthropic(&body),
        Api::OpenAi => Prompt::openai(&body),
        Api::Responses => Prompt::responses(&body),
    }
    .with_minimum(minimum)
    .with_long_retention(asks_long_retention(api, &body));
    let outcome = lock(&s.cache).serve(&prompt, Instant::now());
    seen.cache_read = Some(outcome.read);
    lock(&s.seen).push(seen);
    answer(&s, api, &body, outcome, max_tokens)
}

/// The request's output limit if the provider would serve it; else the
/// error it would give (a missing key, an injected fault, a malformed or
/// refused request).
fn admit(s: &Shared, api: Api, body: &Value, seen: &SeenRequest) -> Result<u64, Rejection> {
    let invalid = |message: &str| {
        Rejection::Answer(Box::new(error(
            api,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message,
        )))
    };
    if s.options.require_key && seen.credential.is_none() {
        return Err(Rejection::Answer(Box::new(error(
            api,
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        ))));
    }
    if let Some(fault) = lock(&s.faults).pop_front() {
        return Err(injected(api, fault));
    }
    if api == Api::Responses {
        return admit_responses(body, seen.max_tokens);
    }
    if !body.is_object() || !body.get("messages").is_some_and(Value::is_array) {
        return Err(invalid("messages: Field required"));
    }
    let Some(max_tokens) = seen.max_tokens else {
        return Err(invalid("max_tokens: Field required"));
    };
    if max_tokens == 0 && (api == Api::OpenAi || s.options.reject_zero_max_tokens) {
        return Err(invalid("max_tokens: must be greater than or equal to 1"));
    }
    let refusal = match api {
        Api::Anthropic => crate::rules::anthropic(body, max_tokens),
        Api::OpenAi | Api::Responses => crate::rules::openai(body),
    };
    match refusal {
        // OpenAI names the refused field apart.
        Some(refusal) if api == Api::OpenAi => {
            let body = json!({"error": {"type": "invalid_request_error", "message": refusal.message,
                "param": refusal.field, "code": "unsupported_parameter"}});
            Err(Rejection::Answer(Box::new(
                (StatusCode::BAD_REQUEST, Json(body)).into_response(),
            )))
        }
        Some(refusal) => Err(invalid(refusal.message)),
        None => Ok(max_tokens),
    }
}

/// OpenAI Responses: an `input` (a string or a list) is required;
/// `max_output_tokens` is optional but at least 16.
fn admit_responses(body: &Value, max_tokens: Option<u64>) -> Result<u64, Rejection> {
    let refuse = |param: &str, message: &str| {
        let body = json!({"error": {"type": "invalid_request_error", "message": message,
            "param": param, "code": "invalid_value"}});
        Err(Rejection::Answer(Box::new(
            (StatusCode::BAD_REQUEST, Json(body)).into_response(),
        )))
    };
    if !body
        .get("input")
        .is_some_and(|i| i.is_array() || i.is_string())
    {
        return refuse("input", "Missing required parameter: 'input'.");
    }
    match max_tokens {
        Some(n) if n < RESPONSES_MIN_OUTPUT => refuse(
            "max_output_tokens",
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16.",
        ),
        Some(n) => Ok(n),
        None => Ok(RESPONSES_DEFAULT_OUTPUT),
    }
}

/// The answer to an injected fault.
fn injected(api: Api, fault: Fault) -> Rejection {
    match fault {
        Fault::Hang => Rejection::Hang,
        Fault::Status(status, retry_after) => {
            let kind = match status.as_u16() {
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            let mut response = error(api, status, kind, "injected by the stand-in");
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(secs));
            }
            Rejection::Answer(Box::new(response))
        }
    }
}

/// The model's reply: its words, and whether the output bound cut it short.
struct Reply {
    words: Vec<String>,
    truncated: bool,
}

impl Reply {
    /// `natural` words, cut at `max_tokens` (one word a token).
    fn new(natural: u64, max_tokens: u64) -> Self {
        let n = natural.min(max_tokens).min(10_000);
        Self {
            words: (0..n).map(|i| format!("w{i} ")).collect(),
            truncated: max_tokens < natural,
        }
    }

    fn text(&self) -> String {
        self.words.concat()
    }

    /// Anthropic's `stop_reason`.
    fn stop_reason(&self) -> &'static str {
        if self.truncated {
            "max_tokens"
        } else {
            "end_turn"
        }
    }

    /// OpenAI Chat's `finish_reason`.
    fn finish_reason(&self) -> &'static str {
        if self.truncated {
            "length"
        } else {
            "stop"
        }
    }
}

/// The model's answer, whole or streamed, with the cache's usage.
fn answer(s: &Shared, api: Api, body: &Value, outcome: CacheOutcome, max_tokens: u64) -> Response {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("standin")
        .to_owned();
    let reply = Reply::new(s.options.reply_words, max_tokens);
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut response = if stream {
        sse(
            api,
            model,
            outcome,
            reply,
            include_usage,
            s.options.chunk_delay,
        )
    } else {
        Json(whole(api, &model, outcome, &reply)).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&s.options.backend_id) {
        response.headers_mut().insert("x-backend-id", v);
    }
    response
}

fn anthropic_usage(outcome: CacheOutcome, output: usize) -> Value {
    json!({
        "input_tokens": outcome.uncached,
        "cache_creation_input_tokens": outcome.written,
        "cache_read_input_tokens": outcome.read,
        "output_tokens": output,
    })
}

fn openai_usage(outcome: CacheOutcome, output: usize) -> Value {
    let prompt = outcome.read + outcome.written + outcome.uncached;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output as u64,
        "prompt_tokens_details": {"cached_tokens": outcome.read},
    })
}

fn responses_usage(outcome: CacheOutcome, output: usize) -> Value {
    let input = outcome.read + outcome.written + outcome.uncached;
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": outcome.read},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + output as u64,
    })
}

/// OpenAI Responses' message item, `done` or still being written.
fn responses_item(reply: &Reply, done: bool) -> Value {
    let status = match (done, reply.truncated) {
        (false, _) => "in_progress",
        (true, true) => "incomplete",
        (true, false) => "completed",
    };
    let content = if done {
        json!([{"type": "output_text", "text": reply.text(), "annotations": []}])
    } else {
        json!([])
    };
    json!({"type": "message", "id": "msg_standin", "status": status, "role": "assistant",
        "content": content})
}

fn whole(api: Api, model: &str, outcome: CacheOutcome, reply: &Reply) -> Value {
    let text = reply.text();
    let output = reply.words.len();
    match api {
        Api::Responses => {
            let (status, details) = if reply.truncated {
                ("incomplete", json!({"reason": "max_output_tokens"}))
            } else {
                ("completed", Value::Null)
            };
            json!({
                "id": "resp_standin",
                "object": "response",
                "created_at": 1_700_000_000,
                "status": status,
                "incomplete_details": details,
                "model": model,
                "output": [responses_item(reply, true)],
                "usage": responses_usage(outcome, output),
            })
        }
        Api::Anthropic => json!({
            "id": "msg_standin",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": if text.is_empty() { json!([]) } else { json!([{"type": "text", "text": text}]) },
            "stop_reason": reply.stop_reason(),
            "stop_sequence": null,
            "usage": anthropic_usage(outcome, output),
        }),
        Api::OpenAi => json!({
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                "finish_reason": reply.finish_reason()}],
            "usage": openai_usage(outcome, output),
        }),
    }
}

fn event(name: Option<&str>, data: &Value) -> String {
    match name {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

/// The events of a Responses stream, in the order the API sends them
/// (OpenAI "Streaming API responses"): the response created, the message
/// item and its text part added, the text deltas, the part and item done,
/// and the response completed with its usage.
fn responses_events(model: &str, outcome: CacheOutcome, reply: &Reply) -> [Vec<String>; 3] {
    let mut seq = 0_u64;
    let mut next = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(seq);
        seq += 1;
        event(Some(name), &data)
    };
    let text_part = |text: String| json!({"type": "output_text", "text": text, "annotations": []});
    let at = json!({"item_id": "msg_standin", "output_index": 0, "content_index": 0});
    let with = |mut base: Value, extra: Value| {
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        base
    };
    let created = json!({"id": "resp_standin", "object": "response", "status": "in_progress",
        "model": model, "output": []});
    let head = vec![
        next("response.created", json!({"response": created})),
        next("response.in_progress", json!({"response": created})),
        next(
            "response.output_item.added",
            json!({"output_index": 0, "item": responses_item(reply, false)}),
        ),
        next(
            "response.content_part.added",
            with(at.clone(), json!({"part": text_part(String::new())})),
        ),
    ];
    let deltas = reply
        .words
        .iter()
        .map(|w| {
            next(
                "response.output_text.delta",
                with(at.clone(), json!({"delta": w})),
            )
        })
        .collect();
    let whole = whole(Api::Responses, model, outcome, reply);
    let finished = if reply.truncated {
        "response.incomplete"
    } else {
        "response.completed"
    };
    let tail = vec![
        next(
            "response.output_text.done",
            with(at.clone(), json!({"text": reply.text()})),
        ),
        next(
            "response.content_part.done",
            with(at, json!({"part": text_part(reply.text())})),
        ),
        next(
            "response.output_item.done",
            json!({"output_index": 0, "item": responses_item(reply, true)}),
        ),
        next(finished, json!({"response": whole})),
    ];
    [head, deltas, tail]
}

/// A streamed answer, one chunk per word, `delay` apart.
fn sse(
    api: Api,
    model: String,
    outcome: CacheOutcome,
    reply: Reply,
    include_usage: bool,
    delay: Duration,
) -> Response {
    let mut head = Vec::new();
    let mut chunks = Vec::new();
    let mut tail = Vec::new();
    let output = reply.words.len();
    match api {
        Api::Anthropic => {
            let mut start_usage = anthropic_usage(outcome, 1);
            start_usage["output_tokens"] = json!(1);
            head.push(event(
                Some("message_start"),
                &json!({"type": "message_start", "message": {
                "id": "msg_standin", "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
            ));
            head.push(event(Some("content_block_start"), &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
            for w in &reply.words {
                chunks.push(event(Some("content_block_delta"), &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})));
            }
            tail.push(event(
                Some("content_block_stop"),
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            tail.push(event(Some("message_delta"), &json!({"type": "message_delta", "delta": {"stop_reason": reply.stop_reason(), "stop_sequence": null}, "usage": {"output_tokens": output}})));
            tail.push(event(
                Some("message_stop"),
                &json!({"type": "message_stop"}),
            ));
        }
        Api::Responses => {
            [head, chunks, tail] = responses_events(&model, outcome, &reply);
        }
        Api::OpenAi => {
            let chunk = |delta: Value, finish: Value| json!({"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            head.push(event(
                None,
                &chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            ));
            for w in &reply.words {
                chunks.push(event(None, &chunk(json!({"content": w}), Value::Null)));
            }
            tail.push(event(None, &chunk(json!({}), json!(reply.finish_reason()))));
            if include_usage {
                tail.push(event(None, &json!({"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model, "choices": [], "usage": openai_usage(outcome, output)})));
            }
            tail.push("data: [DONE]\n\n".to_owned());
        }
    }
    let stream = futures_util::stream::unfold(
        (head.into_iter(), chunks.into_iter(), tail.into_iter()),
        move |(mut head, mut chunks, mut tail)| async move {
            if let Some(e) = head.next() {
                return Some((Ok::<_, Infallible>(e), (head, chunks, tail)));
            }
            if let Some(e) = chunks.next() {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                return Some((Ok(e), (head, chunks, tail)));
            }
            tail.next().map(|e| (Ok(e), (head, chunks, tail)))
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Whether a request asks for the provider's longer retention: a
/// `cache_control` with `"ttl": "1h"` anywhere (Anthropic "Prompt caching",
/// 1-hour cache duration), or `"prompt_cache_retention": "24h"` (OpenAI
/// "Prompt caching", prompt cache retention).
fn asks_long_retention(api: Api, body: &Value) -> bool {
    fn one_hour(v: &Value) -> bool {
        match v {
            Value::Object(map) => {
                map.get("cache_control")
                    .and_then(|c| c.get("ttl"))
                    .and_then(Value::as_str)
                    == Some("1h")
                    || map.values().any(one_hour)
            }
            Value::Array(items) => items.iter().any(one_hour),
            _ => false,
        }
    }
    match api {
        Api::Anthropic => one_hour(body),
        Api::OpenAi | Api::Responses => {
            body.get("prompt_cache_retention").and_then(Value::as_str) == Some("24h")
        }
    }
}
