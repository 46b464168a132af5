//! Runs one scenario over a trace: the real `warming-core` engine on a
//! virtual clock against a provider model (a TTL cache refreshed on every
//! read, prices, prefill time).

use std::sync::Arc;

use serde::Serialize;
use warming_core::{
    Config, ConversationId, Economics, IntervalLimits, KeepAlive, Policy, SettingsChange, Template,
    Timestamp, Usage, WarmAction, Warmer,
};

use crate::trace::Trace;

/// What a simulation compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scenario {
    /// Never warm.
    NoWarming,
    /// Warm under this policy (the real engine decides).
    Policy(Policy),
    /// No warms, the provider's 1-hour cache: longer TTL, dearer writes.
    OneHourCache,
    /// Knows when each user returns: per gap, the cheaper of warming through
    /// it or taking the miss; nothing for users who never return.
    Oracle,
    /// The cache chosen per conversation, as the live service does with
    /// `--upgrade-cache auto`: warmed on the 5-minute cache under
    /// `adaptive` while the core's keep-alive plan says replays cost less,
    /// moved to the 1-hour cache (its turns' writes dearer, no warms) once
    /// the plan says `upgrade` ([`warming_core::choose_plan`]).
    TtlChoice,
}

impl Scenario {
    /// The scenario's name in reports.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Self::NoWarming => "none".into(),
            Self::Policy(p) => p.to_string(),
            Self::OneHourCache => "1h-cache".into(),
            Self::Oracle => "oracle".into(),
            Self::TtlChoice => "adaptive+1h".into(),
        }
    }
}

/// The provider and schedule the simulation assumes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Prices, the 5-minute TTL, prefill speed and λ.
    pub economics: Economics,
    /// Time between warms, ms.
    pub interval_ms: u64,
    /// How long after the trace's last turn warms still count (forgotten
    /// conversations keep costing under `fixed`), ms.
    pub horizon_ms: u64,
    /// TTL of the 1-hour cache, ms.
    pub one_hour_ttl_ms: u64,
    /// Write price of the 1-hour cache relative to input.
    pub one_hour_write_multiplier: f64,
    /// Share of the trace's time span, from its start, that is played but
    /// not counted, in [0, 1): as in cache studies, a server is measured
    /// once it has seen some traffic (the prior it learns is persisted
    /// across restarts). A gap counts, with its warms and the turn that ends
    /// it, when it starts after the warm-up. Default 0: everything counts.
    pub warm_up: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            economics: Economics::default(),
            interval_ms: 240_000,
            horizon_ms: 3_600_000,
            one_hour_ttl_ms: 3_600_000,
            one_hour_write_multiplier: 2.0,
            warm_up: 0.0,
        }
    }
}

/// The figures of one scenario on one trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// The scenario.
    pub scenario: String,
    /// Dollars of input tokens: turns' reads and writes, and warms.
    pub token_cost: f64,
    /// Seconds users waited on prefills a cache hit would have saved.
    pub latency_lost_s: f64,
    /// `token_cost + λ × latency_lost_s`.
    pub total_cost: f64,
    /// Turns after the first of their conversation.
    pub returning_turns: u64,
    /// Of those, the ones that found the cache.
    pub hits: u64,
    /// Warms sent.
    pub warms: u64,
    /// Conversations by the keep-alive plan they ended on (`replay`,
    /// `none`, `upgrade`), for the scenarios the engine runs.
    pub plans: Plans,
    /// For `adaptive+1h`, per conversation in the trace's order: the turn
    /// (0-based) whose request moved it to the 1-hour cache, if one did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub moved_at_turns: Vec<Option<usize>>,
}

/// How many conversations ended on each keep-alive plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Plans {
    /// Kept by replays.
    pub replay: u64,
    /// Kept by the provider's longer retention.
    pub none: u64,
    /// About to ask for it.
    pub upgrade: u64,
}

impl Outcome {
    /// Share of returning turns that hit, in [0, 1].
    #[must_use]
    pub fn hit_rate(&self) -> f64 {
        if self.returning_turns == 0 {
            0.0
        } else {
            self.hits as f64 / self.returning_turns as f64
        }
    }
}

/// Costs as they accrue, priced by the core's [`Economics::usage_cost`], the
/// same formula the service's metrics use.
struct Ledger {
    /// The economics of the scenario's cache (its write price).
    economics: Economics,
    /// The 1-hour cache's write price relative to input, for conversations
    /// a scenario moves to it.
    long_write_multiplier: f64,
    /// Gaps starting before this time (ms into the trace) are not counted.
    counted_from_ms: u64,
    tokens: f64,
    latency_s: f64,
    returning: u64,
    hits: u64,
    warms: u64,
}

impl Ledger {
    fn new(economics: &Economics, write_multiplier: f64, counted_from_ms: u64) -> Self {
        Self {
            economics: Economics {
                write_multiplier,
                ..*economics
            },
            long_write_multiplier: write_multiplier,
            counted_from_ms,
            tokens: 0.0,
            latency_s: 0.0,
            returning: 0,
            hits: 0,
            warms: 0,
        }
    }

    /// Charges a request that read `read` tokens and wrote `written`.
    fn charge(&mut self, read: u64, written: u64) {
        self.tokens += self.economics.usage_cost(&Usage {
            cache_read_tokens: read,
            cache_write_tokens: written,
            ..Usage::default()
        });
    }

    /// A turn of a conversation on the 1-hour cache: as [`turn`](Self::turn),
    /// its writes at that cache's price.
    fn long_turn(&mut self, previous: Option<u64>, prefix: u64, hit: bool, since_ms: u64) {
        let short = self.economics.write_multiplier;
        self.economics.write_multiplier = self.long_write_multiplier;
        self.turn(previous, prefix, hit, since_ms);
        self.economics.write_multiplier = short;
    }

    /// A turn whose request carries `prefix` cacheable tokens, after a turn
    /// that left `previous` cached (`None` for a conversation's first turn);
    /// `hit` says whether that cache was still alive. `since_ms` is when the
    /// gap it ends began (the turn's own arrival for a first turn).
    fn turn(&mut self, previous: Option<u64>, prefix: u64, hit: bool, since_ms: u64) {
        if since_ms < self.counted_from_ms {
            return;
        }
        let Some(previous) = previous else {
            self.charge(0, prefix);
            return;
        };
        self.returning += 1;
        let total = prefix.max(previous);
        if hit {
            self.hits += 1;
            self.charge(previous, total - previous);
        } else {
            self.charge(0, total);
            self.latency_s += previous as f64 / self.economics.prefill_tokens_per_sec.max(1.0);
        }
    }

    /// A warm sent in the gap that began at `since_ms`.
    fn warm(&mut self, prefix: u64, hit: bool, since_ms: u64) {
        if since_ms < self.counted_from_ms {
            return;
        }
        self.warms += 1;
        if hit {
            self.charge(prefix, 0);
        } else {
            self.charge(0, prefix);
        }
    }

    fn outcome(self, scenario: &Scenario) -> Outcome {
        Outcome {
            scenario: scenario.name(),
            token_cost: self.tokens,
            latency_lost_s: self.latency_s,
            total_cost: self.tokens + self.economics.lambda_per_sec * self.latency_s,
            returning_turns: self.returning,
            hits: self.hits,
            warms: self.warms,
            plans: Plans::default(),
            moved_at_turns: Vec::new(),
        }
    }
}

/// Where the virtual clock starts: any epoch works; a realistic one keeps
/// timestamps looking like the service's.
const EPOCH_MS: u64 = 1_700_000_000_000;

/// Runs `scenario` over `trace`.
#[must_use]
pub fn simulate(trace: &Trace, scenario: Scenario, config: &SimConfig) -> Outcome {
    let economics = &config.economics;
    let counted_from = counted_from_ms(trace, config.warm_up);
    let ledger = Ledger::new(economics, economics.write_multiplier, counted_from);
    match scenario {
        Scenario::NoWarming => without_warms(trace, &scenario, ledger, economics.ttl_ms),
        Scenario::OneHourCache => without_warms(
            trace,
            &scenario,
            Ledger::new(economics, config.one_hour_write_multiplier, counted_from),
            config.one_hour_ttl_ms,
        ),
        Scenario::Oracle => oracle(trace, &scenario, config, ledger),
        Scenario::Policy(policy) => with_engine(trace, scenario, policy, config, ledger),
        Scenario::TtlChoice => {
            let ledger = Ledger {
                long_write_multiplier: config.one_hour_write_multiplier,
                ..ledger
            };
            with_engine(trace, scenario, Policy::Adaptive, config, ledger)
        }
    }
}

/// When the counted part of the trace begins, on the trace's clock: the
/// warm-up share of the span from its first arrival to its last (a plain
/// trace may count from the Unix epoch, not from 0).
fn counted_from_ms(trace: &Trace, warm_up: f64) -> u64 {
    let arrivals = || trace.conversations.iter().flatten().map(|t| t.at_ms);
    let (Some(first), Some(last)) = (arrivals().min(), arrivals().max()) else {
        return 0;
    };
    first + ((last - first) as f64 * warm_up.clamp(0.0, 1.0)) as u64
}

fn without_warms(trace: &Trace, scenario: &Scenario, mut ledger: Ledger, ttl: u64) -> Outcome {
    for turns in &trace.conversations {
        let mut previous: Option<(u64, u64)> = None;
        for turn in turns {
            let hit = previous.is_some_and(|(at, _)| turn.at_ms <= at + ttl);
            let since = previous.map_or(turn.at_ms, |(at, _)| at);
            ledger.turn(previous.map(|(_, p)| p), turn.prefix_tokens, hit, since);
            previous = Some((turn.at_ms, turn.prefix_tokens));
        }
    }
    ledger.outcome(scenario)
}

/// Warms needed to carry a cache through a gap: warms every interval from
/// the last touch, each restarting the TTL.
fn warms_to_bridge(gap_ms: u64, ttl_ms: u64, interval_ms: u64) -> u64 {
    if gap_ms <= ttl_ms || interval_ms == 0 {
        0
    } else {
        (gap_ms - ttl_ms).div_ceil(interval_ms)
    }
}

fn oracle(trace: &Trace, scenario: &Scenario, config: &SimConfig, mut ledger: Ledger) -> Outcome {
    let e = &config.economics;
    for turns in &trace.conversations {
        let mut previous: Option<(u64, u64)> = None;
        for turn in turns {
            let Some((at, prefix)) = previous else {
                ledger.turn(None, turn.prefix_tokens, false, turn.at_ms);
                previous = Some((turn.at_ms, turn.prefix_tokens));
                continue;
            };
            let n = warms_to_bridge(turn.at_ms - at, e.ttl_ms, config.interval_ms);
            let warming = n as f64 * e.warm_cost(prefix);
            let hit = n == 0 || warming < e.miss_cost(prefix);
            for _ in 0..if hit { n } else { 0 } {
                ledger.warm(prefix, true, at);
            }
            ledger.turn(Some(prefix), turn.prefix_tokens, hit, at);
            previous = Some((turn.at_ms, turn.prefix_tokens));
        }
    }
    ledger.outcome(scenario)
}

/// One conversation in the engine-driven simulation.
struct Sim {
    id: ConversationId,
    /// When the provider's cache was last read or written.
    touched: Option<u64>,
    /// The prefix a warm or the next turn reads.
    prefix: u64,
    /// When the conversation's latest turn arrived: its idle gap began.
    last_turn: u64,
    /// On the 1-hour cache (`Scenario::TtlChoice`): no warms.
    long: bool,
    /// The turn whose request moved it there.
    moved_at: Option<usize>,
}

fn with_engine(
    trace: &Trace,
    scenario: Scenario,
    policy: Policy,
    config: &SimConfig,
    mut ledger: Ledger,
) -> Outcome {
    let e = &config.economics;
    let choose_ttl = scenario == Scenario::TtlChoice;
    // The policies alone are compared: the service's idle cap would cut
    // every one of them at the same hour and blur the difference.
    let economics = Economics {
        long_ttl_ms: config.one_hour_ttl_ms,
        long_write_multiplier: config.one_hour_write_multiplier,
        ..*e
    };
    let mut warmer = Warmer::new(
        Config::builder()
            .limits(IntervalLimits::new(1, u64::MAX / 4))
            .policy(policy)
            .max_idle(None)
            .economics(economics)
            .upgrade_cache(choose_ttl)
            .build()
            .expect("the simulator's economics are valid"),
    );
    let template = Arc::new(Template::new(
        serde_json::json!({"model": "sim"}),
        None,
        None,
    ));
    // What a moved conversation's requests look like: the 1-hour cache.
    let long_template = Arc::new(Template::new(
        serde_json::json!({"model": "sim", "system": [{"type": "text", "text": "s",
            "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}),
        None,
        None,
    ));
    let mut sims: Vec<Sim> = (0..trace.conversations.len())
        .map(|i| Sim {
            id: ConversationId::new(&format!("c{i}")).expect("a valid id"),
            touched: None,
            prefix: 0,
            last_turn: 0,
            long: false,
            moved_at: None,
        })
        .collect();
    let mut events: Vec<(u64, usize, usize)> = trace
        .conversations
        .iter()
        .enumerate()
        .flat_map(|(c, turns)| turns.iter().enumerate().map(move |(i, t)| (t.at_ms, c, i)))
        .collect();
    events.sort_unstable();
    let end = events.last().map_or(0, |e| e.0) + config.horizon_ms;
    let by_name =
        |id: &ConversationId| -> usize { id.as_str()[1..].parse().expect("ids are c<index>") };
    let pump = |warmer: &mut Warmer, sims: &mut Vec<Sim>, ledger: &mut Ledger, until: u64| {
        while let Some(due) = warmer.poll_timeout() {
            if due.as_millis() > EPOCH_MS + until {
                break;
            }
            warmer.handle_timeout(due);
            while warmer.poll_write().is_some() {}
            while let Some(action) = warmer.poll_warm() {
                let WarmAction::Send(warm) = action else {
                    continue;
                };
                let at = due.as_millis() - EPOCH_MS;
                let sim = &mut sims[by_name(&warm.conversation)];
                let ttl = if sim.long {
                    config.one_hour_ttl_ms
                } else {
                    e.ttl_ms
                };
                let hit = sim.touched.is_some_and(|t| at <= t + ttl);
                ledger.warm(sim.prefix, hit, sim.last_turn);
                sim.touched = Some(at);
                let usage = if hit {
                    Usage::anthropic(0, sim.prefix, 0)
                } else {
                    Usage::anthropic(0, 0, sim.prefix)
                };
                warmer.warm_completed(due, &warm.conversation, warm.token, usage);
            }
            while warmer.poll_write().is_some() || warmer.poll_event().is_some() {}
        }
    };
    for (at, c, i) in events {
        pump(&mut warmer, &mut sims, &mut ledger, at);
        let now = Timestamp::from_millis(EPOCH_MS + at);
        let turn = trace.conversations[c][i];
        let sim = &mut sims[c];
        let previous = (i > 0).then_some(sim.prefix);
        let ttl = if sim.long {
            config.one_hour_ttl_ms
        } else {
            e.ttl_ms
        };
        let hit = previous.is_some() && sim.touched.is_some_and(|t| at <= t + ttl);
        let since = if i == 0 { at } else { sim.last_turn };
        let id = sim.id.clone();
        if i > 0 {
            warmer.turn_started(now, &id);
        }
        // Moved to the 1-hour cache at this turn, as the core's plan says
        // and the proxy would do: it asks for that cache, so its writes are
        // at that cache's price, and a prefix it read from the 5-minute
        // cache is written again into the 1-hour one.
        let moved =
            choose_ttl && !sim.long && warmer.state(&id).plan.keep_alive == KeepAlive::Upgrade;
        if moved {
            warmer.request_upgraded(now, &id);
            sim.moved_at = Some(i);
        }
        if sim.long || moved {
            ledger.long_turn(previous, turn.prefix_tokens, hit, since);
        } else {
            ledger.turn(previous, turn.prefix_tokens, hit, since);
        }
        if moved {
            sim.long = true;
            if let Some(read) = previous.filter(|_| hit) {
                ledger.long_turn(None, read, false, since);
            }
        }
        sim.touched = Some(at);
        sim.last_turn = at;
        sim.prefix = turn.prefix_tokens.max(previous.unwrap_or(0));
        let usage = match (previous, hit) {
            (Some(p), true) => Usage::anthropic(0, p, sim.prefix - p),
            _ => Usage::anthropic(0, 0, sim.prefix),
        };
        if i == 0 {
            let change = SettingsChange {
                enabled: Some(true),
                interval_ms: Some(config.interval_ms as f64),
                ..Default::default()
            };
            let op = warmer.update_settings(now, &id, change);
            warmer.persisted(now, op, true);
        }
        let this_template = match (i, moved) {
            (_, true) => Some(long_template.clone()),
            (0, false) => Some(template.clone()),
            _ => None,
        };
        warmer.turn_settled(now, &id, this_template, Some(now));
        warmer.record_turn(now, &id, now, usage);
        while warmer.poll_write().is_some()
            || warmer.poll_warm().is_some()
            || warmer.poll_event().is_some()
        {}
    }
    pump(&mut warmer, &mut sims, &mut ledger, end);
    let mut plans = Plans::default();
    for state in warmer.conversations() {
        match state.plan.keep_alive {
            KeepAlive::None => plans.none += 1,
            KeepAlive::Upgrade => plans.upgrade += 1,
            _ => plans.replay += 1,
        }
    }
    let moved_at_turns = if choose_ttl {
        sims.iter().map(|s| s.moved_at).collect()
    } else {
        Vec::new()
    };
    Outcome {
        plans,
        moved_at_turns,
        ..ledger.outcome(&scenario)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_to_bridge_counts_interval_steps_past_the_ttl() {
        assert_eq!(warms_to_bridge(300_000, 300_000, 240_000), 0);
        assert_eq!(warms_to_bridge(300_001, 300_000, 240_000), 1);
        assert_eq!(warms_to_bridge(540_000, 300_000, 240_000), 1);
        assert_eq!(warms_to_bridge(540_001, 300_000, 240_000), 2);
    }
}
