//! The warm template: what a warm replays, scrubbed of credentials.

use serde_json::Value;

/// Object keys that carry credentials in request bodies seen in the wild;
/// compared case-insensitively. Removed wherever they appear, because a
/// template is persisted and a secret must never reach the disk.
const CREDENTIAL_KEYS: &[&str] = &[
    "api_key",
    "api-key",
    "apikey",
    "x-api-key",
    "authorization",
    "proxy-authorization",
    "x-goog-api-key",
    "access_token",
    "client_secret",
];

/// The provider request of a conversation's last settled turn, which a warm
/// replays with the smallest output, plus the context that came with it.
///
/// The core treats the request as opaque: building the provider call from it
/// is the transport's job. Construction strips credential keys anywhere in
/// the JSON, so a template is always safe to persist.
///
/// ```
/// use warming_core::Template;
/// let t = Template::new(
///     serde_json::json!({"model": "m", "api_key": "sk-secret", "max_tokens": 64}),
///     None,
///     None,
/// );
/// assert_eq!(t.request()["max_tokens"], 64);
/// assert!(t.request().get("api_key").is_none());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The provider request body (Anthropic Messages or OpenAI Chat).
    request: Value,
    /// The model, when the app named it apart from the request.
    model: Option<String>,
    /// The app's working directory for the conversation, kept for display.
    cwd: Option<String>,
}

impl Template {
    /// A template from a request body, with credentials removed.
    #[must_use]
    pub fn new(mut request: Value, model: Option<String>, cwd: Option<String>) -> Self {
        strip_credentials(&mut request);
        Self {
            request,
            model,
            cwd,
        }
    }

    /// The request body to replay.
    #[must_use]
    pub fn request(&self) -> &Value {
        &self.request
    }

    /// The model: the one given apart, else the request's `model` field.
    #[must_use]
    pub fn model(&self) -> Option<&str> {
        self.model
            .as_deref()
            .or_else(|| self.request.get("model").and_then(Value::as_str))
    }

    /// The model exactly as given apart from the request, if it was.
    #[must_use]
    pub fn explicit_model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The app's working directory, if it gave one.
    #[must_use]
    pub fn cwd(&self) -> Option<&str> {
        self.cwd.as_deref()
    }
}

/// Removes every credential-bearing key from `value`, at any depth.
pub fn strip_credentials(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, _| {
                !CREDENTIAL_KEYS
                    .iter()
                    .any(|secret| key.eq_ignore_ascii_case(secret))
            });
            map.values_mut().for_each(strip_credentials);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_credentials),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_credentials_at_any_depth_and_keeps_the_rest() {
        let t = Template::new(
            json!({
                "model": "claude",
                "max_tokens": 100,
                "metadata": {"Authorization": "Bearer x", "user_id": "u"},
                "extra": [{"X-API-KEY": "k", "keep": 1}],
            }),
            None,
            Some("/tmp".into()),
        );
        assert_eq!(
            t.request(),
            &json!({
                "model": "claude",
                "max_tokens": 100,
                "metadata": {"user_id": "u"},
                "extra": [{"keep": 1}],
            })
        );
        assert_eq!(t.model(), Some("claude"));
        assert_eq!(t.cwd(), Some("/tmp"));
    }

    #[test]
    fn an_explicit_model_wins_over_the_request() {
        let t = Template::new(json!({"model": "a"}), Some("b".into()), None);
        assert_eq!(t.model(), Some("b"));
    }
}
