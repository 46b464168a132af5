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
    /// Whether the request asks for the 1-hour cache, read once from the
    /// text: it is asked at every snapshot.
    long_ttl: bool,
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
            (None, None) => false,
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
            message_list: None,
            spans: None,
        }
    }

    /// A template from compact JSON text known to be valid and scrubbed.
    fn from_text(request: String, model: Option<String>, cwd: Option<String>) -> Self {
        // Compact JSON: `"ttl":"1h"` appears only as a key and its value;
        // inside a string the quotes would be escaped.
        let long_ttl = occurs(&request, r#""ttl":"1h""#);
        Self {
            bytes: request.len() as u64,
            request: Some(request.into_boxed_str()),
            model,
            cwd,
            cacheable: std::sync::OnceLock::new(),
            long_ttl,
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
            bytes: self.bytes,
        }
    }

    /// Whether the request carries the conversation a warm replays: a
    /// `messages` list (Anthropic Messages, OpenAI Chat) or an `input`
    /// (OpenAI Responses); `None` when detached.
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

/// The parts of a provider request's JSON text, each a slice of that text
/// exactly as it stands there (found by borrowed raw values: no tree is
/// built). The cacheable estimate and storage's content-addressed blocks
/// both cut a request here.
///
/// ```
/// let text = r#"{"model":"m","system":"be brief","messages":[{"role":"user","content":"hi"}]}"#;
/// let parts = warming_core::PromptParts::of(text).unwrap();
/// assert_eq!(parts.system, Some(r#""be brief""#));
/// assert_eq!(parts.message_items.unwrap(), [r#"{"role":"user","content":"hi"}"#]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptParts<'a> {
    /// The value of `tools`.
    pub tools: Option<&'a str>,
    /// The value of `system` (OpenAI Responses: `instructions`).
    pub system: Option<&'a str>,
    /// The value of `messages` (OpenAI Responses: `input`), whatever it is.
    pub messages: Option<&'a str>,
    /// Each element of `messages` when it is an array; a Responses `input`
    /// that is one string is its one element.
    pub message_items: Option<Vec<&'a str>>,
    /// Whether the request has a top-level `cache_control` (cache it all).
    pub top_level_cache_control: bool,
    /// The value of `model`, if it is a string.
    pub model: Option<String>,
}

impl<'a> PromptParts<'a> {
    /// The parts of `text`; `None` if it is not a JSON object.
    #[must_use]
    pub fn of(text: &'a str) -> Option<Self> {
        use serde_json::value::RawValue;
        let top: std::collections::HashMap<String, &'a RawValue> =
            serde_json::from_str(text).ok()?;
        let get = |key: &str| top.get(key).map(|v| v.get());
        // OpenAI Responses: `instructions` and `input` (see `PartSpans`).
        let messages = get("messages").or_else(|| get("input"));
        Some(Self {
            tools: get("tools"),
            system: get("system").or_else(|| get("instructions")),
            messages,
            message_items: messages.and_then(|m| {
                if m.starts_with('"') && !top.contains_key("messages") {
                    return Some(vec![m]);
                }
                serde_json::from_str::<Vec<&'a RawValue>>(m)
                    .ok()
                    .map(|items| items.into_iter().map(RawValue::get).collect())
            }),
            top_level_cache_control: top.contains_key("cache_control"),
            model: get("model").and_then(|m| serde_json::from_str(m).ok()),
        })
    }
}

/// Where a request's parts are in its text, as byte ranges: what
/// [`PromptParts`] borrows, kept without the borrow.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartSpans {
    tools: Option<Span>,
    system: Option<Span>,
    messages: Option<Span>,
    message_items: Option<Vec<Span>>,
    top_level_cache_control: bool,
    model: Option<Span>,
}

/// A byte range of a template's text (templates are far below 4 GiB).
type Span = (u32, u32);

impl PartSpans {
    /// The parts of `text`, which must be valid JSON without whitespace
    /// between tokens and without escapes in object keys (what
    /// [`compact_without_credentials`] returns): strings are skipped with a
    /// SIMD search for their closing quote, nothing is validated. `None`
    /// if it is not an object.
    fn of_compact(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        let span = |start: usize, end: usize| -> Option<Span> {
            Some((u32::try_from(start).ok()?, u32::try_from(end).ok()?))
        };
        let mut spans = Self {
            tools: None,
            system: None,
            messages: None,
            message_items: None,
            top_level_cache_control: false,
            model: None,
        };
        if b.first() != Some(&b'{') {
            return None;
        }
        // OpenAI Responses names its system prompt `instructions` and its
        // conversation `input` (a list, or one string): the same parts,
        // taken when `system` / `messages` are absent.
        let mut instructions = None;
        let mut input = None;
        let mut i = 1;
        if b.get(i) == Some(&b'}') {
            return Some(spans);
        }
        loop {
            let key_end = string_end(b, i)?;
            let key = b.get(i + 1..key_end - 1)?;
            let value = key_end + 1;
            let end = value_end(b, value)?;
            // A repeated key: the last one counts, as in a parsed tree.
            // The elements of an array; a string `input` is one element.
            let items = |value: usize, end: usize, string: bool| -> Option<Option<Vec<Span>>> {
                Some(match array_items(b, value)? {
                    Some(items) => Some(
                        items
                            .into_iter()
                            .map(|(s, e)| span(s, e))
                            .collect::<Option<Vec<_>>>()?,
                    ),
                    None if string && b.get(value) == Some(&b'"') => Some(vec![span(value, end)?]),
                    None => None,
                })
            };
            match key {
                b"tools" => spans.tools = Some(span(value, end)?),
                b"system" => spans.system = Some(span(value, end)?),
                b"instructions" => instructions = Some(span(value, end)?),
                b"messages" => {
                    spans.messages = Some(span(value, end)?);
                    spans.message_items = items(value, end, false)?;
                }
                b"input" => input = Some((span(value, end)?, items(value, end, true)?)),
                b"cache_control" => spans.top_level_cache_control = true,
                b"model" => spans.model = Some(span(value, end)?),
                _ => {}
            }
            match b.get(end)? {
                b',' => i = end + 1,
                b'}' => break,
                _ => return None,
            }
        }
        if spans.system.is_none() {
            spans.system = instructions;
        }
        if spans.messages.is_none() {
            if let Some((whole, items)) = input {
                spans.messages = Some(whole);
                spans.message_items = items;
            }
        }
        Some(spans)
    }

    /// The parts these spans mark in `text`.
    fn parts<'a>(&self, text: &'a str) -> PromptParts<'a> {
        let slice = |s: &Span| text.get(s.0 as usize..s.1 as usize).unwrap_or_default();
        PromptParts {
            tools: self.tools.as_ref().map(slice),
            system: self.system.as_ref().map(slice),
            messages: self.messages.as_ref().map(slice),
            message_items: self
                .message_items
                .as_ref()
                .map(|items| items.iter().map(slice).collect()),
            top_level_cache_control: self.top_level_cache_control,
            model: self
                .model
                .as_ref()
                .and_then(|m| serde_json::from_str(slice(m)).ok()),
        }
    }
}

/// The index after the string starting at `b[start]` (a quote).
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
        if b[i] == b'\\' {
            i += 2;
        } else {
            return Some(i + 1);
        }
    }
}

/// The index after the compact JSON value starting at `b[start]`.
fn value_end(b: &[u8], start: usize) -> Option<usize> {
    match *b.get(start)? {
        b'"' => string_end(b, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match *b.get(i)? {
                    b'"' => {
                        i = string_end(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let rest = b.get(start..)?;
            Some(
                start
                    + rest
                        .iter()
                        .position(|c| matches!(c, b',' | b'}' | b']'))
                        .unwrap_or(rest.len()),
            )
        }
    }
}

/// The spans of the elements of the compact JSON array at `b[start]`;
/// `Some(None)` when the value there is not an array.
fn array_items(b: &[u8], start: usize) -> Option<Option<Vec<(usize, usize)>>> {
    if b.get(start) != Some(&b'[') {
        return Some(None);
    }
    let mut items = Vec::new();
    let mut i = start + 1;
    if b.get(i) == Some(&b']') {
        return Some(Some(items));
    }
    loop {
        let end = value_end(b, i)?;
        items.push((i, end));
        match b.get(end)? {
            b',' => i = end + 1,
            b']' => return Some(Some(items)),
            _ => return None,
        }
    }
}

/// [`Template::cacheable_tokens_estimate`] of compact JSON text: a part's
/// span is exactly its compact text, so this is what serializing each part
/// would give, without a 50 KB parse and re-serialization per settle.
fn cacheable_estimate(text: &str) -> u64 {
    PromptParts::of(text).map_or(0, |parts| cacheable_estimate_of(text, parts))
}

/// [`cacheable_estimate`] from parts already found.
fn cacheable_estimate_of(text: &str, parts: PromptParts<'_>) -> u64 {
    const MARK: &str = "\"cache_control\"";
    let mut segments: Vec<&str> = [parts.tools, parts.system].into_iter().flatten().collect();
    segments.extend(parts.message_items.unwrap_or_default());
    let whole = parts.top_level_cache_control || !occurs(text, MARK);
    let cacheable = if whole {
        segments.len()
    } else {
        segments
            .iter()
            .rposition(|s| occurs(s, MARK))
            .map_or(0, |i| i + 1)
    };
    segments[..cacheable]
        .iter()
        .map(|s| (s.len() as u64).div_ceil(4))
        .sum()
}

/// `text` without whitespace between tokens, if no object key in it could
/// be a credential; `None` when one could (a credential name, or a key with
/// an escape, which could spell one), or the text is cut short: the caller
/// then parses and scrubs it the slow, sure way.
fn compact_without_credentials(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    // Runs of text between whitespace are copied whole; whitespace is ASCII,
    // so every cut is at a character boundary.
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' => {
                out.push_str(&text[run..i]);
                i += 1;
                run = i;
            }
            b'"' => {
                let start = i;
                i += 1;
                let mut escaped = false;
                loop {
                    // Jump to the next quote or backslash.
                    i += memchr::memchr2(b'"', b'\\', bytes.get(i..)?)?;
                    if bytes[i] == b'\\' {
                        escaped = true;
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                // Keys are short: only a short string can be a credential.
                let after = bytes[i..].iter().find(|b| !b.is_ascii_whitespace());
                if after == Some(&b':') {
                    let key = &bytes[start + 1..i - 1];
                    if escaped
                        || CREDENTIAL_KEYS
                            .iter()
                            .any(|c| key.eq_ignore_ascii_case(c.as_bytes()))
                    {
                        return None;
                    }
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(text.get(run..)?);
    Some(out)
}

/// Whether `needle` occurs in `haystack` (SIMD search: prompts are long).
fn occurs(haystack: &str, needle: &str) -> bool {
    memchr::memmem::find(haystack.as_bytes(), needle.as_bytes()).is_some()
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

/// The deepest nesting a template may have: what `serde_json` parses (its
/// recursion limit), so every warm can rebuild the request it stores.
pub const MAX_TEMPLATE_DEPTH: usize = 128;

/// How deep arrays and objects nest in the JSON `text` (brackets inside
/// strings do not count), found in one pass without parsing.
///
/// ```
/// use warming_core::json_depth;
/// assert_eq!(json_depth(r#"{"a": [1, {"b": "[[["}]}"#), 3);
/// assert_eq!(json_depth("7"), 0);
/// ```
#[must_use]
pub fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0_usize, 0_usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in text.bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
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
