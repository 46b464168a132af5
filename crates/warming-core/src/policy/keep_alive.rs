//! The keep-alive plan: how a conversation's prefix is kept while its user
//! is away, chosen by price. A replay (a warm) costs a cache read of the
//! whole prefix every interval; a provider's longer retention (Anthropic's
//! 1-hour cache, OpenAI's 24-hour retention) costs nothing while idle, a
//! premium on what each turn writes (Anthropic: 2x the input price instead
//! of 1.25x; OpenAI: none), and one write of the prefix into it when a
//! conversation moves there. Every price and length comes from the
//! conversation's [`Economics`] (the price table), so a model's prices
//! change the choice without code.

use serde::{Deserialize, Serialize};

use crate::Economics;

/// How a conversation's prefix is kept while its user is away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KeepAlive {
    #[default]
    /// Warms replay the prefix every interval.
    Replay,
    /// Nothing to do: the provider keeps the prefix at least as long as
    /// warming would.
    None,
    /// Ask the provider for its longer retention on the conversation's next
    /// request (the proxy rewrites it); replays go on until it did.
    Upgrade,
    /// Extend the cache's lifetime without a replay, where a provider
    /// offers it (explicit caches).
    Extend,
    /// The deployment's own engine is asked before each warm whether the
    /// prefix is still resident: only an evicted one is replayed.
    Resident,
    /// The deployment's own engine saves the prefix to its disk once the
    /// user is idle and restores it when the next turn arrives: nothing is
    /// replayed meanwhile.
    Saved,
}

impl KeepAlive {
    /// The plan's stable name: `replay`, `none`, `upgrade`, `extend`,
    /// `resident`, `saved`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Replay => "replay",
            Self::None => "none",
            Self::Upgrade => "upgrade",
            Self::Extend => "extend",
            Self::Resident => "resident",
            Self::Saved => "saved",
        }
    }
}

/// Why a plan was chosen. Dollars are per idle gap, at the conversation's
/// prices; `Display` says it in words.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "code",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum PlanReason {
    /// Its requests ask for the longer retention, which outlives how long
    /// warming would keep the conversation (the idle cap) or its gaps.
    Retained {
        /// How long the provider keeps it, ms.
        ttl_ms: u64,
    },
    /// Its requests ask for the longer retention, but warming keeps it
    /// longer than that: replays at the long interval do the rest.
    RetainedShorterThanIdle {
        /// How long the provider keeps it, ms.
        ttl_ms: u64,
    },
    /// The longer retention costs less than replays: the next request asks
    /// for it.
    UpgradeCheaper {
        /// Replays' expected cost per gap, dollars.
        replay: f64,
        /// The longer retention's, dollars.
        upgrade: f64,
    },
    /// The longer retention would cost less, but the operator does not let
    /// the proxy rewrite requests (`--upgrade-cache off`).
    UpgradeNotAllowed {
        /// Replays' expected cost per gap, dollars.
        replay: f64,
        /// The longer retention's, dollars.
        upgrade: f64,
    },
    /// Replays cost less than the longer retention would.
    ReplayCheaper {
        /// Replays' expected cost per gap, dollars.
        replay: f64,
        /// The longer retention's, dollars.
        upgrade: f64,
    },
    /// The model offers no longer retention (or its prices are unknown).
    NoLongerRetention,
    /// Fewer than two gaps seen: too few to judge a retention that costs a
    /// premium.
    TooFewGaps,
    /// Its requests read an explicit cache (Gemini's `cachedContent`),
    /// whose lifetime the provider lets warming extend without a replay:
    /// each extension buys storage, not reads.
    ExplicitCache,
    /// The deployment's own engine tells whether the prefix is still
    /// resident: a replay is sent only when it is not.
    EngineChecks,
    /// The deployment's own engine saves and restores the prefix: it is
    /// saved once per idle gap and restored at the next turn.
    EngineSaves,
}

impl std::fmt::Display for PlanReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hours = |ms: u64| ms as f64 / 3_600_000.0;
        match *self {
            Self::Retained { ttl_ms } => write!(
                f,
                "its requests ask the provider to keep the prefix {:.0} h, as long as warming \
                 would: nothing to replay",
                hours(ttl_ms)
            ),
            Self::RetainedShorterThanIdle { ttl_ms } => write!(
                f,
                "its requests ask the provider to keep the prefix {:.0} h; warming keeps it \
                 longer, with replays at the long interval",
                hours(ttl_ms)
            ),
            Self::UpgradeCheaper { replay, upgrade } => write!(
                f,
                "the longer retention costs ${upgrade:.4} a gap against ${replay:.4} of replays: \
                 its next request through the proxy asks for it"
            ),
            Self::UpgradeNotAllowed { replay, upgrade } => write!(
                f,
                "the longer retention would cost ${upgrade:.4} a gap against ${replay:.4} of \
                 replays; --upgrade-cache auto lets the proxy ask for it"
            ),
            Self::ReplayCheaper { replay, upgrade } => write!(
                f,
                "replays cost ${replay:.4} a gap against ${upgrade:.4} for the longer retention"
            ),
            Self::NoLongerRetention => {
                f.write_str("its model offers no longer retention (price table): replays keep it")
            }
            Self::TooFewGaps => f.write_str(
                "fewer than two gaps seen: replays keep it until its rhythm says otherwise",
            ),
            Self::ExplicitCache => f.write_str(
                "its requests read an explicit cache: its lifetime is extended while the user \
                 is away, nothing is replayed",
            ),
            Self::EngineChecks => f.write_str(
                "the engine says whether the prefix is still resident: each warm asks first \
                 and replays only an evicted prefix (--engine)",
            ),
            Self::EngineSaves => f.write_str(
                "the engine saves the prefix to its disk once the user is idle and restores \
                 it before the next turn: nothing is replayed meanwhile (--engine-save-dir)",
            ),
        }
    }
}

/// A conversation's keep-alive plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// What keeps the prefix.
    pub keep_alive: KeepAlive,
    /// Why.
    pub why: PlanReason,
    /// Its expected cost per hour the user is away, dollars: replays'
    /// reads; nothing for a retention the provider keeps (its premium is
    /// paid on the turns' writes, in `why`).
    pub cost_per_idle_hour: f64,
}

/// What the choice weighs: one conversation, as the engine knows it.
#[derive(Debug, Clone, Copy)]
pub struct PlanInputs<'a> {
    /// Its prices, TTLs and the longer retention's.
    pub economics: &'a Economics,
    /// Its requests already ask for the longer retention.
    pub asks_long: bool,
    /// Its latest gaps between turns, ms.
    pub gaps: &'a [u64],
    /// Time between replays, ms.
    pub interval_ms: u64,
    /// How long warming keeps an idle conversation, ms (`None`: no cap).
    pub max_idle_ms: Option<u64>,
    /// The prefix a replay reads, tokens.
    pub prefix_tokens: u64,
    /// What a turn adds to the prefix, tokens: written at the retention's
    /// price.
    pub new_tokens_per_turn: u64,
    /// The operator lets the proxy ask for the longer retention.
    pub upgrade_allowed: bool,
    /// Its requests read an explicit cache whose lifetime can be extended
    /// ([`crate::Template::explicit_cache`]).
    pub explicit_cache: bool,
    /// What the deployment's own engine can do instead of a replay.
    pub engine: EngineSupport,
}

/// What the deployment's own engine (llama.cpp's server, ...) can do to keep
/// a prefix without a replay: the embedder sets it from what its engine
/// adapter found ([`crate::ConfigBuilder::engine_support`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EngineSupport {
    /// No engine port: warms replay.
    #[default]
    None,
    /// It tells whether a conversation's prefix is still resident
    /// ([`KeepAlive::Resident`]).
    Residency,
    /// It also saves a prefix to disk and restores it
    /// ([`KeepAlive::Saved`]).
    SaveRestore,
}

/// The cheapest way to keep this conversation's prefix.
///
/// ```
/// use warming_core::{choose_plan, Economics, KeepAlive, PlanInputs};
/// // Sonnet-like prices with the 1-hour cache, gaps of 40 minutes.
/// let economics = Economics { long_ttl_ms: 3_600_000, ..Economics::default() };
/// let inputs = PlanInputs {
///     economics: &economics,
///     asks_long: false,
///     gaps: &[2_400_000; 4],
///     interval_ms: 240_000,
///     max_idle_ms: Some(3_600_000),
///     prefix_tokens: 50_000,
///     new_tokens_per_turn: 500,
///     upgrade_allowed: true,
///     explicit_cache: false,
///     engine: warming_core::EngineSupport::None,
/// };
/// assert_eq!(choose_plan(&inputs).keep_alive, KeepAlive::Upgrade);
/// // Gaps of a minute need no replay at all: the 5-minute cache is enough.
/// let short = PlanInputs { gaps: &[60_000, 60_000, 60_000], ..inputs };
/// assert_eq!(choose_plan(&short).keep_alive, KeepAlive::Replay);
/// ```
#[must_use]
pub fn choose_plan(inputs: &PlanInputs<'_>) -> Plan {
    let e = inputs.economics;
    let prefix = inputs.prefix_tokens as f64;
    let interval = inputs.interval_ms.max(1);
    let replay_per_hour =
        3_600_000.0 / interval as f64 * e.read_multiplier * prefix * e.input_price;
    let replay = |why| Plan {
        keep_alive: KeepAlive::Replay,
        why,
        cost_per_idle_hour: replay_per_hour,
    };
    let engine = |keep_alive, why| Plan {
        keep_alive,
        why,
        // Engine time, not dollars: a check or a save reads no tokens.
        cost_per_idle_hour: 0.0,
    };
    match inputs.engine {
        EngineSupport::Residency => {
            return engine(KeepAlive::Resident, PlanReason::EngineChecks);
        }
        EngineSupport::SaveRestore => return engine(KeepAlive::Saved, PlanReason::EngineSaves),
        EngineSupport::None => {}
    }
    if inputs.explicit_cache {
        return Plan {
            keep_alive: KeepAlive::Extend,
            why: PlanReason::ExplicitCache,
            cost_per_idle_hour: e
                .storage_cost(inputs.prefix_tokens, std::time::Duration::from_secs(3_600)),
        };
    }
    let long = e.long_ttl_ms;
    if inputs.asks_long && long > 0 {
        let outlives = match inputs.max_idle_ms {
            Some(cap) => long >= cap,
            None => !inputs.gaps.is_empty() && inputs.gaps.iter().all(|&g| g <= long),
        };
        return if outlives {
            Plan {
                keep_alive: KeepAlive::None,
                why: PlanReason::Retained { ttl_ms: long },
                cost_per_idle_hour: 0.0,
            }
        } else {
            replay(PlanReason::RetainedShorterThanIdle { ttl_ms: long })
        };
    }
    if long == 0 || inputs.asks_long {
        return replay(PlanReason::NoLongerRetention);
    }
    let premium = (e.long_write_multiplier - e.write_multiplier).max(0.0);
    // With a premium, moving the prefix into the longer retention writes
    // it there once; without one (OpenAI), the same cache is kept longer.
    let moving = if premium > 0.0 {
        (e.long_write_multiplier - e.read_multiplier).max(0.0) * prefix * e.input_price
    } else {
        0.0
    };
    if premium > 0.0 && inputs.gaps.len() < 2 {
        return replay(PlanReason::TooFewGaps);
    }
    // Per gap, what keeping the short cache costs: the replays that bridge
    // it, or the miss if that is cheaper (a policy may take it), and the
    // miss after the idle cap; and what the longer retention costs: its
    // premium on the turn's new tokens, and a miss past its own TTL.
    let (warm, miss) = (
        e.warm_cost(inputs.prefix_tokens),
        e.miss_cost(inputs.prefix_tokens),
    );
    let cap = inputs.max_idle_ms.unwrap_or(u64::MAX);
    let (mut replays, mut longer) = (0.0, 0.0);
    for &gap in inputs.gaps {
        if gap > e.ttl_ms {
            let bridged = (gap.min(cap) / interval) as f64 * warm;
            let lost = if gap > cap.saturating_add(e.ttl_ms) {
                miss
            } else {
                0.0
            };
            replays += (bridged + lost).min(miss);
        }
        longer += premium * inputs.new_tokens_per_turn as f64 * e.input_price;
        if gap > long {
            longer += miss;
        }
    }
    let n = inputs.gaps.len().max(1) as f64;
    let replay_gap = replays / n;
    let upgrade_gap = (longer + moving) / n;
    let (replay_gap, upgrade_gap) = (round(replay_gap), round(upgrade_gap));
    let cheaper = upgrade_gap < replay_gap || (premium == 0.0 && upgrade_gap <= replay_gap);
    match (cheaper, inputs.upgrade_allowed) {
        (true, true) => Plan {
            keep_alive: KeepAlive::Upgrade,
            why: PlanReason::UpgradeCheaper {
                replay: replay_gap,
                upgrade: upgrade_gap,
            },
            cost_per_idle_hour: replay_per_hour,
        },
        (true, false) => replay(PlanReason::UpgradeNotAllowed {
            replay: replay_gap,
            upgrade: upgrade_gap,
        }),
        (false, _) => replay(PlanReason::ReplayCheaper {
            replay: replay_gap,
            upgrade: upgrade_gap,
        }),
    }
}

/// Dollars to a millionth of a cent: two plans within that cost the same.
fn round(dollars: f64) -> f64 {
    (dollars * 1e8).round() / 1e8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(economics: &'a Economics, gaps: &'a [u64]) -> PlanInputs<'a> {
        PlanInputs {
            economics,
            asks_long: false,
            gaps,
            interval_ms: 240_000,
            max_idle_ms: Some(3_600_000),
            prefix_tokens: 50_000,
            new_tokens_per_turn: 500,
            upgrade_allowed: true,
            explicit_cache: false,
            engine: EngineSupport::None,
        }
    }

    fn anthropic() -> Economics {
        Economics {
            long_ttl_ms: 3_600_000,
            ..Economics::default()
        }
    }

    fn openai() -> Economics {
        Economics {
            write_multiplier: 1.0,
            long_write_multiplier: 1.0,
            long_ttl_ms: 86_400_000,
            ..Economics::default()
        }
    }

    #[test]
    fn a_request_asking_for_the_longer_retention_needs_no_replay_within_the_idle_cap() {
        let e = openai();
        let plan = choose_plan(&PlanInputs {
            asks_long: true,
            ..inputs(&e, &[])
        });
        assert_eq!(plan.keep_alive, KeepAlive::None);
        assert_eq!(plan.cost_per_idle_hour, 0.0);
        // Without an idle cap, a 1-hour cache is enough only for gaps that fit.
        let e = anthropic();
        let uncapped = PlanInputs {
            asks_long: true,
            max_idle_ms: None,
            ..inputs(&e, &[600_000, 7_200_000])
        };
        assert_eq!(choose_plan(&uncapped).keep_alive, KeepAlive::Replay);
    }

    #[test]
    fn openais_retention_costs_nothing_more_so_it_is_asked_for_from_the_start() {
        let e = openai();
        let plan = choose_plan(&inputs(&e, &[]));
        assert_eq!(plan.keep_alive, KeepAlive::Upgrade, "{}", plan.why);
        let off = choose_plan(&PlanInputs {
            upgrade_allowed: false,
            ..inputs(&e, &[])
        });
        assert!(matches!(off.why, PlanReason::UpgradeNotAllowed { .. }));
        assert!(off.why.to_string().contains("--upgrade-cache auto"));
    }

    #[test]
    fn the_one_hour_cache_wins_only_where_replays_would_cost_more() {
        let e = anthropic();
        // 40-minute gaps: 10 replays each (1x the prefix) against a premium
        // on 500 new tokens and a move (1.9x the prefix) over four gaps.
        let long_gaps = choose_plan(&inputs(&e, &[2_400_000; 4]));
        assert_eq!(
            long_gaps.keep_alive,
            KeepAlive::Upgrade,
            "{}",
            long_gaps.why
        );
        // 20-minute gaps, three of them: 0.5x a gap does not pay the move yet.
        let fewer = choose_plan(&inputs(&e, &[1_200_000; 3]));
        assert_eq!(fewer.keep_alive, KeepAlive::Replay, "{}", fewer.why);
        // 6-minute gaps: one replay each is cheaper than moving 50k tokens.
        let short_gaps = choose_plan(&inputs(&e, &[360_000; 3]));
        assert_eq!(
            short_gaps.keep_alive,
            KeepAlive::Replay,
            "{}",
            short_gaps.why
        );
        assert!(matches!(short_gaps.why, PlanReason::ReplayCheaper { .. }));
        // One gap is too few to pay a premium on.
        let one = choose_plan(&inputs(&e, &[1_200_000]));
        assert_eq!(one.why, PlanReason::TooFewGaps);
    }

    #[test]
    fn a_model_without_a_longer_retention_is_replayed_and_says_why() {
        let e = Economics::default();
        let plan = choose_plan(&inputs(&e, &[1_200_000; 4]));
        assert_eq!(plan.why, PlanReason::NoLongerRetention);
        assert!(plan.cost_per_idle_hour > 0.0);
    }

    #[test]
    fn an_explicit_cache_is_extended_at_its_storage_price_not_replayed() {
        let gemini = crate::ModelPrices::gemini(0.30, 0.03, 2.50, 1.00)
            .economics(&Economics::default(), false);
        let plan = choose_plan(&PlanInputs {
            explicit_cache: true,
            ..inputs(&gemini, &[])
        });
        assert_eq!(plan.keep_alive, KeepAlive::Extend);
        assert_eq!(plan.why, PlanReason::ExplicitCache);
        // 50 000 tokens kept an hour at $1.00 per million.
        assert!((plan.cost_per_idle_hour - 0.05).abs() < 1e-9);
        assert_eq!(
            choose_plan(&inputs(&gemini, &[])).keep_alive,
            KeepAlive::Replay
        );
    }
}
