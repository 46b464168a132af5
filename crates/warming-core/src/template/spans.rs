//! Where a request's parts are in its JSON text, found without building
//! a tree: the spans the cacheable estimate and the stored blocks use.

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
    /// The value of `system` (OpenAI Responses: `instructions`; Gemini:
    /// `systemInstruction`).
    pub system: Option<&'a str>,
    /// The value of `messages` (OpenAI Responses: `input`; Gemini:
    /// `contents`), whatever it is.
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
        // OpenAI Responses: `instructions` and `input`; Gemini:
        // `systemInstruction` and `contents` (see `PartSpans`).
        let input = get("input");
        let messages = get("messages").or(input).or_else(|| get("contents"));
        Some(Self {
            tools: get("tools"),
            system: get("system")
                .or_else(|| get("instructions"))
                .or_else(|| get("systemInstruction")),
            messages,
            message_items: messages.and_then(|m| {
                if m.starts_with('"') && !top.contains_key("messages") && input.is_some() {
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
pub(super) struct PartSpans {
    tools: Option<Span>,
    system: Option<Span>,
    messages: Option<Span>,
    message_items: Option<Vec<Span>>,
    top_level_cache_control: bool,
    model: Option<Span>,
}

/// A byte range of a template's text (templates are far below 4 GiB).
pub(super) type Span = (u32, u32);

impl PartSpans {
    /// The parts of `text`, which must be valid JSON without whitespace
    /// between tokens and without escapes in object keys (what
    /// [`compact_without_credentials`] returns): strings are skipped with a
    /// SIMD search for their closing quote, nothing is validated. `None`
    /// if it is not an object.
    pub(super) fn of_compact(text: &str) -> Option<Self> {
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
        // Gemini's `systemInstruction` and `contents`, likewise.
        let mut system_instruction = None;
        let mut contents = None;
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
                b"systemInstruction" => system_instruction = Some(span(value, end)?),
                b"contents" => contents = Some((span(value, end)?, items(value, end, false)?)),
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
            spans.system = instructions.or(system_instruction);
        }
        if spans.messages.is_none() {
            if let Some((whole, items)) = input.or(contents) {
                spans.messages = Some(whole);
                spans.message_items = items;
            }
        }
        Some(spans)
    }

    /// The parts these spans mark in `text`.
    pub(super) fn parts<'a>(&self, text: &'a str) -> PromptParts<'a> {
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
