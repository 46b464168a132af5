//! Prometheus metrics (`GET /metrics`).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, linear_buckets, Histogram};
use prometheus_client::registry::Registry;
use warming_core::{economics_for, Economics, ModelPrices, WarmOutcome, WarmRecord, WarmTrigger};

/// Label of warms by outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Label of the spend caps: `server` or `conversation`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabel {
    scope: &'static str,
}

type DollarCounter = Counter<f64, AtomicU64>;

/// Prices by model, for the cost figures: the configured overrides, then
/// the core's list prices, then the configured input price with the
/// default multipliers (an estimate). The cache multipliers of list prices
/// are the model's own; the TTL and time are the policies' [`Economics`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pricing {
    /// Prices set in the configuration, by model-name prefix (the longest
    /// matching prefix wins), over the list prices.
    pub overrides: HashMap<String, ModelPrices>,
    /// The upstream is the deployment's own engine: dollar figures are
    /// labelled `price="engine"` (estimates that bill nobody).
    pub self_hosted: bool,
}

impl Pricing {
    /// The overrides as the core takes them ([`warming_core::Config`]'s
    /// `price_overrides`).
    #[must_use]
    pub fn overrides(&self) -> Vec<(String, ModelPrices)> {
        self.overrides
            .iter()
            .map(|(model, prices)| (model.clone(), *prices))
            .collect()
    }
}

/// Label of dollar figures by the source of their price.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriceLabel {
    price: &'static str,
}

/// Where the count of dropped log lines is read.
struct DroppedLines(Box<dyn Fn() -> u64 + Send + Sync>);

impl std::fmt::Debug for DroppedLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DroppedLines")
    }
}

/// Every metric the service exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Warms no return repaid.
    unrepaid_warms: Counter,
    /// The daily spend caps, by scope.
    spend_caps: Family<ScopeLabel, Gauge<f64, AtomicU64>>,
    /// Log lines the writer dropped, as last read from `log_drops`.
    log_lines_dropped: Counter,
    log_lines_dropped_seen: AtomicU64,
    log_drops: std::sync::OnceLock<DroppedLines>,
    warms: Family<OutcomeLabel, Counter>,
    turns: Family<OutcomeLabel, Counter>,
    returning_turns: Family<OutcomeLabel, Counter>,
    warm_latency: Histogram,
    warm_lateness: Histogram,
    cache_hit_pct: Histogram,
    tokens_read: Counter,
    tokens_written: Counter,
    armed: Gauge,
    subscribers: Gauge,
    storage_write: Histogram,
    warm_cost: Family<PriceLabel, DollarCounter>,
    miss_cost_avoided: Family<PriceLabel, DollarCounter>,
    prefill_avoided: DollarCounter,
    spent_today: Gauge<f64, AtomicU64>,
    saved_today: Gauge<f64, AtomicU64>,
    /// Dollar figures are an engine's (`price="engine"`).
    self_hosted: bool,
    /// Prices set in the configuration, over the list prices.
    price_overrides: Vec<(String, ModelPrices)>,
    /// The providers' list prices (`pricing::LIST_PRICES`).
    list_prices: Vec<(String, ModelPrices)>,
    /// Cache multipliers and TTL.
    economics: Economics,
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    #[must_use]
    pub fn new(pricing: Pricing, economics: Economics) -> Self {
        let mut registry = Registry::with_prefix("warming");
        let warms = Family::<OutcomeLabel, Counter>::default();
        registry.register("warms", "Warms sent, by outcome", warms.clone());
        let turns = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "proxied_turns",
            "Turns seen by the proxy, by cache outcome",
            turns.clone(),
        );
        let returning_turns = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "returning_turns",
            "Proxied turns of a conversation that had a turn before, by cache outcome: the hit share is what warming is for",
            returning_turns.clone(),
        );
        let warm_latency = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "warm_latency_seconds",
            "Time from sending a warm to its answer",
            warm_latency.clone(),
        );
        let warm_lateness = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "warm_lateness_seconds",
            "Time from a warm's deadline to its sending",
            warm_lateness.clone(),
        );
        let cache_hit_pct = Histogram::new(linear_buckets(10.0, 10.0, 10));
        registry.register(
            "warm_cache_hit_percent",
            "Share of each warm's prompt read from the cache",
            cache_hit_pct.clone(),
        );
        let tokens_read = Counter::default();
        registry.register(
            "cache_read_tokens",
            "Prompt tokens warms read from the cache",
            tokens_read.clone(),
        );
        let tokens_written = Counter::default();
        registry.register(
            "cache_write_tokens",
            "Prompt tokens warms wrote to the cache",
            tokens_written.clone(),
        );
        let armed = Gauge::default();
        registry.register(
            "armed_conversations",
            "Conversations with a warm scheduled",
            armed.clone(),
        );
        let subscribers = Gauge::default();
        registry.register(
            "surface_subscribers",
            "Open WebSocket surface connections",
            subscribers.clone(),
        );
        let storage_write = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "storage_write_seconds",
            "Time from submitting a settings write to its commit",
            storage_write.clone(),
        );
        let warm_cost = Family::<PriceLabel, DollarCounter>::default();
        registry.register(
            "estimated_warm_cost_dollars",
            "Estimated cost of the warms, by the source of the price (config, list or estimate)",
            warm_cost.clone(),
        );
        let miss_cost_avoided = Family::<PriceLabel, DollarCounter>::default();
        registry.register(
            "estimated_miss_cost_avoided_dollars",
            "Estimated cache re-writes avoided: turns after an idle gap longer than the TTL that found the cache warm, by the source of the price; savings = this minus the warm cost",
            miss_cost_avoided.clone(),
        );
        let prefill_avoided = DollarCounter::default();
        registry.register(
            "prefill_seconds_avoided",
            "Seconds of prefill the misses avoided did not wait for (their prefix at the prefill speed)",
            prefill_avoided.clone(),
        );
        let spent_today = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "spent_today_dollars",
            "What warms cost today (UTC), at each model's prices: the count the daily caps use, kept across restarts",
            spent_today.clone(),
        );
        let saved_today = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "saved_today_dollars",
            "Cache re-writes returning turns avoided today (UTC), net of the read they paid instead",
            saved_today.clone(),
        );
        let spend_caps = Family::<ScopeLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "spend_cap_dollars",
            "The daily spend caps set (--max-spend-per-day: scope server; --max-spend-per-conversation-day: scope conversation); absent when none",
            spend_caps.clone(),
        );
        let unrepaid_warms = Counter::default();
        registry.register(
            "unrepaid_warms",
            "Warms of idle gaps that ended in no miss avoided: the user came back before the cache would have expired, or the turn did not read what they kept",
            unrepaid_warms.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stderr was slow, full or closed (logging never blocks or stops the service)",
            log_lines_dropped.clone(),
        );
        Self {
            unrepaid_warms,
            spend_caps,
            log_lines_dropped,
            log_lines_dropped_seen: AtomicU64::new(0),
            log_drops: std::sync::OnceLock::new(),
            registry,
            warms,
            turns,
            returning_turns,
            warm_latency,
            warm_lateness,
            cache_hit_pct,
            tokens_read,
            tokens_written,
            armed,
            subscribers,
            storage_write,
            warm_cost,
            miss_cost_avoided,
            prefill_avoided,
            spent_today,
            saved_today,
            self_hosted: pricing.self_hosted,
            price_overrides: pricing.overrides(),
            list_prices: crate::pricing::list(),
            economics,
        }
    }

    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        if let Some(DroppedLines(dropped)) = self.log_drops.get() {
            let now = dropped();
            let before = self
                .log_lines_dropped_seen
                .swap(now, std::sync::atomic::Ordering::Relaxed);
            self.log_lines_dropped.inc_by(now.saturating_sub(before));
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Reads the count of dropped log lines from `dropped` at every render
    /// (`warming_log_lines_dropped_total`); the first call wins.
    pub fn count_dropped_log_lines(&self, dropped: Box<dyn Fn() -> u64 + Send + Sync>) {
        let _ = self.log_drops.set(DroppedLines(dropped));
    }

    /// A warm (or a proxied turn) finished; `model` and `long_ttl` are its
    /// template's.
    pub fn warm(&self, record: &WarmRecord, model: Option<&str>, long_ttl: bool) {
        if record.outcome == WarmOutcome::Stopped {
            self.warms
                .get_or_create(&OutcomeLabel { outcome: "stopped" })
                .inc();
            return;
        }
        if record.trigger == WarmTrigger::Turn {
            self.turns
                .get_or_create(&OutcomeLabel {
                    outcome: record.outcome.as_str(),
                })
                .inc();
            return;
        }
        self.warms
            .get_or_create(&OutcomeLabel {
                outcome: record.outcome.as_str(),
            })
            .inc();
        self.warm_latency
            .observe(record.latency_ms() as f64 / 1000.0);
        self.warm_lateness
            .observe(record.started_at.millis_since(record.due_at) as f64 / 1000.0);
        if let Some(pct) = record.pct {
            self.cache_hit_pct.observe(pct);
        }
        let Some(usage) = record
            .usage
            .filter(|_| record.outcome != WarmOutcome::Failed)
        else {
            return;
        };
        self.tokens_read.inc_by(usage.cache_read_tokens);
        self.tokens_written.inc_by(usage.cache_write_tokens);
        let (economics, price) = self.economics_for(model, long_ttl);
        self.warm_cost
            .get_or_create(&PriceLabel {
                price: price.as_str(),
            })
            .inc_by(economics.usage_cost(&usage));
    }

    /// A turn came back to a warm cache after a gap longer than the TTL
    /// (the core's judgement): it read `tokens` instead of re-writing them.
    pub fn miss_avoided(&self, tokens: u64, model: Option<&str>, long_ttl: bool) {
        let (economics, price) = self.economics_for(model, long_ttl);
        self.miss_cost_avoided
            .get_or_create(&PriceLabel {
                price: price.as_str(),
            })
            .inc_by(economics.miss_avoided_cost(tokens));
        self.prefill_avoided
            .inc_by(tokens as f64 / economics.prefill_tokens_per_sec.max(1.0));
    }

    /// The core's pricing rule, with the engine's label when self-hosted.
    fn economics_for(
        &self,
        model: Option<&str>,
        long_ttl: bool,
    ) -> (Economics, warming_core::PriceSource) {
        let (economics, price) = economics_for(
            model,
            long_ttl,
            &self.price_overrides,
            &self.list_prices,
            &self.economics,
        );
        let price = if self.self_hosted {
            warming_core::PriceSource::Engine
        } else {
            price
        };
        (economics, price)
    }

    /// A proxied turn of a conversation that had one before, by how it
    /// found the cache.
    pub fn returning_turn(&self, record: &WarmRecord) {
        self.returning_turns
            .get_or_create(&OutcomeLabel {
                outcome: record.outcome.as_str(),
            })
            .inc();
    }

    /// A return that avoided no miss: its gap's `warms` bought nothing.
    pub fn unrepaid_warms(&self, warms: u32) {
        self.unrepaid_warms.inc_by(u64::from(warms));
    }

    /// The daily spend caps in force, dollars (`0`: none, not exported).
    pub fn set_spend_caps(&self, per_day: f64, per_conversation_day: f64) {
        for (scope, cap) in [("server", per_day), ("conversation", per_conversation_day)] {
            if cap > 0.0 {
                self.spend_caps
                    .get_or_create(&ScopeLabel { scope })
                    .set(cap);
            }
        }
    }

    /// What warms spent and returns saved today, from the engine.
    pub fn set_today(&self, today: warming_core::MoneyToday) {
        self.spent_today.set(today.spent_dollars);
        self.saved_today.set(today.saved_dollars);
    }

    /// How many conversations are armed now.
    pub fn set_armed(&self, armed: usize) {
        self.armed.set(i64::try_from(armed).unwrap_or(i64::MAX));
    }

    /// A surface connection opened (`+1`) or closed (`-1`).
    pub fn subscribers(&self, delta: i64) {
        self.subscribers.inc_by(delta);
    }

    /// A settings write committed (or failed) after `elapsed`.
    pub fn storage_write(&self, elapsed: Duration) {
        self.storage_write.observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use warming_core::{ConversationId, Timestamp, Usage, WarmTrigger};

    fn record(usage: Usage) -> WarmRecord {
        WarmRecord {
            conversation_id: ConversationId::new("c").unwrap(),
            due_at: Timestamp::from_millis(1_000),
            started_at: Timestamp::from_millis(1_002),
            finished_at: Timestamp::from_millis(1_302),
            trigger: WarmTrigger::Scheduled,
            outcome: WarmOutcome::Hit,
            expired: false,
            usage: Some(usage),
            pct: usage.cache_pct(),
            expected_pct: usage.retention_pct(),
            backend: Some(Arc::from("b")),
            error: None,
            kind: None,
            refreshes: None,
        }
    }

    fn value(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    #[test]
    fn warms_and_costs_show_up_in_the_exposition() {
        let mut overrides = HashMap::new();
        overrides.insert(
            "claude-test".to_owned(),
            ModelPrices::from_input(3.0, &Economics::default()),
        );
        let metrics = Metrics::new(
            Pricing {
                overrides,
                self_hosted: false,
            },
            Economics::default(),
        );
        metrics.warm(
            &record(Usage::anthropic(0, 1_000_000, 0)),
            Some("claude-test"),
            false,
        );
        metrics.miss_avoided(1_000_000, Some("claude-test"), false);
        let text = metrics.render();
        assert!(
            text.contains("warming_warms_total{outcome=\"hit\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("warming_cache_read_tokens_total 1000000"),
            "{text}"
        );
        // One warm read 1M tokens at 0.1 x $3/M; one turn avoided a 1.25x
        // re-write and paid a 0.1x read instead: 1.15 x $3.
        let warm_cost = value(
            &text,
            "warming_estimated_warm_cost_dollars_total{price=\"config\"}",
        );
        assert!((warm_cost - 0.3).abs() < 1e-9, "{text}");
        let avoided = value(
            &text,
            "warming_estimated_miss_cost_avoided_dollars_total{price=\"config\"}",
        );
        assert!((avoided - 3.45).abs() < 1e-9, "{text}");
    }

    #[test]
    fn models_are_priced_out_of_the_box_and_unknown_ones_are_flagged_estimates() {
        let metrics = Metrics::new(Pricing::default(), Economics::default());
        // Opus 4.1 lists $15/M input: a 1M-token read is $1.50.
        metrics.warm(
            &record(Usage::anthropic(0, 1_000_000, 0)),
            Some("claude-opus-4-1"),
            false,
        );
        // A model no table knows: the default $3/M input price, flagged.
        metrics.warm(
            &record(Usage::anthropic(0, 1_000_000, 0)),
            Some("gemma-3-270m"),
            false,
        );
        // The 1-hour cache: a re-write at 2x instead of a 0.1x read.
        metrics.miss_avoided(1_000_000, Some("claude-opus-4-1"), true);
        let text = metrics.render();
        let list = value(
            &text,
            "warming_estimated_warm_cost_dollars_total{price=\"list\"}",
        );
        assert!((list - 1.5).abs() < 1e-9, "{text}");
        let estimate = value(
            &text,
            "warming_estimated_warm_cost_dollars_total{price=\"estimate\"}",
        );
        assert!((estimate - 0.3).abs() < 1e-9, "{text}");
        let avoided = value(
            &text,
            "warming_estimated_miss_cost_avoided_dollars_total{price=\"list\"}",
        );
        assert!((avoided - 28.5).abs() < 1e-9, "{text}");
    }
}
