//! One conversation's in-memory record inside the engine.

use std::num::NonZeroU64;
use std::sync::Arc;

use super::Config;
use crate::{
    ConversationId, ConversationState, Economics, IntervalLimits, Plan, PlanInputs, Policy,
    Settings, StopReason, Template, Timestamp, WarmToken, WarmTrigger,
};

/// Past gaps kept per conversation, for `adaptive`.
pub(crate) const OWN_GAPS: usize = 8;

/// Stats of the warms so far: the part of the state that warms change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WarmStats {
    /// Cache-read share of the last successful warm, in percent.
    pub last_pct: Option<f64>,
    /// Cache retention of the last successful warm, in percent.
    pub last_expected_pct: Option<f64>,
    /// When the last successful warm finished.
    pub last_warm_at: Option<Timestamp>,
    /// Successful warms so far.
    pub warm_count: u64,
    /// The last warm's error, cleared by a success.
    pub last_error: Option<Arc<str>>,
    /// What its warms spent and its returns saved.
    pub ledger: crate::Ledger,
}

/// An armed timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    /// When the warm is due; also the key in the engine's deadline index.
    pub at: Timestamp,
    /// What kind of warm it fires.
    pub trigger: WarmTrigger,
}

/// A warm that was sent and has not been answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InFlight {
    /// Only an outcome carrying this token counts.
    pub token: WarmToken,
    /// When it was sent: the provider's TTL restarts from here on success.
    pub started_at: Timestamp,
    /// Why it was sent.
    pub trigger: WarmTrigger,
    /// When it was due.
    pub due_at: Timestamp,
}

/// Everything the engine knows about one conversation.
#[derive(Debug)]
pub(crate) struct Conversation {
    /// Its id, shared with the index and every output naming it.
    pub id: ConversationId,
    /// Settings whose write was confirmed (or a close, applied at once).
    pub settings: Settings,
    /// Settings as of the newest write issued, confirmed or not: the base
    /// for the next change, so two quick changes do not undo each other.
    pub projected: Settings,
    /// Settings as the store last committed them (writes are committed in
    /// order): what memory goes back to when a close is refused.
    pub stored: Settings,
    /// Sequence of the write that produced `settings`; an older write
    /// confirmed late must not overwrite a newer one.
    pub settings_applied: u64,
    /// Sequence of the newest settings write issued.
    pub settings_issued: u64,
    /// A turn is generating: no warms.
    pub active: bool,
    /// The runtime turn id being generated, for the lifecycle guard.
    pub active_turn: Option<Box<str>>,
    /// When the active turn started: its request started then at the earliest.
    pub turn_started_at: Option<Timestamp>,
    /// Start of the last request known to have read or written the cache;
    /// the provider's TTL counts from there.
    pub last_touch: Option<Timestamp>,
    /// What a warm replays; none before the first settled turn.
    pub template: Option<Arc<Template>>,
    /// The armed timer, mirrored in the engine's deadline index.
    pub deadline: Option<Deadline>,
    /// The warm being waited for.
    pub in_flight: Option<InFlight>,
    /// Consecutive failed warms, for the retry backoff.
    pub failures: u32,
    /// The sticky backend whose write was confirmed.
    pub backend: Option<Arc<str>>,
    /// Sequence of the write that produced `backend`.
    pub backend_applied: u64,
    /// What the warms so far showed.
    pub stats: WarmStats,
    /// How its returning turns found the cache.
    pub turns: crate::TurnReads,
    /// Turns settled so far.
    pub depth: u32,
    /// When the current idle gap began (the last settle), if idle.
    pub gap_start: Option<Timestamp>,
    /// Warms sent in the current gap.
    pub warms_in_gap: u32,
    /// Cache-read tokens of the current gap's last warm, if it was a hit.
    pub gap_last_hit_read: Option<u64>,
    /// The conversation's latest gaps, ms, oldest first.
    pub own_gaps: Vec<u64>,
    /// Prompt tokens of the last known request: the prefix a warm keeps.
    pub prefix_tokens: u64,
    /// Why the policy stopped warming this gap, if it did.
    pub stopped: Option<StopReason>,
    /// Sequence number of the last settled turn while the prior has not
    /// counted it yet.
    pub uncounted_turn: Option<NonZeroU64>,
    /// When the current idle time began, for the idle cap: the last settle,
    /// or the stored one after a restart. `None` while a turn runs.
    pub idle_since: Option<Timestamp>,
    /// Someone decided this conversation's settings (a confirmed write, or a
    /// stored row): blanket enrolment leaves it alone.
    pub configured: bool,
    /// Output tokens the last warm generated (thinking kept): part of the
    /// next warm's cost for the policies.
    pub last_warm_output: u64,
    /// When the conversation last had an input, for eviction.
    pub last_input_at: Timestamp,
    /// Deleted: no longer in the engine's index; kept only so stale slot
    /// numbers in pending writes land somewhere harmless.
    pub deleted: bool,
    /// The provider keeps the prefix as long as warming would (the plan is
    /// [`KeepAlive::None`]): no timed warm. Updated with the timer.
    pub kept_by_provider: bool,
    /// When a request of it was rewritten to ask for the provider's longer
    /// retention (the plan's upgrade).
    pub upgraded_at: Option<Timestamp>,
    /// Tokens the last turn added to the prefix, once two turns' usage was
    /// seen: what a turn writes at the retention's price.
    pub last_written: Option<u64>,
    /// Seconds the last replay that hit took: the engine time a check that
    /// finds the prefix resident saves (0 until one is seen).
    pub replay_seconds: f32,
}

impl Conversation {
    /// A conversation never seen: off, default interval, idle, no template.
    pub fn new(id: ConversationId, settings: Settings) -> Self {
        Self {
            id,
            settings,
            projected: settings,
            stored: settings,
            settings_applied: 0,
            settings_issued: 0,
            active: false,
            active_turn: None,
            turn_started_at: None,
            last_touch: None,
            template: None,
            deadline: None,
            in_flight: None,
            failures: 0,
            backend: None,
            backend_applied: 0,
            stats: WarmStats::default(),
            turns: crate::TurnReads::default(),
            depth: 0,
            gap_start: None,
            warms_in_gap: 0,
            gap_last_hit_read: None,
            own_gaps: Vec::new(),
            prefix_tokens: 0,
            stopped: None,
            uncounted_turn: None,
            idle_since: None,
            configured: false,
            last_warm_output: 0,
            last_input_at: Timestamp::default(),
            deleted: false,
            kept_by_provider: false,
            upgraded_at: None,
            last_written: None,
            replay_seconds: 0.0,
        }
    }

    /// The policy in force: the conversation's own, else the server's for
    /// conversations a person enabled or for enrolled ones.
    pub fn policy(&self, config: &Config) -> Policy {
        self.settings.policy.unwrap_or(if self.settings.enrolled {
            config.enrolled_policy
        } else {
            config.policy
        })
    }

    /// Whether the template asks for the provider's 1-hour cache.
    pub fn long_ttl(&self) -> bool {
        self.template.as_deref().is_some_and(Template::long_ttl)
    }

    /// The interval in force: the chosen one, else the default for the
    /// conversation's cache TTL.
    pub fn interval_ms(&self, limits: &IntervalLimits) -> u64 {
        self.settings.effective_interval_ms(self.long_ttl(), limits)
    }

    /// The economics of this conversation: its model's prices
    /// ([`crate::economics_for`]); the 1-hour cache lives 12 times longer
    /// and its writes cost more.
    pub fn economics(&self, config: &Config) -> Economics {
        let model = self.template.as_deref().and_then(Template::model);
        crate::economics_for(
            model,
            self.long_ttl(),
            &config.price_overrides,
            &config.list_prices,
            &config.economics,
        )
        .0
    }

    /// Where its prices come from: the deployment's engine, else its
    /// model's ([`crate::economics_for`]).
    pub fn price_source(&self, config: &Config) -> crate::PriceSource {
        if config.self_hosted {
            return crate::PriceSource::Engine;
        }
        let model = self.template.as_deref().and_then(Template::model);
        crate::economics_for(
            model,
            false,
            &config.price_overrides,
            &config.list_prices,
            &config.economics,
        )
        .1
    }

    /// Whether a timed warm may be scheduled now.
    pub fn may_schedule(&self) -> bool {
        self.settings.enabled
            && !self.active
            && self.template.is_some()
            && self.in_flight.is_none()
            && self.stopped.is_none()
            && !self.kept_by_provider
    }

    /// The prefix a warm reads, in tokens: the last warm's or proxied
    /// turn's, once known; before, the template's estimate.
    pub fn prefix_or_estimate(&self) -> u64 {
        if self.prefix_tokens > 0 {
            self.prefix_tokens
        } else {
            self.template
                .as_deref()
                .map_or(0, Template::cacheable_tokens_estimate)
        }
    }

    /// What an extension of its explicit cache costs: `tokens` kept one
    /// more interval (each extension moves the expiry an interval on).
    pub fn extension_cost(&self, config: &Config, tokens: u64) -> f64 {
        let interval = std::time::Duration::from_millis(self.interval_ms(&config.limits));
        self.economics(config).storage_cost(tokens, interval)
    }

    /// Whether nothing of it is known to have been cached yet: no usage
    /// seen (warm or proxied turn) and no warm counted, so a write now is
    /// its first, not a loss. A restored conversation with warms behind it
    /// is past that.
    pub fn caches_nothing_yet(&self) -> bool {
        self.prefix_tokens == 0 && self.stats.warm_count == 0 && self.depth <= 1
    }

    /// How its prefix is best kept while its user is away
    /// ([`crate::choose_plan`]).
    pub fn plan(&self, config: &Config) -> Plan {
        let economics = self.economics(config);
        let prefix_tokens = self.prefix_or_estimate();
        let new_tokens_per_turn = self
            .last_written
            .unwrap_or_else(|| prefix_tokens / u64::from(self.depth.max(1)));
        crate::choose_plan(&PlanInputs {
            economics: &economics,
            // Once upgraded, the proxy asks for it on every request.
            asks_long: self.long_ttl() || self.upgraded_at.is_some(),
            gaps: &self.own_gaps,
            interval_ms: self.settings.effective_interval_ms(false, &config.limits),
            max_idle_ms: (config.max_idle_ms > 0).then_some(config.max_idle_ms),
            prefix_tokens,
            new_tokens_per_turn,
            // An engine of the deployment's own has no provider retention
            // to buy.
            upgrade_allowed: config.upgrade_cache && !config.self_hosted,
            explicit_cache: self
                .template
                .as_deref()
                .is_some_and(Template::explicit_cache),
            engine: config.engine_support,
        })
    }

    /// The externally visible state.
    /// `day` is the engine's UTC day: the ledger's figures of an earlier
    /// day are not today's, so they show as today's zero.
    pub fn snapshot(&self, config: &Config, day: u64) -> ConversationState {
        let mut ledger = self.stats.ledger;
        if ledger.day != day {
            ledger.day = day;
            ledger.spent_today_dollars = 0.0;
            ledger.saved_today_dollars = 0.0;
        }
        ConversationState {
            conversation_id: self.id.clone(),
            known: true,
            enabled: self.settings.enabled,
            interval_ms: self.interval_ms(&config.limits),
            active: self.active,
            last_pct: self.stats.last_pct,
            last_expected_pct: self.stats.last_expected_pct,
            last_warm_at: self.stats.last_warm_at,
            next_warm_at: self.deadline.map(|d| d.at),
            backend: self.backend.clone(),
            last_error: self.stats.last_error.clone(),
            warm_count: self.stats.warm_count,
            ledger,
            net_dollars: self.stats.ledger.net_dollars(),
            priced: self.price_source(config),
            policy: self.policy(config),
            // A stop matters only while warming is on: off says it all.
            stopped_reason: self
                .stopped
                .filter(|_| self.settings.enabled)
                .map(|r| r.to_string()),
            stopped: self.stopped.filter(|_| self.settings.enabled),
            turns: self.turns,
            plan: self.plan(config),
            upgraded_at: self.upgraded_at,
        }
    }
}
