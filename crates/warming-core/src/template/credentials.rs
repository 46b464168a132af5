//! Credentials scrubbed from a template before it is kept: a secret must
//! never reach the disk.

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

/// `text` without whitespace between tokens, if no object key in it could
/// be a credential; `None` when one could (a credential name, or a key with
/// an escape, which could spell one), or the text is cut short: the caller
/// then parses and scrubs it the slow, sure way.
pub(super) fn compact_without_credentials(text: &str) -> Option<String> {
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
pub(super) fn occurs(haystack: &str, needle: &str) -> bool {
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
