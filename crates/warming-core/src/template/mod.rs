//! The warm template: what a warm replays, scrubbed of credentials.
//!
//! - `spans.rs`: where a request's parts are in its text;
//! - `estimate.rs`: token estimates;
//! - `credentials.rs`: the scrubbing;
//! - `depth.rs`: the nesting limit.

mod credentials;
mod depth;
mod estimate;
mod spans;

use serde_json::Value;

pub use credentials::strip_credentials;
use credentials::{compact_without_credentials, occurs};
pub use depth::{json_depth, MAX_TEMPLATE_DEPTH};
pub use estimate::rough_tokens;
use estimate::{cacheable_estimate, cacheable_estimate_of};
use spans::PartSpans;
pub use spans::PromptParts;

/// The provider request of a conversation's last settled turn, which a warm
/// replays with the smallest output, plus the context that came with it.
///
/// The core treats the request as opaque: building the provider call from it
/// is the transport's job. It is kept as compact JSON text (a parsed tree of
/// a long conversation costs several times its text), and construction strips
/// credential keys anywhere in it, so a template is always safe to persist.
///
/// A template may be *detached*: it keeps what the engine decides with (the
/// model, the cacheable estimate, whether it asks for the 1-hour cache) but
/// not the request itself, which lives in the embedder's store. With
/// [`Config::detach_templates`](crate::Config::detach_templates) the engine
/// keeps only detached templates, so memory does not grow with prompt sizes,
/// and a [`WarmRequest`](crate::WarmRequest) carries one: the embedder reads
/// the body back before sending the warm.
///
/// ```
/// use warming_core::Template;
/// let t = Template::new(
///     serde_json::json!({"model": "m", "api_key": "sk-secret", "max_tokens": 64}),
///     None,
///     None,
/// );
/// assert_eq!(t.request().unwrap()["max_tokens"], 64);
/// assert!(!t.request_json().unwrap().contains("sk-secret"));
/// assert_eq!(t.model(), Some("m"));
/// let detached = t.detach();
/// assert!(detached.request_json().is_none());
/// assert_eq!(detached.model(), Some("m"));
/// ```
#[derive(Debug, Clone)]
pub struct Template {
    /// The provider request body (Anthropic Messages or OpenAI Chat), as
    /// compact JSON without credentials; `None` once detached.
    request: Option<Box<str>>,
    /// Bytes of the request body.
    bytes: u64,
    /// The model: given apart from the request, else the request's `model`.
    model: Option<String>,
    /// The app's working directory for the conversation, kept for display.
    cwd: Option<String>,
    /// Estimated tokens a provider may cache, computed once when first asked.
    cacheable: std::sync::OnceLock<u64>,
    /// Whether the request asks for the provider's longer retention, read
    /// once from the text: it is asked at every snapshot.
    long_ttl: bool,
    /// Whether the request reads an explicit cache (`cachedContent`).
    explicit_cache: bool,
    /// Whether `messages` is a list, when known from building it.
    message_list: Option<bool>,
    /// Where the request's parts are in its text, when found while
    /// building it: a store cutting blocks need not scan 50 KB again.
    spans: Option<Box<PartSpans>>,
}

/// What the engine keeps of a template whose body is stored elsewhere: a
/// store saves it beside the body and restores a detached template from it
/// ([`Template::from_summary`]) without reading the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSummary {
    /// The model, if known.
    pub model: Option<String>,
    /// The app's working directory, if it gave one.
    pub cwd: Option<String>,
    /// [`Template::cacheable_tokens_estimate`].
    pub cacheable_tokens: u64,
    /// [`Template::long_ttl`].
    pub long_ttl: bool,
    /// [`Template::explicit_cache`].
    pub explicit_cache: bool,
    /// [`Template::bytes`].
    pub bytes: u64,
}

/// Equal when the request (or, for detached templates, its summary), model
/// and working directory are: the cached estimate is derived from them.
impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        let bodies = match (&self.request, &other.request) {
            (Some(a), Some(b)) => a == b,
            _ => self.summary() == other.summary(),
        };
        bodies && self.model == other.model && self.cwd == other.cwd
    }
}

impl Eq for Template {}

impl Template {
    /// A template from a request body, with credentials removed.
    #[must_use]
    pub fn new(mut request: Value, model: Option<String>, cwd: Option<String>) -> Self {
        strip_credentials(&mut request);
        let model = model.filter(|m| !m.is_empty()).or_else(|| {
            request
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        let listed = match (request.get("messages"), request.get("input")) {
            (Some(messages), _) => messages.is_array(),
            (None, Some(input)) => input.is_array() || input.is_string(),
            // Gemini's `contents`.
            (None, None) => request.get("contents").is_some_and(Value::is_array),
        };
        let mut template = Self::from_text(request.to_string(), model, cwd);
        template.message_list = Some(listed);
        template
    }

    /// A template from a request body's JSON text as it arrived, without
    /// building a tree of it: whitespace between tokens is dropped, and the
    /// text is parsed and scrubbed as by [`new`](Self::new) only when an
    /// object key could be a credential (one of the names `new` removes,
    /// in any case, or any key written with an escape). Same meaning as
    /// `new`, a few times cheaper on a long prompt. `None` if the text is
    /// not a JSON object.
    ///
    /// ```
    /// use warming_core::Template;
    /// let t = Template::from_json_text(r#"{"model": "m", "messages": [ ]}"#, None, None).unwrap();
    /// assert_eq!(t.request_json(), Some(r#"{"model":"m","messages":[]}"#));
    /// let scrubbed = Template::from_json_text(r#"{"model":"m","API_KEY":"sk"}"#, None, None).unwrap();
    /// assert_eq!(scrubbed.request_json(), Some(r#"{"model":"m"}"#));
    /// ```
    #[must_use]
    pub fn from_json_text(text: &str, model: Option<String>, cwd: Option<String>) -> Option<Self> {
        let raw: &serde_json::value::RawValue = serde_json::from_str(text).ok()?;
        Self::from_raw_json(raw, model, cwd)
    }

    /// [`from_json_text`](Self::from_json_text) of text already checked
    /// to be JSON (a field of a request body deserialized as a raw value):
    /// the text is not validated a second time. `None` if it is not an
    /// object.
    ///
    /// ```
    /// use serde_json::value::RawValue;
    /// use warming_core::Template;
    /// let raw: Box<RawValue> = serde_json::from_str(r#"{"model": "m", "messages": []}"#).unwrap();
    /// assert_eq!(Template::from_raw_json(&raw, None, None).unwrap().model(), Some("m"));
    /// ```
    #[must_use]
    pub fn from_raw_json(
        raw: &serde_json::value::RawValue,
        model: Option<String>,
        cwd: Option<String>,
    ) -> Option<Self> {
        let text = raw.get();
        let Some(compact) = compact_without_credentials(text) else {
            let value: Value = serde_json::from_str(text).ok()?;
            return value.is_object().then(|| Self::new(value, model, cwd));
        };
        // Valid JSON without whitespace and without escaped keys: the
        // parts are found by skipping strings, not by parsing again.
        let spans = PartSpans::of_compact(&compact)?;
        let parts = spans.parts(&compact);
        let model = model.filter(|m| !m.is_empty()).or(parts.model.clone());
        let listed = parts.message_items.is_some();
        let estimate = cacheable_estimate_of(&compact, parts);
        let mut template = Self::from_text(compact, model, cwd);
        let _ = template.cacheable.set(estimate);
        template.message_list = Some(listed);
        template.spans = Some(Box::new(spans));
        Some(template)
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

    /// A detached template from what a store kept of it.
    #[must_use]
    pub fn from_summary(summary: TemplateSummary) -> Self {
        Self {
            request: None,
            bytes: summary.bytes,
            model: summary.model,
            cwd: summary.cwd,
            cacheable: std::sync::OnceLock::from(summary.cacheable_tokens),
            long_ttl: summary.long_ttl,
            explicit_cache: summary.explicit_cache,
            message_list: None,
            spans: None,
        }
    }

    /// A template from compact JSON text known to be valid and scrubbed.
    fn from_text(request: String, model: Option<String>, cwd: Option<String>) -> Self {
        // Compact JSON: `"ttl":"1h"` appears only as a key and its value;
        // inside a string the quotes would be escaped.
        // Anthropic's 1-hour cache on a breakpoint, or OpenAI's 24-hour
        // retention on the request: the provider's longer retention.
        let long_ttl = occurs(&request, r#""ttl":"1h""#)
            || occurs(&request, r#""prompt_cache_retention":"24h""#);
        // Gemini: a request naming an explicit cache, `cachedContent`.
        let explicit_cache = occurs(&request, r#""cachedContent":""#);
        Self {
            bytes: request.len() as u64,
            request: Some(request.into_boxed_str()),
            model,
            cwd,
            cacheable: std::sync::OnceLock::new(),
            long_ttl,
            explicit_cache,
            message_list: None,
            spans: None,
        }
    }

    /// The same template without its body: what the engine keeps when the
    /// body is stored elsewhere (the estimate is computed first).
    #[must_use]
    pub fn detach(&self) -> Self {
        Self::from_summary(self.summary())
    }

    /// What a store keeps beside the body to restore a detached template.
    #[must_use]
    pub fn summary(&self) -> TemplateSummary {
        TemplateSummary {
            model: self.model.clone(),
            cwd: self.cwd.clone(),
            cacheable_tokens: self.cacheable_tokens_estimate(),
            long_ttl: self.long_ttl,
            explicit_cache: self.explicit_cache,
            bytes: self.bytes,
        }
    }

    /// Whether the request carries the conversation a warm replays: a
    /// `messages` list (Anthropic Messages, OpenAI Chat), an `input`
    /// (OpenAI Responses) or a `contents` list (Gemini); `None` when
    /// detached.
    #[must_use]
    pub fn has_message_list(&self) -> Option<bool> {
        let text = self.request.as_deref()?;
        Some(
            self.message_list.unwrap_or_else(|| {
                PromptParts::of(text).is_some_and(|p| p.message_items.is_some())
            }),
        )
    }

    /// Whether the body was left out ([`detach`](Self::detach)).
    #[must_use]
    pub fn is_detached(&self) -> bool {
        self.request.is_none()
    }

    /// The request body to replay, parsed; `None` when detached.
    #[must_use]
    pub fn request(&self) -> Option<Value> {
        // Always valid: built from a `Value` or checked in `from_stored`.
        serde_json::from_str(self.request.as_deref()?).ok()
    }

    /// The request body as compact JSON text; `None` when detached.
    #[must_use]
    pub fn request_json(&self) -> Option<&str> {
        self.request.as_deref()
    }

    /// The parts of the request body, as [`PromptParts::of`] finds them
    /// (from where they were found while building it, when they were);
    /// `None` when detached.
    ///
    /// ```
    /// use warming_core::Template;
    /// let t = Template::from_json_text(r#"{"model":"m","system":"s","messages":[1,2]}"#, None, None).unwrap();
    /// let parts = t.parts().unwrap();
    /// assert_eq!(parts.system, Some(r#""s""#));
    /// assert_eq!(parts.message_items.unwrap(), ["1", "2"]);
    /// ```
    #[must_use]
    pub fn parts(&self) -> Option<PromptParts<'_>> {
        let text = self.request.as_deref()?;
        match &self.spans {
            Some(spans) => Some(spans.parts(text)),
            None => PromptParts::of(text),
        }
    }

    /// Bytes of the request body (kept when detached).
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
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
    /// caches every prefix by itself). A detached template keeps the figure
    /// it had.
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
        *self
            .cacheable
            .get_or_init(|| self.request.as_deref().map_or(0, cacheable_estimate))
    }

    /// Whether the request asks for the provider's longer retention:
    /// Anthropic's 1-hour cache (`cache_control: {"type": "ephemeral",
    /// "ttl": "1h"}` anywhere), or OpenAI's 24-hour retention
    /// (`"prompt_cache_retention": "24h"`). Its prefix then lives that long
    /// after each use ([`Economics::long_ttl_ms`](crate::Economics::long_ttl_ms)),
    /// not minutes.
    ///
    /// ```
    /// use warming_core::Template;
    /// let long = serde_json::json!({"model": "m", "system": [{"type": "text", "text": "s",
    ///     "cache_control": {"type": "ephemeral", "ttl": "1h"}}]});
    /// assert!(Template::new(long, None, None).long_ttl());
    /// let quoted = serde_json::json!({"model": "m", "messages": [{"role": "user",
    ///     "content": "\"ttl\":\"1h\""}]});
    /// assert!(!Template::new(quoted, None, None).long_ttl());
    /// let retained = serde_json::json!({"model": "gpt-5.1", "prompt_cache_retention": "24h",
    ///     "messages": [{"role": "user", "content": "hi"}]});
    /// assert!(Template::new(retained, None, None).long_ttl());
    /// ```
    #[must_use]
    pub fn long_ttl(&self) -> bool {
        self.long_ttl
    }

    /// Whether the request reads an explicit cache the provider keeps
    /// until a set time, extendable without a replay (Gemini's
    /// `cachedContent`, "Context caching").
    ///
    /// ```
    /// use warming_core::Template;
    /// let explicit = serde_json::json!({"cachedContent": "cachedContents/abc",
    ///     "contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    /// assert!(Template::new(explicit, None, None).explicit_cache());
    /// let implicit = serde_json::json!({"contents": [{"role": "user",
    ///     "parts": [{"text": "cachedContent"}]}]});
    /// assert!(!Template::new(implicit, None, None).explicit_cache());
    /// ```
    #[must_use]
    pub fn explicit_cache(&self) -> bool {
        self.explicit_cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_gemini_request_has_its_system_and_contents_found() {
        let request = json!({"systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [{"role": "user", "parts": [{"text": "hi"}]},
                         {"role": "model", "parts": [{"text": "yo"}]}],
            "generationConfig": {"temperature": 0.5}});
        let t = Template::new(request, Some("gemini-2.5-flash".into()), None);
        let parts = t.parts().unwrap();
        assert_eq!(parts, PromptParts::of(t.request_json().unwrap()).unwrap());
        assert_eq!(parts.system, Some(r#"{"parts":[{"text":"be brief"}]}"#));
        assert_eq!(parts.message_items.map(|m| m.len()), Some(2));
        assert_eq!(t.has_message_list(), Some(true));
        assert!(t.cacheable_tokens_estimate() > 0);
        assert!(!t.explicit_cache());
    }

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
            t.request().unwrap(),
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

#[cfg(test)]
mod detach_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_detached_template_keeps_what_the_engine_decides_with() {
        let t = Template::new(
            json!({"model": "m", "system": [{"type": "text", "text": "x".repeat(8_000),
                "cache_control": {"type": "ephemeral", "ttl": "1h"}}], "messages": []}),
            None,
            Some("/w".into()),
        );
        let d = t.detach();
        assert!(d.is_detached() && !t.is_detached());
        assert_eq!(d.request(), None);
        assert_eq!(d.cacheable_tokens_estimate(), t.cacheable_tokens_estimate());
        assert!(d.long_ttl());
        assert_eq!(d.bytes(), t.bytes());
        assert_eq!((d.model(), d.cwd()), (Some("m"), Some("/w")));
        assert_eq!(Template::from_summary(t.summary()), d);
        assert_eq!(d, t);
    }
}

#[cfg(test)]
mod from_text_tests {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            "[a-z_]{1,8}",
            Just("api_key".to_owned()),
            Just("Authorization".to_owned()),
            Just("x-API-key".to_owned()),
            Just("caf\u{e9}".to_owned()),
            // Written with an escape: the text path must not trust it.
            Just("q\"k".to_owned()),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z \"\\\\:,{}\\[\\]\u{e9}\n]{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                proptest::collection::vec((key.clone(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever whitespace and keys a client sends, the text path keeps
        /// exactly what the tree path keeps, and never a credential.
        #[test]
        fn the_text_path_keeps_what_the_tree_path_keeps(
            body in proptest::collection::vec(("[a-z_]{1,8}", json_value()), 0..6),
            pretty in any::<bool>(),
        ) {
            let value = Value::Object(body.into_iter().collect());
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                value.to_string()
            };
            let fast = Template::from_json_text(&text, None, None).unwrap();
            let sure = Template::new(value, None, None);
            prop_assert_eq!(fast.request(), sure.request());
            prop_assert_eq!(fast.cacheable_tokens_estimate(), sure.cacheable_tokens_estimate());
            prop_assert_eq!(fast.model(), sure.model());
            let kept = fast.request_json().unwrap().to_ascii_lowercase();
            prop_assert!(!kept.contains("\"api_key\"") && !kept.contains("\"authorization\""));
        }

        /// The parts found by skipping strings while building a template
        /// are the parts a full parse of its text finds, so a store cuts
        /// the same blocks either way.
        #[test]
        fn parts_found_while_building_are_the_parsed_parts(
            body in proptest::collection::vec((
                prop_oneof![
                    Just("system".to_owned()), Just("tools".to_owned()),
                    Just("messages".to_owned()), Just("model".to_owned()),
                    Just("instructions".to_owned()), Just("input".to_owned()),
                    Just("cache_control".to_owned()), "[a-z_]{1,8}",
                ],
                prop_oneof![
                    json_value(),
                    proptest::collection::vec(json_value(), 0..4).prop_map(Value::from),
                ],
            ), 0..6),
            pretty in any::<bool>(),
        ) {
            let value = Value::Object(body.into_iter().collect());
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                value.to_string()
            };
            let t = Template::from_json_text(&text, None, None).unwrap();
            prop_assert_eq!(t.parts(), PromptParts::of(t.request_json().unwrap()));
            prop_assert_eq!(t.has_message_list(), Template::new(value, None, None).has_message_list());
        }
    }

    #[test]
    fn an_openai_responses_request_has_the_same_parts_under_its_own_names() {
        let long = "Follow the house style. ".repeat(400);
        let listed = serde_json::json!({"model": "gpt-5", "instructions": long,
            "input": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]});
        let one = serde_json::json!({"model": "gpt-5", "instructions": long, "input": "hi"});
        for (value, items) in [(listed, 2), (one, 1)] {
            let t = Template::from_json_text(&value.to_string(), None, None).unwrap();
            let parts = t.parts().unwrap();
            assert_eq!(parts.system.map(str::len), Some(long.len() + 2));
            assert_eq!(parts.message_items.map(|m| m.len()), Some(items));
            assert_eq!(t.has_message_list(), Some(true));
            // No breakpoints: OpenAI caches the whole prompt.
            assert!(t.cacheable_tokens_estimate() > 2_000);
        }
    }

    #[test]
    fn text_that_is_not_a_json_object_is_refused() {
        for text in ["", "[1]", "\"s\"", "{\"a\":", "{\"a\":\"\\", "{\"a\" 1}"] {
            assert!(
                Template::from_json_text(text, None, None).is_none(),
                "{text}"
            );
        }
    }
}
