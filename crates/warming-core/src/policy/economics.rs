//! Prices, the cache's TTL and the value of time: what a warm and a miss cost.

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
        }
    }
}

impl Economics {
    /// Dollars one warm of a `prefix`-token prefix costs (a cache read).
    #[must_use]
    pub fn warm_cost(&self, prefix: u64) -> f64 {
        self.read_multiplier * self.input_price * prefix as f64
    }

    /// Dollars `tokens` output tokens cost.
    #[must_use]
    pub fn output_cost(&self, tokens: u64) -> f64 {
        self.output_multiplier * self.input_price * tokens as f64
    }

    /// Dollars a returning turn loses to a miss: re-writing the prefix
    /// instead of reading it, and waiting for its prefill.
    #[must_use]
    pub fn miss_cost(&self, prefix: u64) -> f64 {
        let tokens =
            (self.write_multiplier - self.read_multiplier) * self.input_price * prefix as f64;
        let waiting = self.lambda_per_sec * prefix as f64 / self.prefill_tokens_per_sec.max(1.0);
        tokens + waiting
    }
}
