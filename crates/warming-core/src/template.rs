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

/// Rough tokens of a JSON fragment: 4 bytes a token, the providers' rule of
/// thumb; good for comparing with a minimum or a budget, not for billing.
///
/// ```
/// assert_eq!(warming_core::rough_tokens(&serde_json::json!("12345678")), 3);
/// ```
#[must_use]
pub fn rough_tokens(v: &Value) -> u64 {
    (v.to_string().len() as u64).div_ceil(4)
}

/// The provider request of a conversation's last settled turn, which a warm
/// replays with the smallest output, plus the context that came with it.
///
/// The core treats the request as opaque: building the provider call from it
/// is the transport's job. It is kept as compact JSON text (a parsed tree of
/// a long conversation costs several times its text), and construction strips
/// credential keys anywhere in it, so a template is always safe to persist.
///
/// ```
/// use warming_core::Template;
/// let t = Template::new(
///     serde_json::json!({"model": "m", "api_key": "sk-secret", "max_tokens": 64}),
///     None,
///     None,
/// );
/// assert_eq!(t.request()["max_tokens"], 64);
/// assert!(!t.request_json().contains("sk-secret"));
/// assert_eq!(t.model(), Some("m"));
/// ```
#[derive(Debug, Clone)]
pub struct Template {
    /// The provider request body (Anthropic Messages or OpenAI Chat), as
    /// compact JSON without credentials.
    request: Box<str>,
    /// The model: given apart from the request, else the request's `model`.
    model: Option<String>,
    /// The app's working directory for the conversation, kept for display.
    cwd: Option<String>,
    /// Estimated tokens a provider may cache, computed once when first asked.
    cacheable: std::sync::OnceLock<u64>,
    /// Whether the request asks for the 1-hour cache, read once from the
    /// text: it is asked at every snapshot.
    long_ttl: bool,
}

/// Equal when the request, model and working directory are: the cached
/// estimate is derived from them.
impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.request == other.request && self.model == other.model && self.cwd == other.cwd
    }
}

impl Eq for Template {}

impl Template {
    /// A template from a request body, with credentials removed.
    #[must_use]
    pub fn new(mut request: Value, model: Option<String>, cwd: Option<String>) -> Self {
        strip_credentials(&mut request);
        let model = model.or_else(|| {
            request
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        Self::from_text(request.to_string(), model, cwd)
    }

    /// A template as stored by warming itself (already free of credentials),
    /// without re-parsing it into a tree: restoring a million conversations
    /// must not cost a million parses. `None` if `request_json` is not JSON.
    #[must_use]
    pub fn from_stored(
        request_json: String,
        model: Option<String>,
        cwd: Option<String>,
    ) -> Option<Self> {
        serde_json::from_str::<serde::de::IgnoredAny>(&request_json).ok()?;
        Some(Self::from_text(request_json, model, cwd))
    }

    /// A template from compact JSON text known to be valid and scrubbed.
    fn from_text(request: String, model: Option<String>, cwd: Option<String>) -> Self {
        // Compact JSON: `"ttl":"1h"` appears only as a key and its value;
        // inside a string the quotes would be escaped.
        let long_ttl = request.contains(r#""ttl":"1h""#);
        Self {
            request: request.into_boxed_str(),
            model,
            cwd,
            cacheable: std::sync::OnceLock::new(),
            long_ttl,
        }
    }

    /// The request body to replay, parsed.
    #[must_use]
    pub fn request(&self) -> Value {
        // Always valid: built from a `Value` or checked in `from_stored`.
        serde_json::from_str(&self.request).unwrap_or(Value::Null)
    }

    /// The request body as compact JSON text.
    #[must_use]
    pub fn request_json(&self) -> &str {
        &self.request
    }

    /// The model, if known.
    #[must_use]
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The app's working directory, if it gave one.
    #[must_use]
    pub fn cwd(&self) -> Option<&str> {
        self.cwd.as_deref()
    }

    /// Estimated tokens of the prefix a provider may cache, to compare with
    /// the model's minimum: with `cache_control` breakpoints (Anthropic), the
    /// tools, system and messages up to the last marked one (everything for
    /// a top-level `cache_control`); without any, the whole prompt (OpenAI
    /// caches every prefix by itself).
    ///
    /// ```
    /// use warming_core::Template;
    /// let long = "x".repeat(8_000);
    /// let t = Template::new(serde_json::json!({"model": "m",
    ///     "system": [{"type": "text", "text": long, "cache_control": {"type": "ephemeral"}}],
    ///     "messages": [{"role": "user", "content": "hi"}]}), None, None);
    /// assert!((2_000..2_100).contains(&t.cacheable_tokens_estimate()));
    /// ```
    #[must_use]
    pub fn cacheable_tokens_estimate(&self) -> u64 {
        *self.cacheable.get_or_init(|| {
            let request = self.request();
            let mut segments: Vec<&Value> = Vec::new();
            for key in ["tools", "system"] {
                if let Some(v) = request.get(key) {
                    segments.push(v);
                }
            }
            if let Some(Value::Array(messages)) = request.get("messages") {
                segments.extend(messages);
            }
            let whole = request.get("cache_control").is_some()
                || !self.request.contains("\"cache_control\"");
            let cacheable = if whole {
                segments.len()
            } else {
                segments
                    .iter()
                    .rposition(|s| s.to_string().contains("\"cache_control\""))
                    .map_or(0, |i| i + 1)
            };
            segments[..cacheable].iter().map(|s| rough_tokens(s)).sum()
        })
    }

    /// Whether the request asks for Anthropic's 1-hour cache
    /// (`cache_control: {"type": "ephemeral", "ttl": "1h"}` anywhere): its
    /// prefix then lives an hour after each use, not 5 minutes.
    ///
    /// ```
    /// use warming_core::Template;
    /// let long = serde_json::json!({"model": "m", "system": [{"type": "text", "text": "s",
    ///     "cache_control": {"type": "ephemeral", "ttl": "1h"}}]});
    /// assert!(Template::new(long, None, None).long_ttl());
    /// let quoted = serde_json::json!({"model": "m", "messages": [{"role": "user",
    ///     "content": "\"ttl\":\"1h\""}]});
    /// assert!(!Template::new(quoted, None, None).long_ttl());
    /// ```
    #[must_use]
    pub fn long_ttl(&self) -> bool {
        self.long_ttl
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
            json!({
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
    fn a_stored_template_must_be_json() {
        assert!(Template::from_stored("{\"model\":\"m\"}".into(), None, None).is_some());
        assert!(Template::from_stored("{not json".into(), None, None).is_none());
    }

    #[test]
    fn an_explicit_model_wins_over_the_request() {
        let t = Template::new(json!({"model": "a"}), Some("b".into()), None);
        assert_eq!(t.model(), Some("b"));
    }
}
