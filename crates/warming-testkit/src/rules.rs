//! What the real APIs refuse and how much they cache, written here from the
//! providers' documentation (each rule names its page) and never taken from
//! warming's own tables: when production's rule is wrong, the stand-in
//! disagrees and a test fails.

use serde_json::Value;

/// Why a request is refused: the field the provider names, and its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The request field at fault (OpenAI's `param`).
    pub field: &'static str,
    /// The message.
    pub message: &'static str,
}

/// The shortest prefix each model caches, in tokens, by model-name prefix
/// (the longest matching prefix wins):
/// - Anthropic "Prompt caching", cache limitations: 4 096 for Claude Opus
///   4.5/4.6 and Haiku 4.5; 2 048 for the Haiku 3 models; 1 024 for the
///   other Opus and Sonnet models.
/// - OpenAI "Prompt caching": caching starts at 1 024 tokens, for every
///   model that caches (GPT-4o and later, the o-series).
/// - Google "Context caching" (its table as revised 2026-07): 2 048 for
///   Gemini 2.5 Flash and Pro, 4 096 for the Gemini 3 models.
pub const MINIMUM_CACHEABLE: &[(&str, u64)] = &[
    ("claude-opus-4-5", 4_096),
    ("claude-opus-4-6", 4_096),
    ("claude-haiku-4-5", 4_096),
    ("claude-3-5-haiku", 2_048),
    ("claude-3-haiku", 2_048),
    ("claude-opus-4", 1_024),
    ("claude-sonnet-4", 1_024),
    ("claude-3-7-sonnet", 1_024),
    ("claude-3-5-sonnet", 1_024),
    ("claude-3-opus", 1_024),
    ("gpt-4o", 1_024),
    ("gpt-4.1", 1_024),
    ("gpt-5", 1_024),
    ("o1", 1_024),
    ("o3", 1_024),
    ("o4", 1_024),
    ("gemini-2.5-flash", 2_048),
    ("gemini-2.5-pro", 2_048),
    ("gemini-3", 4_096),
];

/// The stand-in's minimum cacheable prefix of `model`; 0 for a name the
/// documentation does not list (test names such as `claude-test`).
#[must_use]
pub fn minimum_cacheable_tokens(model: &str) -> u64 {
    MINIMUM_CACHEABLE
        .iter()
        .filter(|(prefix, _)| model.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map_or(0, |(_, minimum)| *minimum)
}

/// OpenAI "Reasoning models": the o-series and GPT-5 models, which refuse
/// `max_tokens` and take `max_completion_tokens`.
pub const OPENAI_REASONING_MODELS: &[&str] = &["o1", "o3", "o4", "gpt-5"];

/// Whether OpenAI documents `model` as a reasoning model.
#[must_use]
pub fn is_openai_reasoning(model: &str) -> bool {
    OPENAI_REASONING_MODELS
        .iter()
        .any(|prefix| model.starts_with(prefix))
}

/// Anthropic's thinking, when on: `Some(budget)` (`None` for adaptive
/// thinking, which has no budget).
fn thinking(body: &Value) -> Option<Option<u64>> {
    let thinking = body.get("thinking")?;
    match thinking.get("type").and_then(Value::as_str) {
        Some("disabled") => None,
        _ => Some(thinking.get("budget_tokens").and_then(Value::as_u64)),
    }
}

/// Whether the request forces a tool (`tool_choice` of type `any` or `tool`).
fn forced_tool(body: &Value) -> bool {
    matches!(
        body.pointer("/tool_choice/type").and_then(Value::as_str),
        Some("any" | "tool")
    )
}

/// Anthropic Messages:
/// - "Prompt caching" (pre-warming the cache): `max_tokens: 0` returns no
///   output, and is refused with streaming, with thinking on (extended or
///   adaptive), with structured outputs and with a forced `tool_choice`.
/// - "Extended thinking": `budget_tokens` is at least 1 024 and less than
///   `max_tokens`. Adaptive thinking has no budget: `max_tokens` bounds the
///   whole output, thinking included ("Adaptive thinking").
pub fn anthropic(body: &Value, max_tokens: u64) -> Option<Refusal> {
    let refuse = |message| {
        Some(Refusal {
            field: "max_tokens",
            message,
        })
    };
    let streaming = body.get("stream").and_then(Value::as_bool) == Some(true);
    let structured =
        body.get("output_format").is_some() || body.pointer("/output_config/format").is_some();
    let budget = thinking(body);
    if max_tokens == 0 {
        if streaming {
            return refuse("max_tokens: 0 is not supported with streaming");
        }
        if budget.is_some() {
            return refuse("max_tokens: 0 is not supported with thinking");
        }
        if structured {
            return refuse("max_tokens: 0 is not supported with structured outputs");
        }
        if forced_tool(body) {
            return refuse("max_tokens: 0 is not supported with a forced tool_choice");
        }
    }
    if let Some(Some(budget)) = budget {
        if budget < 1_024 {
            return Some(Refusal {
                field: "thinking.budget_tokens",
                message: "thinking.budget_tokens: must be at least 1024",
            });
        }
        if max_tokens <= budget {
            return refuse("max_tokens: must be greater than thinking.budget_tokens");
        }
    }
    None
}

/// OpenAI Chat, "Reasoning models": they refuse `max_tokens` and take
/// `max_completion_tokens`.
pub fn openai(body: &Value) -> Option<Refusal> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    (is_openai_reasoning(model) && body.get("max_tokens").is_some()).then_some(Refusal {
        field: "max_tokens",
        message: "Unsupported parameter: 'max_tokens' is not supported with this model. Use \
                  'max_completion_tokens' instead.",
    })
}

/// The largest request body each API takes, in bytes:
/// - Anthropic "Errors" (request size limits): 32 MB for the Messages API,
///   answered `413 request_too_large`.
/// - OpenAI "Images and vision": up to 50 MB of payload per request.
pub const ANTHROPIC_MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// See [`ANTHROPIC_MAX_REQUEST_BYTES`].
pub const OPENAI_MAX_REQUEST_BYTES: usize = 50 * 1024 * 1024;

/// The thinking parameters, which key the cache entries of messages
/// (Anthropic "Prompt caching": changing them invalidates message-level
/// entries; tools and system stay cached).
#[must_use]
pub fn thinking_key(body: &Value) -> String {
    body.get("thinking")
        .map(Value::to_string)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_documented_refusal() {
        let thinking = json!({"thinking": {"type": "enabled", "budget_tokens": 1024}});
        assert!(anthropic(&thinking, 0).is_some());
        assert!(anthropic(&thinking, 1024).is_some());
        assert!(anthropic(&thinking, 1025).is_none());
        let small = json!({"thinking": {"type": "enabled", "budget_tokens": 100}});
        assert_eq!(
            anthropic(&small, 5_000).unwrap().field,
            "thinking.budget_tokens"
        );
        let adaptive = json!({"thinking": {"type": "adaptive"}});
        assert!(anthropic(&adaptive, 0).is_some());
        assert!(anthropic(&adaptive, 1).is_none());
        assert!(anthropic(&json!({"thinking": {"type": "disabled"}}), 0).is_none());
        assert!(anthropic(&json!({"stream": true}), 0).is_some());
        assert!(anthropic(&json!({"output_format": {"type": "json_schema"}}), 0).is_some());
        assert!(anthropic(&json!({"output_format": {"type": "json_schema"}}), 1).is_none());
        assert!(anthropic(&json!({"tool_choice": {"type": "any"}}), 0).is_some());
        assert!(anthropic(&json!({"tool_choice": {"type": "tool", "name": "t"}}), 0).is_some());
        assert!(anthropic(&json!({"tool_choice": {"type": "auto"}}), 0).is_none());
        assert!(anthropic(&json!({}), 0).is_none());
        let refusal = openai(&json!({"model": "o4-mini", "max_tokens": 1})).unwrap();
        assert_eq!(refusal.field, "max_tokens");
        assert!(openai(&json!({"model": "o4-mini", "max_completion_tokens": 1})).is_none());
        assert!(openai(&json!({"model": "gpt-4o", "max_tokens": 1})).is_none());
    }

    #[test]
    fn the_longest_documented_prefix_sets_the_minimum() {
        assert_eq!(minimum_cacheable_tokens("claude-opus-4-5-20251101"), 4_096);
        assert_eq!(minimum_cacheable_tokens("claude-opus-4-1"), 1_024);
        assert_eq!(minimum_cacheable_tokens("claude-3-5-haiku-latest"), 2_048);
        assert_eq!(minimum_cacheable_tokens("claude-test"), 0);
    }
}
