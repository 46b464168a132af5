//! Token usage of a warm and the cache figures derived from it.

use serde::{Deserialize, Serialize};

/// Prompt token counts of one request, in Anthropic's semantics: `input`
/// excludes the tokens read from or written to the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Usage {
    /// Prompt tokens neither read from nor written to the cache.
    pub input_tokens: u64,
    /// Prompt tokens read from the cache.
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the cache.
    pub cache_write_tokens: u64,
    /// Output tokens (thinking included) the request generated: a warm
    /// that must generate some pays for them too.
    pub output_tokens: u64,
}

impl Usage {
    /// Usage from Anthropic's `input_tokens`, `cache_read_input_tokens` and
    /// `cache_creation_input_tokens`.
    #[must_use]
    pub const fn anthropic(input: u64, cache_read: u64, cache_write: u64) -> Self {
        Self {
            input_tokens: input,
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            output_tokens: 0,
        }
    }

    /// The same usage with `output` output tokens.
    ///
    /// ```
    /// use warming_core::Usage;
    /// assert_eq!(Usage::anthropic(1, 2, 3).with_output(700).output_tokens, 700);
    /// ```
    #[must_use]
    pub const fn with_output(self, output: u64) -> Self {
        Self {
            output_tokens: output,
            ..self
        }
    }

    /// Usage from OpenAI's `prompt_tokens` (which include the cached ones) and
    /// `prompt_tokens_details.cached_tokens`.
    ///
    /// OpenAI caches prefixes implicitly and reports no writes, so the uncached
    /// part of a warm (which is all prefix) counts as written: that is what the
    /// provider stores for the next request.
    #[must_use]
    pub const fn openai(prompt_tokens: u64, cached_tokens: u64) -> Self {
        let cached = if cached_tokens < prompt_tokens {
            cached_tokens
        } else {
            prompt_tokens
        };
        Self {
            input_tokens: 0,
            cache_read_tokens: cached,
            cache_write_tokens: prompt_tokens - cached,
            output_tokens: 0,
        }
    }

    /// All prompt tokens: input, cache reads and cache writes.
    #[must_use]
    pub const fn prompt_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cache_read_tokens)
            .saturating_add(self.cache_write_tokens)
    }

    /// Share of the prompt read from the cache, in percent; `None` for an
    /// empty prompt.
    ///
    /// ```
    /// use warming_core::Usage;
    /// let u = Usage::anthropic(10, 990, 0);
    /// assert_eq!(u.cache_pct(), Some(99.0));
    /// assert_eq!(Usage::default().cache_pct(), None);
    /// ```
    #[must_use]
    #[doc(alias = "hit_rate")]
    #[doc(alias = "last_pct")]
    pub fn cache_pct(&self) -> Option<f64> {
        percent(self.cache_read_tokens, self.prompt_tokens())
    }

    /// "Cache retention": of the cacheable prefix, the share that was still
    /// cached, in percent; `None` when nothing was read or written.
    ///
    /// ```
    /// use warming_core::Usage;
    /// assert_eq!(Usage::anthropic(10, 300, 100).retention_pct(), Some(75.0));
    /// ```
    #[must_use]
    #[doc(alias = "expected_pct")]
    pub fn retention_pct(&self) -> Option<f64> {
        percent(
            self.cache_read_tokens,
            self.cache_read_tokens
                .saturating_add(self.cache_write_tokens),
        )
    }

    /// True when the warm found the cache gone: it wrote the prefix and read
    /// nothing, so the interval was too long or the warm came too late.
    #[must_use]
    pub const fn cache_had_expired(&self) -> bool {
        self.cache_write_tokens > 0 && self.cache_read_tokens == 0
    }
}

fn percent(part: u64, whole: u64) -> Option<f64> {
    if whole == 0 {
        None
    } else {
        Some(part as f64 / whole as f64 * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_figures() {
        let hit = Usage::anthropic(4, 1_000, 0);
        assert_eq!(hit.cache_pct(), Some(1_000.0 / 1_004.0 * 100.0));
        assert_eq!(hit.retention_pct(), Some(100.0));
        assert!(!hit.cache_had_expired());

        let miss = Usage::anthropic(4, 0, 1_000);
        assert_eq!(miss.cache_pct(), Some(0.0));
        assert_eq!(miss.retention_pct(), Some(0.0));
        assert!(miss.cache_had_expired());

        let uncached = Usage::anthropic(50, 0, 0);
        assert_eq!(uncached.cache_pct(), Some(0.0));
        assert_eq!(uncached.retention_pct(), None);
        assert!(!uncached.cache_had_expired());
    }

    #[test]
    fn openai_prompt_tokens_include_the_cached_ones() {
        let u = Usage::openai(2_000, 1_536);
        assert_eq!(u.prompt_tokens(), 2_000);
        assert_eq!(u.cache_pct(), Some(76.8));
        assert_eq!(u.retention_pct(), Some(76.8));

        let miss = Usage::openai(2_000, 0);
        assert!(miss.cache_had_expired());

        // A provider reporting more cached than prompt tokens is clamped, not
        // allowed to produce a share above 100 %.
        assert_eq!(Usage::openai(10, 50).cache_pct(), Some(100.0));
    }
}
