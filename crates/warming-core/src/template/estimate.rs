//! Token estimates of a request's text: rough, 4 bytes a token.

use serde_json::Value;

use super::credentials::occurs;
use super::spans::PromptParts;

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

/// [`Template::cacheable_tokens_estimate`] of compact JSON text: a part's
/// span is exactly its compact text, so this is what serializing each part
/// would give, without a 50 KB parse and re-serialization per settle.
pub(super) fn cacheable_estimate(text: &str) -> u64 {
    PromptParts::of(text).map_or(0, |parts| cacheable_estimate_of(text, parts))
}

/// [`cacheable_estimate`] from parts already found.
pub(super) fn cacheable_estimate_of(text: &str, parts: PromptParts<'_>) -> u64 {
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
