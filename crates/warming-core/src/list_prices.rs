//! Models' prices and the one rule that prices a conversation: the
//! deployment's own prices, else the list the embedder supplies (dated
//! data, kept by `warming-service`), else an estimate from the configured
//! input price, flagged as such.

use crate::model_prefix::longest_prefix;
use crate::Economics;

/// One model's prices, dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrices {
    /// Uncached input.
    pub input: f64,
    /// Writing the cache with a 5-minute TTL (OpenAI: the input price, as
    /// it charges nothing extra for caching).
    pub cache_write_5m: f64,
    /// Writing the cache with a 1-hour TTL (Anthropic's extended cache).
    pub cache_write_1h: f64,
    /// Reading the cache.
    pub cache_read: f64,
    /// Output.
    pub output: f64,
    /// How long the longer retention keeps a prefix, seconds (Anthropic's
    /// 1-hour cache: 3 600; OpenAI's 24-hour retention: 86 400, for the
    /// models that offer it); 0 when the model offers none. Writes into it
    /// cost `cache_write_1h`.
    pub long_ttl_secs: u64,
    /// Keeping a million tokens in an explicit cache for an hour (Gemini's
    /// `cachedContents`); 0 where the provider bills no storage.
    pub storage_per_hour: f64,
}

impl ModelPrices {
    /// Anthropic's pattern: writes at 1.25x (5 min) or 2x (1 h) the input
    /// price, reads at 0.1x.
    #[must_use]
    pub const fn anthropic(input: f64, output: f64) -> Self {
        Self {
            input,
            cache_write_5m: input * 1.25,
            cache_write_1h: input * 2.0,
            cache_read: input / 10.0,
            output,
            long_ttl_secs: 3_600,
            storage_per_hour: 0.0,
        }
    }

    /// The same prices, with a longer retention of `secs` seconds (OpenAI's
    /// 24-hour retention, for the models that offer it).
    #[must_use]
    pub const fn with_long_ttl_secs(mut self, secs: u64) -> Self {
        self.long_ttl_secs = secs;
        self
    }

    /// OpenAI's pattern: no charge for writing the cache, a discounted read.
    #[must_use]
    pub const fn openai(input: f64, cache_read: f64, output: f64) -> Self {
        Self {
            input,
            cache_write_5m: input,
            cache_write_1h: input,
            cache_read,
            output,
            long_ttl_secs: 0,
            storage_per_hour: 0.0,
        }
    }

    /// Google's Gemini pattern: OpenAI's (implicit cache reads discounted,
    /// no write premium), and explicit caches billed `storage_per_hour` per million
    /// tokens kept an hour.
    #[must_use]
    pub const fn gemini(input: f64, cache_read: f64, output: f64, storage_per_hour: f64) -> Self {
        Self {
            storage_per_hour,
            ..Self::openai(input, cache_read, output)
        }
    }

    /// Only an input price known: the default multipliers of `base`.
    #[must_use]
    pub fn from_input(input: f64, base: &Economics) -> Self {
        Self {
            input,
            cache_write_5m: input * base.write_multiplier,
            cache_write_1h: input * base.long_write_multiplier,
            cache_read: input * base.read_multiplier,
            output: input * base.output_multiplier,
            long_ttl_secs: base.long_ttl_ms / 1_000,
            storage_per_hour: base.storage_multiplier_per_hour * input,
        }
    }

    /// `base` priced at these prices: the core's cost formulas
    /// ([`Economics::usage_cost`], [`Economics::miss_avoided_cost`]) then
    /// give this model's dollars. `long_ttl` picks the 1-hour write price.
    ///
    /// ```
    /// use warming_core::{Economics, ModelPrices, Usage};
    /// let sonnet = ModelPrices::anthropic(3.0, 15.0);
    /// let economics = sonnet.economics(&Economics::default(), false);
    /// // A warm that read 1M tokens from the cache: $0.30.
    /// let read = Usage { cache_read_tokens: 1_000_000, ..Usage::default() };
    /// assert!((economics.usage_cost(&read) - 0.30).abs() < 1e-9);
    /// ```
    #[must_use]
    pub fn economics(&self, base: &Economics, long_ttl: bool) -> Economics {
        let input = self.input.max(f64::MIN_POSITIVE);
        let write = if long_ttl {
            self.cache_write_1h
        } else {
            self.cache_write_5m
        };
        Economics {
            input_price: self.input / 1e6,
            write_multiplier: write / input,
            read_multiplier: self.cache_read / input,
            output_multiplier: self.output / input,
            long_ttl_ms: self.long_ttl_secs.saturating_mul(1_000),
            long_write_multiplier: self.cache_write_1h / input,
            storage_multiplier_per_hour: self.storage_per_hour / input,
            ..*base
        }
    }
}

/// Where a model's prices came from.
#[derive(
    Debug, Clone, Copy, Default, Hash, PartialEq, Eq, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PriceSource {
    /// The deployment's own prices (overrides).
    Config,
    /// The embedder's list prices (`Config::list_prices`).
    List,
    /// Neither knows the model (or none is known yet): the base input price
    /// with the default multipliers.
    #[default]
    Estimate,
    /// The deployment's own engine (`Config::self_hosted`): its tokens are
    /// not billed, so what counts is engine time; the dollar figures are
    /// the estimate's, for the policies.
    Engine,
}

impl PriceSource {
    /// `config`, `list` or `estimate`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::List => "list",
            Self::Estimate => "estimate",
            Self::Engine => "engine",
        }
    }
}

/// The economics of a conversation on `model`: `base` (TTL, time, and the
/// input price of unknown models) priced at the longest matching prefix of
/// `overrides` (the deployment's own prices), else of `list` (the
/// embedder's list prices; `warming-service` keeps the providers'), else
/// estimated from `base`. The 1-hour cache (`long_ttl`) lives an hour and
/// writes at its own price. The one pricing rule of the policies, the
/// guards and the metrics.
///
/// ```
/// use warming_core::{economics_for, Economics, ModelPrices, PriceSource};
/// let base = Economics::default();
/// let list = [("claude-haiku-4-5".to_owned(), ModelPrices::anthropic(1.0, 5.0))];
/// let (haiku, source) = economics_for(Some("claude-haiku-4-5-20251001"), false, &[], &list, &base);
/// assert_eq!(source, PriceSource::List);
/// assert!((haiku.input_price - 1e-6).abs() < 1e-15);
/// let (long, _) = economics_for(Some("claude-haiku-4-5"), true, &[], &list, &base);
/// assert_eq!((long.ttl_ms, long.write_multiplier), (3_600_000, 2.0));
/// let (_, source) = economics_for(Some("my-local-model"), false, &[], &list, &base);
/// assert_eq!(source, PriceSource::Estimate);
/// ```
#[must_use]
pub fn economics_for(
    model: Option<&str>,
    long_ttl: bool,
    overrides: &[(String, ModelPrices)],
    list: &[(String, ModelPrices)],
    base: &Economics,
) -> (Economics, PriceSource) {
    let find = |table: &[(String, ModelPrices)], model| {
        longest_prefix(model, table.iter().map(|(p, m)| (p.as_str(), *m)))
    };
    let known = model.and_then(|model| {
        find(overrides, model)
            .map(|prices| (prices, PriceSource::Config))
            .or_else(|| find(list, model).map(|prices| (prices, PriceSource::List)))
    });
    let (prices, source) = known.unwrap_or_else(|| {
        (
            ModelPrices::from_input(base.input_price * 1e6, base),
            PriceSource::Estimate,
        )
    });
    let mut economics = prices.economics(base, long_ttl);
    if long_ttl {
        economics.ttl_ms = 3_600_000;
    }
    (economics, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_price_alone_takes_the_default_multipliers() {
        let base = Economics::default();
        let p = ModelPrices::from_input(2.0, &base);
        let e = p.economics(&base, false);
        assert!((e.input_price - 2e-6).abs() < 1e-15);
        assert!((e.write_multiplier - base.write_multiplier).abs() < 1e-12);
        assert!((e.read_multiplier - base.read_multiplier).abs() < 1e-12);
    }

    #[test]
    fn configured_prices_win_over_the_list_by_longest_prefix() {
        let base = Economics::default();
        let overrides = [
            ("claude".to_owned(), ModelPrices::from_input(1.0, &base)),
            (
                "claude-sonnet".to_owned(),
                ModelPrices::from_input(2.0, &base),
            ),
        ];
        let list = [("gpt-4o".to_owned(), ModelPrices::openai(2.5, 1.25, 10.0))];
        let (e, source) = economics_for(Some("claude-sonnet-4-5"), false, &overrides, &list, &base);
        assert_eq!(source, PriceSource::Config);
        assert!((e.input_price - 2e-6).abs() < 1e-15);
        let (_, source) = economics_for(Some("gpt-4o"), false, &overrides, &list, &base);
        assert_eq!(source, PriceSource::List);
        let (_, source) = economics_for(None, false, &overrides, &list, &base);
        assert_eq!(source, PriceSource::Estimate);
    }
}
