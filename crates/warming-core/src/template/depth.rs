//! How deeply a JSON text nests, so a template that would defeat every
//! reader is refused at the door.

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
