//! The conversation id of a proxied request without `x-conversation-id`.
//!
//! A stable hash (64-bit FNV-1a) of the model, the system prompt and the first
//! user message: every later turn of the same conversation repeats those, so
//! it maps to the same id, and different conversations almost never collide.
//! The id is `px-` and 16 hex digits. Stable across restarts and versions:
//! FNV-1a over the compact JSON of each part, separated by a 0 byte.

use serde_json::Value;
use warming_core::ConversationId;

fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hash ^= 0;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        for byte in part.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The derived id of a request body (Anthropic Messages, OpenAI Chat, or
/// Gemini's `contents` with its `systemInstruction`).
#[must_use]
pub fn conversation_id(request: &Value) -> ConversationId {
    let messages = request
        .get("messages")
        .or_else(|| request.get("contents"))
        .and_then(Value::as_array);
    let role = |m: &&Value, want: &[&str]| {
        m.get("role")
            .and_then(Value::as_str)
            .is_some_and(|r| want.contains(&r))
    };
    // Anthropic puts the system prompt apart; OpenAI as the first message.
    let system = request
        .get("system")
        .or_else(|| request.get("systemInstruction"))
        .cloned()
        .or_else(|| {
            messages
                .and_then(|ms| ms.iter().find(|m| role(m, &["system", "developer"])))
                .and_then(|m| m.get("content").cloned())
        });
    let first_user = messages
        .and_then(|ms| ms.iter().find(|m| role(m, &["user"])))
        .and_then(|m| m.get("content").or_else(|| m.get("parts")).cloned());
    let text = |v: Option<&Value>| v.map(Value::to_string).unwrap_or_default();
    let model = text(request.get("model"));
    let hash = fnv1a(&[&model, &text(system.as_ref()), &text(first_user.as_ref())]);
    ConversationId::new(&format!("px-{hash:016x}")).expect("px- and hex digits are a valid id")
}

/// The session a request's body names, for clients that name it there only:
/// Claude Code's `metadata.user_id`, a JSON object with a `session_id`
/// (older versions: `user_<hash>_account_<uuid>_session_<uuid>`).
#[must_use]
pub fn session_in_body(request: &Value) -> Option<String> {
    let user_id = request.pointer("/metadata/user_id")?.as_str()?;
    let session = match serde_json::from_str::<Value>(user_id) {
        Ok(Value::Object(fields)) => fields.get("session_id")?.as_str()?.to_owned(),
        _ => user_id.rsplit_once("_session_")?.1.to_owned(),
    };
    (!session.is_empty()).then_some(session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn later_turns_of_a_conversation_keep_its_id() {
        let first =
            json!({"model": "m", "system": "s", "messages": [{"role": "user", "content": "hi"}]});
        let later = json!({"model": "m", "system": "s", "max_tokens": 9, "messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
            {"role": "user", "content": "more"}]});
        assert_eq!(conversation_id(&first), conversation_id(&later));
        let other =
            json!({"model": "m", "system": "s", "messages": [{"role": "user", "content": "bye"}]});
        assert_ne!(conversation_id(&first), conversation_id(&other));
    }

    #[test]
    fn openai_system_messages_count_as_the_system_prompt() {
        let a = json!({"model": "g", "messages": [{"role": "system", "content": "A"}, {"role": "user", "content": "q"}]});
        let b = json!({"model": "g", "messages": [{"role": "system", "content": "B"}, {"role": "user", "content": "q"}]});
        assert_ne!(conversation_id(&a), conversation_id(&b));
        assert!(conversation_id(&a).as_str().starts_with("px-"));
    }

    #[test]
    fn claude_code_names_its_session_in_metadata() {
        let user_id = r#"{"device_id":"9c1f","account_uuid":"","session_id":"ceeb91ca-02b9"}"#;
        let request = json!({"model": "m", "metadata": {"user_id": user_id}, "messages": []});
        assert_eq!(session_in_body(&request).as_deref(), Some("ceeb91ca-02b9"));
        let legacy = json!({"metadata": {"user_id": "user_ab12_account_ff_session_0a-1b"}});
        assert_eq!(session_in_body(&legacy).as_deref(), Some("0a-1b"));
        for other in [
            json!({"metadata": {"user_id": "u-42"}}),
            json!({"messages": []}),
        ] {
            assert_eq!(session_in_body(&other), None);
        }
    }

    #[test]
    fn the_hash_is_stable_across_builds() {
        // Pinned: a change here would orphan every stored proxied conversation.
        let request =
            json!({"model": "m", "system": "s", "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(
            conversation_id(&request).as_str(),
            format!("px-{:016x}", fnv1a(&["\"m\"", "\"s\"", "\"hi\""]))
        );
        assert_eq!(fnv1a(&["a"]), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_gemini_conversation_keeps_its_id_across_turns() {
        let first = json!({"model": "gemini-2.5-flash",
            "systemInstruction": {"parts": [{"text": "s"}]},
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
        let later = json!({"model": "gemini-2.5-flash",
            "systemInstruction": {"parts": [{"text": "s"}]},
            "contents": [{"role": "user", "parts": [{"text": "hi"}]},
                {"role": "model", "parts": [{"text": "yo"}]},
                {"role": "user", "parts": [{"text": "more"}]}]});
        assert_eq!(conversation_id(&first), conversation_id(&later));
        let other = json!({"model": "gemini-2.5-flash",
            "systemInstruction": {"parts": [{"text": "s"}]},
            "contents": [{"role": "user", "parts": [{"text": "bye"}]}]});
        assert_ne!(conversation_id(&first), conversation_id(&other));
    }
}
