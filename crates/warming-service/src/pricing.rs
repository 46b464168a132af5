//! The providers' list prices by model, as data: what warms cost and misses
//! would have cost, out of the box. Dollars per million tokens from
//! Anthropic's and OpenAI's published pricing pages, as of
//! [`LIST_PRICES_AS_OF`]. The longer retention each offers: Anthropic's
//! 1-hour cache for every model ("Prompt caching": writes at 2x the input
//! price), OpenAI's 24-hour retention (`prompt_cache_retention: "24h"`,
//! OpenAI's "Prompt caching" guide and Azure OpenAI's "Prompt caching"
//! page: the same price as the in-memory one) for the models those pages
//! list (the GPT-5 family's full models and `gpt-4.1`), none for the rest.
//! Google's Gemini models from its "Gemini Developer API pricing" page
//! (prompts up to 200k tokens): input, context-cache reads, output, and
//! the explicit caches' storage per million tokens an hour; no longer
//! retention to buy (an explicit cache is kept by extending it). Prices
//! change: a deployment overrides or extends
//! them per model with `[prices]` in its configuration. The engine is handed
//! them (`warming_core::Config::list_prices`): the table is data the service
//! loads, not a decision of the core.

use warming_core::ModelPrices;

/// The day the figures of [`LIST_PRICES`] were taken.
pub const LIST_PRICES_AS_OF: &str = "2026-11-24";

/// OpenAI's extended retention, seconds: "up to a maximum of 24 hours".
const OPENAI_EXTENDED_SECS: u64 = 86_400;

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
    (
        "gpt-5",
        ModelPrices::openai(1.25, 0.125, 10.0).with_long_ttl_secs(OPENAI_EXTENDED_SECS),
    ),
    ("gpt-5-mini", ModelPrices::openai(0.25, 0.025, 2.0)),
    ("gpt-5-nano", ModelPrices::openai(0.05, 0.005, 0.4)),
    (
        "gpt-4.1",
        ModelPrices::openai(2.0, 0.5, 8.0).with_long_ttl_secs(OPENAI_EXTENDED_SECS),
    ),
    ("gpt-4.1-mini", ModelPrices::openai(0.4, 0.1, 1.6)),
    ("gpt-4.1-nano", ModelPrices::openai(0.1, 0.025, 0.4)),
    (
        "gemini-2.5-pro",
        ModelPrices::gemini(1.25, 0.125, 10.0, 4.5),
    ),
    ("gemini-2.5-flash", ModelPrices::gemini(0.3, 0.03, 2.5, 1.0)),
    (
        "gemini-2.5-flash-lite",
        ModelPrices::gemini(0.1, 0.01, 0.4, 1.0),
    ),
    ("gemini-3-pro", ModelPrices::gemini(2.0, 0.2, 12.0, 4.5)),
    ("gpt-4o", ModelPrices::openai(2.5, 1.25, 10.0)),
    ("gpt-4o-mini", ModelPrices::openai(0.15, 0.075, 0.6)),
    ("o3", ModelPrices::openai(2.0, 0.5, 8.0)),
    ("o4-mini", ModelPrices::openai(1.1, 0.275, 4.4)),
];

/// The list as the engine takes it.
#[must_use]
pub fn list() -> Vec<(String, ModelPrices)> {
    LIST_PRICES
        .iter()
        .map(|(prefix, prices)| ((*prefix).to_owned(), *prices))
        .collect()
}

/// The list prices of `model`: the longest matching prefix of
/// [`LIST_PRICES`], or `None` for a model the table does not know.
///
/// ```
/// use warming_service::pricing::list_prices;
/// assert_eq!(list_prices("claude-opus-4-5-20251101").unwrap().input, 5.0);
/// assert_eq!(list_prices("claude-opus-4-1").unwrap().input, 15.0);
/// assert_eq!(list_prices("gpt-4o-mini").unwrap().input, 0.15);
/// assert!(list_prices("gemma-3-270m").is_none());
/// ```
#[must_use]
pub fn list_prices(model: &str) -> Option<&'static ModelPrices> {
    LIST_PRICES
        .iter()
        .filter(|(prefix, _)| model.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, prices)| prices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warming_core::{Economics, Usage};

    #[test]
    fn the_longer_retention_is_an_hour_for_claude_a_day_for_the_models_openai_lists() {
        assert_eq!(
            list_prices("claude-haiku-4-5").unwrap().long_ttl_secs,
            3_600
        );
        assert_eq!(list_prices("gpt-5.1").unwrap().long_ttl_secs, 86_400);
        assert_eq!(
            list_prices("gpt-4.1-2025-04-14").unwrap().long_ttl_secs,
            86_400
        );
        assert_eq!(list_prices("gpt-4.1-mini").unwrap().long_ttl_secs, 0);
        assert_eq!(list_prices("gpt-4o").unwrap().long_ttl_secs, 0);
    }

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
}
