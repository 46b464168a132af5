//! Reading token usage out of provider answers: the usage objects of
//! Anthropic Messages, OpenAI Chat Completions and Responses, and Gemini's
//! `usageMetadata`, which both the provider client (warms) and the proxy
//! (turns) read.

use serde_json::Value;
use warming_core::Usage;

fn count(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// Usage from a `usage` object in Anthropic shape (`input_tokens`,
/// `cache_read_input_tokens`, `cache_creation_input_tokens`) or OpenAI shape
/// (`prompt_tokens`, `prompt_tokens_details.cached_tokens`).
#[must_use]
pub fn parse_usage(usage: &Value) -> Option<Usage> {
    // Gemini (`usageMetadata`): `promptTokenCount` counts every prompt
    // token, the cached ones (`cachedContentTokenCount`) among them; the
    // output is the candidates' and the thoughts' tokens.
    if let Some(prompt) = count(usage, "promptTokenCount") {
        let cached = count(usage, "cachedContentTokenCount").unwrap_or(0);
        let output = count(usage, "candidatesTokenCount").unwrap_or(0)
            + count(usage, "thoughtsTokenCount").unwrap_or(0);
        return Some(Usage::openai(prompt, cached).with_output(output));
    }
    if let Some(prompt) = count(usage, "prompt_tokens") {
        let cached = usage
            .get("prompt_tokens_details")
            .and_then(|d| count(d, "cached_tokens"))
            .unwrap_or(0);
        let output = count(usage, "completion_tokens").unwrap_or(0);
        return Some(Usage::openai(prompt, cached).with_output(output));
    }
    // OpenAI Responses: `input_tokens` counts every prompt token, the
    // cached ones among them (Anthropic's `input_tokens` are the uncached
    // ones, and it has no `input_tokens_details`).
    if let Some(details) = usage.get("input_tokens_details") {
        let prompt = count(usage, "input_tokens").unwrap_or(0);
        let cached = count(details, "cached_tokens").unwrap_or(0);
        let output = count(usage, "output_tokens").unwrap_or(0);
        return Some(Usage::openai(prompt, cached).with_output(output));
    }
    let input = count(usage, "input_tokens");
    let read = count(usage, "cache_read_input_tokens");
    let write = count(usage, "cache_creation_input_tokens");
    if input.is_none() && read.is_none() && write.is_none() {
        return None;
    }
    Some(
        Usage::anthropic(input.unwrap_or(0), read.unwrap_or(0), write.unwrap_or(0))
            .with_output(count(usage, "output_tokens").unwrap_or(0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_both_shapes() {
        let a = json!({"input_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0, "output_tokens": 0});
        assert_eq!(parse_usage(&a), Some(Usage::anthropic(5, 100, 0)));
        let thought =
            json!({"input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 1025});
        assert_eq!(parse_usage(&thought).unwrap().output_tokens, 1025);
        let responses = json!({"input_tokens": 2000, "input_tokens_details": {"cached_tokens": 1920},
            "output_tokens": 16, "output_tokens_details": {"reasoning_tokens": 0}});
        assert_eq!(
            parse_usage(&responses),
            Some(Usage::openai(2000, 1920).with_output(16))
        );
        let o = json!({"prompt_tokens": 2000, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 1920}});
        assert_eq!(
            parse_usage(&o),
            Some(Usage::openai(2000, 1920).with_output(1))
        );
        assert_eq!(
            parse_usage(&json!({"prompt_tokens": 10})),
            Some(Usage::openai(10, 0))
        );
        assert_eq!(parse_usage(&json!({"output_tokens": 3})), None);
        let gemini = json!({"promptTokenCount": 3000, "cachedContentTokenCount": 2048,
            "candidatesTokenCount": 1, "thoughtsTokenCount": 4, "totalTokenCount": 3005});
        assert_eq!(
            parse_usage(&gemini),
            Some(Usage::openai(3000, 2048).with_output(5))
        );
        assert_eq!(parse_usage(&json!("nope")), None);
    }
}
