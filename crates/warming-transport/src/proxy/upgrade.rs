//! Asking the provider for its longer retention on a proxied request, where
//! the conversation's plan says it costs less than replays
//! (`--upgrade-cache auto`): Anthropic's 1-hour cache ("Prompt caching":
//! `cache_control: {"type": "ephemeral", "ttl": "1h"}`; longer TTLs must
//! come before shorter ones, so every breakpoint is marked) or OpenAI's
//! 24-hour retention ("Prompt caching": `prompt_cache_retention: "24h"`,
//! on Chat Completions and Responses alike).

use serde_json::{json, Value};
use warming_service::ProviderKind;

/// Rewrites `request` to ask for `kind`'s longer retention; `false` (and
/// nothing changed) when it already does or cannot (an Anthropic request
/// with no breakpoint caches nothing to keep).
pub(super) fn ask_longer_retention(kind: ProviderKind, request: &mut Value) -> bool {
    match kind {
        ProviderKind::Anthropic => mark_breakpoints(request),
        ProviderKind::OpenAi => {
            let Some(map) = request.as_object_mut() else {
                return false;
            };
            if map.get("prompt_cache_retention").and_then(Value::as_str) == Some("24h") {
                return false;
            }
            map.insert("prompt_cache_retention".into(), json!("24h"));
            true
        }
        // Gemini keeps a prefix longer through an explicit cache the
        // client creates, not a request field: nothing to rewrite.
        ProviderKind::Gemini | ProviderKind::Vertex | ProviderKind::Webhook => false,
    }
}

/// Sets `"ttl": "1h"` on every `cache_control` object that lacks it;
/// whether any did.
fn mark_breakpoints(value: &mut Value) -> bool {
    match value {
        Value::Object(map) => {
            let mut changed = false;
            if let Some(Value::Object(control)) = map.get_mut("cache_control") {
                if control.get("ttl").and_then(Value::as_str) != Some("1h") {
                    control.insert("ttl".into(), json!("1h"));
                    changed = true;
                }
            }
            for (key, child) in map.iter_mut() {
                if key != "cache_control" {
                    changed |= mark_breakpoints(child);
                }
            }
            changed
        }
        Value::Array(items) => {
            // Every item is marked: no short circuit.
            let mut changed = false;
            for item in items {
                changed |= mark_breakpoints(item);
            }
            changed
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_anthropic_breakpoint_asks_for_the_hour_and_nothing_else_changes() {
        let mut request = json!({"model": "claude-sonnet-4-5",
            "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "ttl",
                "cache_control": {"type": "ephemeral", "ttl": "5m"}}]}]});
        assert!(ask_longer_retention(ProviderKind::Anthropic, &mut request));
        assert_eq!(request["system"][0]["cache_control"]["ttl"], "1h");
        assert_eq!(
            request["messages"][0]["content"][0]["cache_control"]["ttl"],
            "1h"
        );
        assert_eq!(request["messages"][0]["content"][0]["text"], "ttl");
        assert!(!ask_longer_retention(ProviderKind::Anthropic, &mut request));
        let mut uncached = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        assert!(!ask_longer_retention(
            ProviderKind::Anthropic,
            &mut uncached
        ));
    }

    #[test]
    fn an_openai_request_asks_for_24_hours_once() {
        let mut request = json!({"model": "gpt-5.1", "input": "hi"});
        assert!(ask_longer_retention(ProviderKind::OpenAi, &mut request));
        assert_eq!(request["prompt_cache_retention"], "24h");
        assert!(!ask_longer_retention(ProviderKind::OpenAi, &mut request));
    }
}
