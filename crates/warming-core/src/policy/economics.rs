//! Prices, the cache's TTL and the value of time: what a warm and a miss cost.

use crate::Usage;

/// Prices, the cache's TTL and the value of the user's time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Economics {
    /// Dollars per uncached input token. Default $3 per million.
    pub input_price: f64,
    /// Price of a cache write relative to input. Default 1.25 (Anthropic 5 min).
    pub write_multiplier: f64,
    /// Price of a cache read relative to input. Default 0.1.
    pub read_multiplier: f64,
    /// How long the provider keeps a prefix after its last use, ms. Default 5 min.
    pub ttl_ms: u64,
    /// Prefill speed, tokens per second: a miss makes the user wait for the
    /// prefix's prefill. Default 5 000.
    pub prefill_tokens_per_sec: f64,
    /// Dollars per second of the user's waiting (λ); 0 weighs tokens only.
    /// Default $0.01/s ($36 an hour).
    pub lambda_per_sec: f64,
    /// Prefix size assumed before any usage is known. Default 20 000 tokens.
    pub default_prefix_tokens: u64,
    /// Price of an output token relative to input. Default 5 (Claude's and
    /// most OpenAI models' ratio): a warm that must think pays for it.
    pub output_multiplier: f64,
    /// How long the provider's longer retention keeps a prefix, ms
    /// (Anthropic's 1-hour cache, OpenAI's 24-hour retention); 0 when the
    /// model has none, or its prices are not known. Default 0.
    pub long_ttl_ms: u64,
    /// Price of a write into that longer retention relative to input
    /// (Anthropic 2, OpenAI 1: no premium). Default 2.
    pub long_write_multiplier: f64,
    /// Price of keeping a token in an explicit cache for an hour, relative
    /// to input (Gemini's `cachedContents` storage); 0 where the provider
    /// bills no storage. Default 0.
    pub storage_multiplier_per_hour: f64,
}

impl Default for Economics {
    fn default() -> Self {
        Self {
            input_price: 3e-6,
            write_multiplier: 1.25,
            read_multiplier: 0.1,
            ttl_ms: 300_000,
            prefill_tokens_per_sec: 5_000.0,
            lambda_per_sec: 0.01,
            default_prefix_tokens: 20_000,
            output_multiplier: 5.0,
            long_ttl_ms: 0,
            long_write_multiplier: 2.0,
            storage_multiplier_per_hour: 0.0,
        }
    }
}

impl Economics {
    /// Whether every figure can be used: prices, multipliers and rates
    /// finite and 0 or more, a TTL of at least 1 ms.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        [
            self.input_price,
            self.write_multiplier,
            self.read_multiplier,
            self.prefill_tokens_per_sec,
            self.lambda_per_sec,
            self.output_multiplier,
            self.long_write_multiplier,
            self.storage_multiplier_per_hour,
        ]
        .iter()
        .all(|v| v.is_finite() && *v >= 0.0)
            && self.ttl_ms > 0
    }

    /// Dollars one warm of a `prefix`-token prefix costs (a cache read).
    #[must_use]
    pub fn warm_cost(&self, prefix: u64) -> f64 {
        self.usage_cost(&Usage {
            cache_read_tokens: prefix,
            ..Usage::default()
        })
    }

    /// Dollars `tokens` output tokens cost.
    #[must_use]
    pub fn output_cost(&self, tokens: u64) -> f64 {
        self.usage_cost(&Usage {
            output_tokens: tokens,
            ..Usage::default()
        })
    }

    /// Dollars a request with this `usage` costs: uncached input, cache
    /// reads and writes, and output, each at its multiplier. The one price
    /// formula behind the metrics, the simulator and the policies.
    #[must_use]
    #[doc(alias = "cost")]
    pub fn usage_cost(&self, usage: &Usage) -> f64 {
        self.input_price
            * (usage.input_tokens as f64
                + self.read_multiplier * usage.cache_read_tokens as f64
                + self.write_multiplier * usage.cache_write_tokens as f64
                + self.output_multiplier * usage.output_tokens as f64)
    }

    /// Dollars of keeping `tokens` in an explicit cache for `time`.
    #[must_use]
    pub fn storage_cost(&self, tokens: u64, time: std::time::Duration) -> f64 {
        self.input_price * self.storage_multiplier_per_hour * tokens as f64 * time.as_secs_f64()
            / 3_600.0
    }

    /// Dollars a turn saved by reading `tokens` from a warm cache instead of
    /// re-writing them (time not counted): the worth of one miss avoided.
    #[must_use]
    pub fn miss_avoided_cost(&self, tokens: u64) -> f64 {
        ((self.write_multiplier - self.read_multiplier) * self.input_price * tokens as f64).max(0.0)
    }

    /// Dollars a returning turn loses to a miss: re-writing the prefix
    /// instead of reading it, and waiting for its prefill.
    #[must_use]
    pub fn miss_cost(&self, prefix: u64) -> f64 {
        let tokens = self.miss_avoided_cost(prefix);
        let waiting = self.lambda_per_sec * prefix as f64 / self.prefill_tokens_per_sec.max(1.0);
        tokens + waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The named costs are the one usage formula applied to their
        /// usage, so metrics, simulator and policies cannot disagree.
        #[test]
        fn every_named_cost_is_the_usage_formula(
            input in 0u64..10_000_000,
            read in 0u64..10_000_000,
            write in 0u64..10_000_000,
            output in 0u64..10_000,
        ) {
            let e = Economics::default();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
            let whole = e.usage_cost(&Usage { input_tokens: input, cache_read_tokens: read, cache_write_tokens: write, output_tokens: output });
            let parts = e.usage_cost(&Usage { input_tokens: input, ..Usage::default() })
                + e.warm_cost(read)
                + e.usage_cost(&Usage { cache_write_tokens: write, ..Usage::default() })
                + e.output_cost(output);
            prop_assert!(close(whole, parts));
            // Avoiding a miss saves the re-write minus the read, never less
            // than nothing, and a miss costs at least that (plus waiting).
            let avoided = e.miss_avoided_cost(read);
            let rewrite = e.usage_cost(&Usage { cache_write_tokens: read, ..Usage::default() });
            prop_assert!(close(avoided, rewrite - e.warm_cost(read)));
            prop_assert!(e.miss_cost(read) >= avoided);
        }
    }
}
