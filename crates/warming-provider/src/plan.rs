//! Which request a warm sends for a template: the cheapest one the provider
//! accepts that reads the cache entries the next turn will read.
//!
//! A warm keeps every parameter that keys the cache as the turn sent it
//! (`tools`, `tool_choice`, `system`, the messages, `thinking`,
//! `output_config`, `context_management`) and bounds only the output. The
//! rules, from the providers' documentation:
//! - Anthropic "Prompt caching" (pre-warming): `max_tokens: 0` reads and
//!   writes the prefix without generating, but is refused with streaming,
//!   with thinking on (extended or adaptive), with structured outputs and
//!   with a forced `tool_choice`. Changing the thinking parameters
//!   invalidates the cache entries of messages; tools and system stay
//!   cached.
//! - Anthropic "Adaptive thinking": no `budget_tokens`; `max_tokens` bounds
//!   the whole output, thinking included, so `max_tokens: 1` keeps the
//!   thinking parameters at the price of one output token.
//! - Anthropic "Extended thinking": `budget_tokens` is at least 1 024 and
//!   `max_tokens` must exceed it; thinking tokens are billed as output.
//! - Anthropic "Context editing": `clear_thinking_20251015` manages thinking
//!   blocks when thinking is on, so a warm without thinking drops that edit.
//! - OpenAI "Reasoning models": they refuse `max_tokens` and take
//!   `max_completion_tokens`.
//! - OpenAI Responses (`/v1/responses`): `max_output_tokens` must be at
//!   least 16; `store: false` keeps a warm out of the conversation's stored
//!   responses.
//! - Google "Context caching": implicit caching reads a request's prefix
//!   (`systemInstruction`, `tools`, `contents`) back for a later request
//!   that starts the same; an explicit cache (`cachedContents`) lives until
//!   its `expireTime`, which a `PATCH` of `ttl` alone moves, reading it does
//!   not. The `generateContent` reference: `generationConfig.maxOutputTokens`
//!   bounds the output (no documented 0), `candidateCount` the candidates.
//!   A warm of an implicit cache keeps every part of the request, the
//!   `thinkingConfig` too (a parameter a warm need not change is not
//!   changed), and asks for one candidate of one token; a warm of an
//!   explicit one sends no content at all: it extends the cache.
//!
//! A budgeted (extended) thinking conversation has two possible warms.
//! Keeping the thinking parameters with `max_tokens = budget + 1` keeps
//! every entry (the messages too) but may generate up to that many tokens
//! at the output price; dropping them with `max_tokens: 0` keeps only tools
//! and system. The first is chosen when the messages' entries are worth more
//! than the output it may cost: re-writing them on a miss costs
//! `(write - read) x input` per token, the output `output x input` per
//! token, so it pays when `messages x 1.15 > (budget + 1) x 5`. The second
//! also drops the messages' breakpoints: it would otherwise write message
//! entries without the thinking key that no turn ever reads, and report
//! reading them as hits.

use serde_json::{json, Map, Value};
use warming_core::{rough_tokens, WarmKind};

/// A cache write costs 1.25x input and a read 0.1x: what a miss loses per
/// token of a prefix the warm kept.
const MISS_PER_TOKEN: f64 = 1.25 - 0.1;

/// Output tokens cost about 5x input tokens (Anthropic's and OpenAI's
/// list prices).
const OUTPUT_PER_TOKEN: f64 = 5.0;

/// Model-name prefixes of OpenAI's reasoning models ("Reasoning models").
pub const OPENAI_REASONING: &[&str] = &["o1", "o3", "o4", "gpt-5"];

/// Anthropic's thinking, when on: `Some(budget)`, `None` inside for
/// adaptive thinking (no budget).
fn thinking_budget(request: &Map<String, Value>) -> Option<Option<u64>> {
    let thinking = request.get("thinking")?;
    match thinking.get("type").and_then(Value::as_str) {
        Some("disabled") => None,
        _ => Some(thinking.get("budget_tokens").and_then(Value::as_u64)),
    }
}

/// Whether `max_tokens: 0` is refused for a request without thinking: a
/// structured output (`output_format` or `output_config.format`) or a
/// forced tool (`tool_choice` of type `any` or `tool`).
fn needs_output(request: &Map<String, Value>) -> bool {
    let structured = request.contains_key("output_format")
        || request
            .get("output_config")
            .is_some_and(|c| c.get("format").is_some());
    let forced = matches!(
        request
            .get("tool_choice")
            .and_then(|c| c.get("type"))
            .and_then(Value::as_str),
        Some("any" | "tool")
    );
    structured || forced
}

/// Sets the smallest output the request takes: 0, or 1 where 0 is refused
/// (`one`).
fn smallest(request: &mut Map<String, Value>, one: bool) -> WarmKind {
    request.insert("max_tokens".into(), json!(u8::from(one)));
    if one {
        WarmKind::OneToken
    } else {
        WarmKind::ZeroOutput
    }
}

/// Drops the thinking parameters and what only they allow: the thinking
/// clearing edit, and the messages' breakpoints (their entries would be
/// keyed without thinking, which no turn reads).
fn without_thinking(request: &mut Map<String, Value>) {
    request.remove("thinking");
    if let Some(Value::Object(management)) = request.get_mut("context_management") {
        if let Some(Value::Array(edits)) = management.get_mut("edits") {
            edits.retain(|e| {
                !e.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with("clear_thinking"))
            });
            if edits.is_empty() {
                request.remove("context_management");
            }
        }
    }
    if let Some(Value::Array(messages)) = request.get_mut("messages") {
        for message in messages {
            if let Some(Value::Array(blocks)) = message.get_mut("content") {
                for block in blocks {
                    if let Some(block) = block.as_object_mut() {
                        block.remove("cache_control");
                    }
                }
            }
        }
    }
    request.remove("cache_control");
}

/// Rewrites an Anthropic Messages request into its warm; `one_token` when
/// the model is known to refuse `max_tokens: 0`.
pub fn anthropic(request: &mut Map<String, Value>, one_token: bool) -> WarmKind {
    request.insert("stream".into(), Value::Bool(false));
    match thinking_budget(request) {
        None => {
            let one = one_token || needs_output(request);
            smallest(request, one)
        }
        // Adaptive: one output token bounds thinking and text alike.
        Some(None) => {
            request.insert("max_tokens".into(), json!(1));
            WarmKind::ThinkingKept
        }
        Some(Some(budget)) => {
            let messages = request.get("messages").map_or(0, rough_tokens);
            if messages as f64 * MISS_PER_TOKEN > (budget + 1) as f64 * OUTPUT_PER_TOKEN {
                request.insert("max_tokens".into(), json!(budget + 1));
                WarmKind::ThinkingKept
            } else {
                without_thinking(request);
                let one = one_token || needs_output(request);
                smallest(request, one);
                WarmKind::PrefixOnly
            }
        }
    }
}

/// Rewrites an OpenAI Chat request into its warm: one output token (or
/// none, when `zero`: engines such as llama.cpp's server take
/// `max_tokens: 0`), in the field the model takes.
pub fn openai(request: &mut Map<String, Value>, zero: bool) -> WarmKind {
    request.insert("stream".into(), Value::Bool(false));
    request.remove("stream_options");
    request.insert("n".into(), json!(1));
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let reasoning = is_reasoning_model(model);
    let limit = json!(u8::from(!zero));
    if reasoning || request.contains_key("max_completion_tokens") {
        request.insert("max_completion_tokens".into(), limit);
        request.remove("max_tokens");
    } else {
        request.insert("max_tokens".into(), limit);
    }
    if zero {
        WarmKind::ZeroOutput
    } else {
        WarmKind::OneToken
    }
}

/// Whether `model` is one of OpenAI's reasoning models, which take
/// `max_completion_tokens`.
#[must_use]
pub fn is_reasoning_model(model: &str) -> bool {
    OPENAI_REASONING.iter().any(|p| model.starts_with(p))
}

/// The fewest output tokens OpenAI Responses accepts: a smaller
/// `max_output_tokens` is refused.
pub const RESPONSES_MIN_OUTPUT: u64 = 16;

/// Whether an OpenAI request body is a Responses one (an `input`, no
/// `messages`): its warm goes to `/v1/responses`.
#[must_use]
pub fn is_responses(request: &Map<String, Value>) -> bool {
    request.contains_key("input") && !request.contains_key("messages")
}

/// Rewrites an OpenAI Responses request into its warm: the fewest output
/// tokens it accepts, not streamed, run now (not in the background), and
/// not stored as a response of the conversation. `prompt_cache_key`,
/// `previous_response_id` and the rest of the prefix are kept, so the warm
/// reads the entries the next turn will.
pub fn openai_responses(request: &mut Map<String, Value>) -> WarmKind {
    request.insert("stream".into(), Value::Bool(false));
    request.remove("stream_options");
    request.remove("background");
    request.insert("store".into(), Value::Bool(false));
    request.insert("max_output_tokens".into(), json!(RESPONSES_MIN_OUTPUT));
    WarmKind::MinimumOutput
}

/// Rewrites a Gemini `generateContent` request (its `model` already taken
/// out for the path) into its warm: one candidate of one output token,
/// everything the prefix is made of kept.
pub fn gemini(request: &mut Map<String, Value>) -> WarmKind {
    let config = request
        .entry("generationConfig")
        .or_insert_with(|| json!({}));
    if !config.is_object() {
        *config = json!({});
    }
    if let Some(config) = config.as_object_mut() {
        config.insert("maxOutputTokens".into(), json!(1));
        config.remove("candidateCount");
    }
    WarmKind::OneToken
}

/// The explicit cache a Gemini or Vertex AI request reads
/// (`cachedContent`: `cachedContents/ID`, or Vertex AI's
/// `projects/P/locations/L/cachedContents/ID`), if any: a resource name,
/// nothing a URL could be bent with.
#[must_use]
pub fn gemini_explicit_cache(request: &Map<String, Value>) -> Option<String> {
    request
        .get("cachedContent")
        .and_then(Value::as_str)
        .filter(|name| {
            (name.starts_with("cachedContents/") || name.starts_with("projects/"))
                && name.contains("cachedContents/")
                && !name.contains("..")
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b))
        })
        .map(str::to_owned)
}

/// A minute more than a warm asks an explicit cache to last: a warm late
/// under load, or a slow answer, finds the cache still there.
pub const EXTEND_SPARE: std::time::Duration = std::time::Duration::from_secs(60);

/// The `PATCH` that extends explicit cache `name` by `keep_for` (and
/// [`EXTEND_SPARE`]) from now, under `base` (the API's URL with its
/// version): its URL (`updateMask=ttl`: only the lifetime changes) and body.
#[must_use]
pub fn gemini_extend(base: &str, name: &str, keep_for: std::time::Duration) -> (String, String) {
    let seconds = (keep_for + EXTEND_SPARE).as_secs();
    (
        format!("{base}/{name}?updateMask=ttl"),
        json!({"ttl": format!("{seconds}s")}).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gemini_warm_keeps_the_prefix_and_asks_for_one_token() {
        let mut request = object(json!({"systemInstruction": {"parts": [{"text": "s"}]},
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [{"functionDeclarations": []}],
            "generationConfig": {"temperature": 0.2, "maxOutputTokens": 800, "candidateCount": 3,
                "thinkingConfig": {"thinkingBudget": 128}}}));
        assert_eq!(gemini(&mut request), WarmKind::OneToken);
        let config = &request["generationConfig"];
        assert_eq!(config["maxOutputTokens"], 1);
        assert_eq!(config.get("candidateCount"), None);
        assert_eq!(config["thinkingConfig"]["thinkingBudget"], 128);
        assert_eq!(config["temperature"], 0.2);
        assert_eq!(request["contents"][0]["parts"][0]["text"], "hi");
        let mut bare = object(json!({"contents": []}));
        gemini(&mut bare);
        assert_eq!(bare["generationConfig"]["maxOutputTokens"], 1);
    }

    #[test]
    fn an_explicit_cache_is_extended_by_its_name_alone() {
        let request = object(json!({"cachedContent": "cachedContents/abc", "contents": []}));
        let name = gemini_explicit_cache(&request).unwrap();
        let (url, body) = gemini_extend(
            "http://g/v1beta",
            &name,
            std::time::Duration::from_secs(480),
        );
        assert_eq!(url, "http://g/v1beta/cachedContents/abc?updateMask=ttl");
        assert_eq!(body, r#"{"ttl":"540s"}"#);
        let odd = object(json!({"cachedContent": "cachedContents/../models"}));
        assert_eq!(gemini_explicit_cache(&odd), None);
        let query = object(json!({"cachedContent": "cachedContents/a?x=1"}));
        assert_eq!(gemini_explicit_cache(&query), None);
        let vertex =
            object(json!({"cachedContent": "projects/1/locations/us-central1/cachedContents/9"}));
        assert!(gemini_explicit_cache(&vertex).is_some());
    }

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_plain_request_warms_with_no_output_and_structured_outputs_with_one() {
        let mut plain = object(
            json!({"model": "claude-sonnet-4-5", "max_tokens": 900, "stream": true, "messages": []}),
        );
        assert_eq!(anthropic(&mut plain, false), WarmKind::ZeroOutput);
        assert_eq!(
            (plain["max_tokens"].clone(), plain["stream"].clone()),
            (json!(0), json!(false))
        );
        let mut shaped = object(json!({"model": "m", "max_tokens": 900, "messages": [],
            "output_format": {"type": "json_schema", "schema": {}}}));
        assert_eq!(anthropic(&mut shaped, false), WarmKind::OneToken);
        assert_eq!(shaped["max_tokens"], 1);
        let mut forced = object(json!({"model": "m", "max_tokens": 900, "messages": [],
            "tool_choice": {"type": "tool", "name": "lookup"}}));
        assert_eq!(anthropic(&mut forced, false), WarmKind::OneToken);
        assert_eq!(forced["tool_choice"]["name"], "lookup");
    }

    #[test]
    fn thinking_is_kept_only_when_the_messages_are_worth_its_output() {
        let long = "x".repeat(40_000);
        let mut kept = object(json!({"model": "m", "max_tokens": 8_000,
            "thinking": {"type": "enabled", "budget_tokens": 1_024},
            "messages": [{"role": "user", "content": long}]}));
        assert_eq!(anthropic(&mut kept, false), WarmKind::ThinkingKept);
        assert_eq!(kept["max_tokens"], 1_025);
        assert_eq!(kept["thinking"]["budget_tokens"], 1_024);

        let mut short = object(json!({"model": "m", "max_tokens": 8_000,
            "thinking": {"type": "enabled", "budget_tokens": 1_024},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi",
                "cache_control": {"type": "ephemeral"}}]}]}));
        assert_eq!(anthropic(&mut short, false), WarmKind::PrefixOnly);
        assert_eq!(short["max_tokens"], 0);
        assert!(!short.contains_key("thinking"));
        // The thinking edit needs thinking; the messages' breakpoint would
        // write an entry no turn reads.
        assert!(!short.contains_key("context_management"));
        assert!(short["messages"][0]["content"][0]
            .get("cache_control")
            .is_none());

        // Adaptive thinking (Claude Code's turns): everything kept, the
        // output bounded at one token.
        let mut adaptive = object(json!({"model": "m", "max_tokens": 32_000, "stream": true,
            "thinking": {"type": "adaptive", "display": "omitted"},
            "output_config": {"effort": "medium"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "messages": [{"role": "user", "content": "hi"}]}));
        let before = adaptive.clone();
        assert_eq!(anthropic(&mut adaptive, false), WarmKind::ThinkingKept);
        assert_eq!(adaptive["max_tokens"], 1);
        for key in [
            "thinking",
            "output_config",
            "context_management",
            "messages",
        ] {
            assert_eq!(adaptive[key], before[key], "{key} changed");
        }
        let mut off = object(json!({"model": "m", "max_tokens": 10,
            "thinking": {"type": "disabled"}, "messages": []}));
        assert_eq!(anthropic(&mut off, false), WarmKind::ZeroOutput);
    }

    #[test]
    fn openai_reasoning_models_take_max_completion_tokens() {
        let mut reasoning = object(
            json!({"model": "o4-mini", "max_tokens": 500, "messages": [],
            "stream": true, "stream_options": {"include_usage": true}}),
        );
        assert_eq!(openai(&mut reasoning, false), WarmKind::OneToken);
        assert_eq!(reasoning["max_completion_tokens"], 1);
        assert!(!reasoning.contains_key("max_tokens") && !reasoning.contains_key("stream_options"));
        let mut chat = object(json!({"model": "gpt-4o-mini", "max_tokens": 500, "messages": []}));
        openai(&mut chat, false);
        assert_eq!(chat["max_tokens"], 1);
    }

    #[test]
    fn a_responses_warm_asks_for_the_least_output_and_stores_nothing() {
        let mut request = object(json!({"model": "gpt-5", "instructions": "be brief",
            "input": [{"role": "user", "content": "hi"}], "stream": true,
            "max_output_tokens": 4_000, "background": true, "store": true,
            "prompt_cache_key": "tenant-7/s-1", "previous_response_id": "resp_1"}));
        assert!(is_responses(&request));
        assert_eq!(openai_responses(&mut request), WarmKind::MinimumOutput);
        assert_eq!(request["max_output_tokens"], 16);
        assert_eq!(
            (&request["stream"], &request["store"]),
            (&json!(false), &json!(false))
        );
        assert!(!request.contains_key("background"));
        assert_eq!(request["prompt_cache_key"], "tenant-7/s-1");
        assert_eq!(request["previous_response_id"], "resp_1");
        assert!(!is_responses(&object(
            json!({"model": "m", "messages": []})
        )));
    }

    #[test]
    fn an_engine_that_takes_no_output_is_asked_for_none() {
        let mut chat = object(json!({"model": "gemma", "max_tokens": 500, "messages": []}));
        assert_eq!(openai(&mut chat, true), WarmKind::ZeroOutput);
        assert_eq!(chat["max_tokens"], 0);
    }

    #[test]
    fn an_openai_warm_keeps_the_cache_routing_key() {
        // OpenAI routes requests to a cache by `prompt_cache_key` (and the
        // prefix): a warm without it could land on a machine that never saw
        // the prefix.
        let mut chat = object(
            json!({"model": "gpt-4.1", "max_tokens": 500, "messages": [],
            "prompt_cache_key": "tenant-7/session-42", "user": "u-1"}),
        );
        openai(&mut chat, false);
        assert_eq!(chat["prompt_cache_key"], "tenant-7/session-42");
        assert_eq!(chat["user"], "u-1");
    }
}
