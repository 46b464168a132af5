//! The shortest prompt prefix each model family caches, as data.
//!
//! A prefix below its model's minimum is never cached: warming it only
//! costs. Figures from the providers' prompt-caching documentation
//! (Anthropic "Prompt caching", its cache limitations; OpenAI "Prompt
//! caching"; Google "Context caching", its table of minimums as revised
//! 2026-07: Gemini 2.5 Flash and Pro 2 048, Gemini 3.x 4 096), as of
//! 2026-11. A deployment overrides or extends them with
//! `min-cacheable-tokens` in its configuration; a model matching no entry has
//! no known minimum and is never stopped for it.

use crate::model_prefix::longest_prefix;

/// Model-name prefix and minimum cacheable tokens; the longest matching
/// prefix wins.
pub const MINIMUM_CACHEABLE_TOKENS: &[(&str, u64)] = &[
    ("claude-opus-4-5", 4_096),
    ("claude-opus-4-6", 4_096),
    ("claude-haiku-4-5", 4_096),
    ("claude-opus-4", 1_024),
    ("claude-sonnet-4", 1_024),
    ("claude-3-7-sonnet", 1_024),
    ("claude-3-5-sonnet", 1_024),
    ("claude-3-opus", 1_024),
    ("claude-3-5-haiku", 2_048),
    ("claude-3-haiku", 2_048),
    ("gpt-4o", 1_024),
    ("gpt-4.1", 1_024),
    ("gpt-5", 1_024),
    ("o1", 1_024),
    ("o3", 1_024),
    ("o4", 1_024),
    ("gemini-2.5-flash", 2_048),
    ("gemini-2.5-pro", 2_048),
    ("gemini-3", 4_096),
];

/// The minimum cacheable prefix of `model`, in tokens: the longest matching
/// prefix among `overrides`, else among [`MINIMUM_CACHEABLE_TOKENS`]; `0`
/// when none matches.
///
/// ```
/// use warming_core::minimum_cacheable_tokens;
/// assert_eq!(minimum_cacheable_tokens("claude-sonnet-4-5-20250929", &[]), 1_024);
/// assert_eq!(minimum_cacheable_tokens("claude-haiku-4-5", &[]), 4_096);
/// assert_eq!(minimum_cacheable_tokens("my-local-model", &[]), 0);
/// let mine = [("claude-sonnet-4".to_owned(), 2_000)];
/// assert_eq!(minimum_cacheable_tokens("claude-sonnet-4-5", &mine), 2_000);
/// ```
#[must_use]
pub fn minimum_cacheable_tokens(model: &str, overrides: &[(String, u64)]) -> u64 {
    let configured = overrides.iter().map(|(p, m)| (p.as_str(), *m));
    longest_prefix(model, configured)
        .or_else(|| longest_prefix(model, MINIMUM_CACHEABLE_TOKENS.iter().copied()))
        .unwrap_or(0)
}
