//! What the real APIs refuse, so a warm the stand-in accepts is one they
//! would accept. Each rule names the provider documentation it follows.

use serde_json::Value;

/// Why a request is refused: the field the provider names, and its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The request field at fault (OpenAI's `param`).
    pub field: &'static str,
    /// The message.
    pub message: &'static str,
}

/// Anthropic's thinking budget, when extended thinking is enabled.
fn thinking(body: &Value) -> Option<Option<u64>> {
    let thinking = body.get("thinking")?;
    match thinking.get("type").and_then(Value::as_str) {
        Some("disabled") => None,
        _ => Some(thinking.get("budget_tokens").and_then(Value::as_u64)),
    }
}

/// Anthropic Messages:
/// - "Prompt caching" (pre-warming): `max_tokens: 0` is incompatible with
///   streaming, extended thinking and structured outputs.
/// - "Extended thinking": `max_tokens` must be greater than
///   `thinking.budget_tokens`.
pub fn anthropic(body: &Value, max_tokens: u64) -> Option<Refusal> {
    let streaming = body.get("stream").and_then(Value::as_bool) == Some(true);
    let structured =
        body.get("output_format").is_some() || body.pointer("/output_config/format").is_some();
    let budget = thinking(body);
    if max_tokens == 0 && streaming {
        return Some(Refusal {
            field: "max_tokens",
            message: "max_tokens: 0 is not supported with streaming",
        });
    }
    if max_tokens == 0 && budget.is_some() {
        return Some(Refusal {
            field: "max_tokens",
            message: "max_tokens: 0 is not supported with extended thinking",
        });
    }
    if max_tokens == 0 && structured {
        return Some(Refusal {
            field: "max_tokens",
            message: "max_tokens: 0 is not supported with structured outputs",
        });
    }
    if let Some(Some(budget)) = budget {
        if max_tokens <= budget {
            return Some(Refusal {
                field: "max_tokens",
                message: "max_tokens: must be greater than thinking.budget_tokens",
            });
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
    let reasoning = ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|p| model.starts_with(p));
    (reasoning && body.get("max_tokens").is_some()).then_some(Refusal {
        field: "max_tokens",
        message: "Unsupported parameter: 'max_tokens' is not supported with this model. Use \
                  'max_completion_tokens' instead.",
    })
}

/// The thinking parameters, which key the cache entries of messages
/// (Anthropic "Prompt caching": changing them invalidates message-level
/// breakpoints; tools and system stay cached).
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
        assert!(anthropic(&json!({"stream": true}), 0).is_some());
        assert!(anthropic(&json!({"output_format": {"type": "json_schema"}}), 0).is_some());
        assert!(anthropic(&json!({"output_format": {"type": "json_schema"}}), 1).is_none());
        assert!(anthropic(&json!({}), 0).is_none());
        let refusal = openai(&json!({"model": "o4-mini", "max_tokens": 1})).unwrap();
        assert_eq!(refusal.field, "max_tokens");
        assert!(openai(&json!({"model": "o4-mini", "max_completion_tokens": 1})).is_none());
        assert!(openai(&json!({"model": "gpt-4o", "max_tokens": 1})).is_none());
    }
}
