//! Providers' list prices by model, as data: what warms cost and misses
//! would have cost, out of the box.
//!
//! Dollars per million tokens from Anthropic's and OpenAI's published
//! pricing pages, as of [`LIST_PRICES_AS_OF`]. Prices change: a deployment
//! overrides or extends them per model with `[prices]` in its configuration,
//! and a model matching no entry is priced at the configured input price
//! with the default multipliers, flagged as an estimate.

use crate::model_prefix::longest_prefix;
use crate::Economics;

/// The day the figures of [`LIST_PRICES`] were taken.
pub const LIST_PRICES_AS_OF: &str = "2026-11-24";

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
}

impl ModelPrices {
    /// Anthropic's pattern: writes at 1.25x (5 min) or 2x (1 h) the input
    /// price, reads at 0.1x.
    const fn anthropic(input: f64, output: f64) -> Self {
        Self {
            input,
            cache_write_5m: input * 1.25,
            cache_write_1h: input * 2.0,
            cache_read: input / 10.0,
            output,
        }
    }

    /// OpenAI's pattern: no charge for writing the cache, a discounted read.
    const fn openai(input: f64, cache_read: f64, output: f64) -> Self {
        Self {
            input,
            cache_write_5m: input,
            cache_write_1h: input,
            cache_read,
            output,
        }
    }

    /// Only an input price known: the default multipliers of `base`.
    #[must_use]
    pub fn from_input(input: f64, base: &Economics) -> Self {
        Self {
            input,
            cache_write_5m: input * base.write_multiplier,
            cache_write_1h: input * 2.0,
            cache_read: input * base.read_multiplier,
            output: input * base.output_multiplier,
        }
    }

    /// `base` priced at these prices: the core's cost formulas
    /// ([`Economics::usage_cost`], [`Economics::miss_avoided_cost`]) then
    /// give this model's dollars. `long_ttl` picks the 1-hour write price.
    ///
    /// ```
    /// use warming_core::{list_prices, Economics, Usage};
    /// let sonnet = list_prices("claude-sonnet-4-5-20250929").unwrap();
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
            ..*base
        }
    }
}

/// Model-name prefix and its list prices; the longest matching prefix wins,
/// so dated names (`claude-sonnet-4-5-20250929`) find their family.
pub const LIST_PRICES: &[(&str, ModelPrices)] = &[
    ("claude-opus-4-6", ModelPrices::anthropic(5.0, 25.0)),
    ("claude-opus-4-5", ModelPrices::anthropic(5.0, 25.0)),
    ("claude-opus-4-1", ModelPrices::anthropic(15.0, 75.0)),
    ("claude-opus-4", ModelPrices::anthropic(15.0, 75.0)),
    ("claude-sonnet-4", ModelPrices::anthropic(3.0, 15.0)),
    ("claude-3-7-sonnet", ModelPrices::anthropic(3.0, 15.0)),
    ("claude-3-5-sonnet", ModelPrices::anthropic(3.0, 15.0)),
    ("claude-haiku-4-5", ModelPrices::anthropic(1.0, 5.0)),
    ("claude-3-5-haiku", ModelPrices::anthropic(0.8, 4.0)),
    ("claude-3-haiku", ModelPrices::anthropic(0.25, 1.25)),
    ("gpt-5", ModelPrices::openai(1.25, 0.125, 10.0)),
    ("gpt-5-mini", ModelPrices::openai(0.25, 0.025, 2.0)),
    ("gpt-5-nano", ModelPrices::openai(0.05, 0.005, 0.4)),
    ("gpt-4.1", ModelPrices::openai(2.0, 0.5, 8.0)),
    ("gpt-4.1-mini", ModelPrices::openai(0.4, 0.1, 1.6)),
    ("gpt-4.1-nano", ModelPrices::openai(0.1, 0.025, 0.4)),
    ("gpt-4o", ModelPrices::openai(2.5, 1.25, 10.0)),
    ("gpt-4o-mini", ModelPrices::openai(0.15, 0.075, 0.6)),
    ("o3", ModelPrices::openai(2.0, 0.5, 8.0)),
    ("o4-mini", ModelPrices::openai(1.1, 0.275, 4.4)),
];

/// Where a model's prices came from.
#[derive(
    Debug, Clone, Copy, Default, Hash, PartialEq, Eq, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PriceSource {
    /// The deployment's own prices (overrides).
    Config,
    /// The built-in [`LIST_PRICES`].
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
/// `overrides`, else of [`LIST_PRICES`], else estimated from `base`. The
/// 1-hour cache (`long_ttl`) lives an hour and writes at its own price.
/// The one pricing rule of the policies, the guards and the metrics.
///
/// ```
/// use warming_core::{economics_for, Economics, PriceSource};
/// let base = Economics::default();
/// let (haiku, source) = economics_for(Some("claude-haiku-4-5"), false, &[], &base);
/// assert_eq!(source, PriceSource::List);
/// assert!((haiku.input_price - 1e-6).abs() < 1e-15);
/// let (long, _) = economics_for(Some("claude-haiku-4-5"), true, &[], &base);
/// assert_eq!((long.ttl_ms, long.write_multiplier), (3_600_000, 2.0));
/// let (_, source) = economics_for(Some("my-local-model"), false, &[], &base);
/// assert_eq!(source, PriceSource::Estimate);
/// ```
#[must_use]
pub fn economics_for(
    model: Option<&str>,
    long_ttl: bool,
    overrides: &[(String, ModelPrices)],
    base: &Economics,
) -> (Economics, PriceSource) {
    let configured = |model| longest_prefix(model, overrides.iter().map(|(p, m)| (p.as_str(), *m)));
    let known = model.and_then(|model| {
        configured(model)
            .map(|prices| (prices, PriceSource::Config))
            .or_else(|| list_prices(model).map(|prices| (*prices, PriceSource::List)))
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

/// The list prices of `model`: the longest matching prefix of
/// [`LIST_PRICES`], or `None` for a model the table does not know.
///
/// ```
/// use warming_core::list_prices;
/// assert_eq!(list_prices("claude-opus-4-5-20251101").unwrap().input, 5.0);
/// assert_eq!(list_prices("claude-opus-4-1").unwrap().input, 15.0);
/// assert_eq!(list_prices("gpt-4o-mini").unwrap().input, 0.15);
/// assert!(list_prices("gemma-3-270m").is_none());
/// ```
#[must_use]
pub fn list_prices(model: &str) -> Option<&'static ModelPrices> {
    longest_prefix(model, LIST_PRICES.iter().map(|(p, m)| (*p, m)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Usage;

    #[test]
    fn every_entry_is_a_price_and_reads_cost_less_than_writes() {
        for (model, p) in LIST_PRICES {
            assert!(p.input > 0.0 && p.output > 0.0, "{model}");
            assert!(p.cache_read < p.input, "{model}: a read is a discount");
            assert!(p.cache_write_5m >= p.input, "{model}");
            assert!(p.cache_write_1h >= p.cache_write_5m, "{model}");
        }
    }

    #[test]
    fn a_miss_avoided_is_worth_the_rewrite_minus_the_read_at_the_models_prices() {
        let base = Economics::default();
        // Sonnet, 5 min: 1M tokens re-written at $3.75 instead of read at
        // $0.30.
        let sonnet = list_prices("claude-sonnet-4-5").unwrap();
        let e = sonnet.economics(&base, false);
        assert!((e.miss_avoided_cost(1_000_000) - 3.45).abs() < 1e-9);
        // The 1-hour cache re-writes at $6.
        let e = sonnet.economics(&base, true);
        assert!((e.miss_avoided_cost(1_000_000) - 5.70).abs() < 1e-9);
        // OpenAI charges no write premium: a miss costs the input price.
        let gpt = list_prices("gpt-4.1-2025-04-14")
            .unwrap()
            .economics(&base, false);
        assert!((gpt.miss_avoided_cost(1_000_000) - 1.5).abs() < 1e-9);
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            ..Usage::default()
        };
        assert!((gpt.usage_cost(&usage) - 10.0).abs() < 1e-9);
    }

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
        let (e, source) = economics_for(Some("claude-sonnet-4-5"), false, &overrides, &base);
        assert_eq!(source, PriceSource::Config);
        assert!((e.input_price - 2e-6).abs() < 1e-15);
        let (_, source) = economics_for(Some("gpt-4o"), false, &overrides, &base);
        assert_eq!(source, PriceSource::List);
        let (_, source) = economics_for(None, false, &overrides, &base);
        assert_eq!(source, PriceSource::Estimate);
    }
}
