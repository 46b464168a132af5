//! The engine: every conversation's state, the deadline index and the
//! output queues. Inputs live in `lifecycle.rs` (turns and runtime events),
//! `commands.rs` (what people ask for) and `outcomes.rs` (time and effect
//! outcomes); what stops a timed warm in `guards.rs`; the record in
//! `conversation.rs`.

mod answers;
mod commands;
mod config;
mod conversation;
mod guards;
mod lifecycle;
mod money;
mod outcomes;
mod resolutions;
mod spend;
pub use answers::{WarmFailure, WarmNowError, WarmReply};
pub use config::{Config, ConfigBuilder, ConfigError};
pub use money::MoneyToday;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

pub use self::conversation::WarmStats;
use self::conversation::{Conversation, Deadline, InFlight};
use self::resolutions::Resolutions;
use crate::output::Outputs;
use crate::{
    ConversationId, ConversationState, Event, PersistId, ReturnPrior, Settings, Template,
    Timestamp, WarmAction, WarmRequest, WarmToken, WarmTrigger, Write,
};

/// Which conversations a [`Warmer::conversations_page`] lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only those with warming on (`Some(true)`) or off (`Some(false)`).
    pub enabled: Option<bool>,
    /// Only those with a warm scheduled.
    pub armed: bool,
    /// Only those with warming on that a policy, a guard or a spend cap
    /// stopped (the state's `stop`).
    pub stopped: bool,
    /// Only those whose id contains this text.
    pub id_contains: Option<String>,
}

/// A conversation as loaded from storage at start, for [`Warmer::restore`].
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    /// The conversation.
    pub conversation: ConversationId,
    /// Its stored settings; `None` when nobody ever configured it (it keeps
    /// the defaults and may still be enrolled).
    pub settings: Option<Settings>,
    /// Its stored warm template.
    pub template: Option<Template>,
    /// When its next warm was due, as stored.
    pub next_warm_at: Option<Timestamp>,
    /// Its stored sticky backend.
    pub backend: Option<String>,
    /// Stats rebuilt from its history.
    pub stats: WarmStats,
    /// Turns settled so far, as stored.
    pub depth: u32,
    /// Its latest gaps between turns, ms, as stored.
    pub gaps: Vec<u64>,
    /// When its current idle time began (its last settled turn), as stored;
    /// the idle cap counts from here across restarts.
    pub idle_since: Option<Timestamp>,
}

impl Restored {
    /// A conversation of which nothing but its id is stored.
    #[must_use]
    pub fn new(conversation: ConversationId) -> Self {
        Self {
            conversation,
            settings: None,
            template: None,
            next_warm_at: None,
            backend: None,
            stats: WarmStats::default(),
            depth: 0,
            gaps: Vec::new(),
            idle_since: None,
        }
    }
}

/// A write the engine is waiting to hear about.
#[derive(Debug)]
enum Pending {
    /// Settings to apply once written.
    Settings { slot: u32, settings: Settings },
    /// A close, applied before its write (so a racing settle cannot re-arm):
    /// if the write fails, the settings go back to the stored ones and
    /// warming stays stopped ([`StopReason::CloseNotStored`](crate::StopReason::CloseNotStored)).
    Close { slot: u32, settings: Settings },
    /// A sticky backend to adopt once written.
    Backend { slot: u32, backend: Arc<str> },
    /// A conversation to forget once its rows are deleted.
    Delete { slot: u32 },
}

/// The warming state machine for any number of conversations, sans-IO.
///
/// # Contract
/// The engine never reads a clock, sleeps or performs I/O. The caller:
///
/// 1. feeds inputs, each with the current time: lifecycle
///    ([`turn_started`](Self::turn_started), [`turn_settled`](Self::turn_settled),
///    [`runtime_event`](Self::runtime_event), [`close`](Self::close)), user
///    commands ([`update_settings`](Self::update_settings),
///    [`warm_now`](Self::warm_now)), and outcomes of outputs it carried out
///    ([`warm_completed`](Self::warm_completed), [`warm_failed`](Self::warm_failed),
///    [`persisted`](Self::persisted), [`backend_resolved`](Self::backend_resolved));
/// 2. drains [`poll_write`](Self::poll_write), then
///    [`poll_warm`](Self::poll_warm), then [`poll_event`](Self::poll_event)
///    until each returns `None`, carrying out each output in order;
/// 3. calls [`handle_timeout`](Self::handle_timeout) when the time returned
///    by [`poll_timeout`](Self::poll_timeout) is reached (and before serving
///    [`state`](Self::state) if time may have passed), then drains again.
///
/// Time only moves forward: an input carrying an earlier time than one seen
/// before is treated as happening at the latest time seen. A wake-up that
/// comes early, late or twice is harmless: due deadlines are re-checked.
///
/// ```
/// use warming_core::{Config, ConversationId, Policy, SettingsChange, Template, Timestamp, Usage, WarmAction, Warmer, Write};
///
/// // A conversation someone enabled warms every interval (`Policy::Fixed`)
/// // until a turn, a close, or an hour of idle time (`max_idle_ms`).
/// let mut warmer = Warmer::new(Config::default());
/// assert_eq!(warmer.config().policy(), Policy::Fixed);
/// let id = ConversationId::new("c1").unwrap();
/// let t0 = Timestamp::from_millis(1_000_000);
///
/// // Opt in; memory changes once the caller confirms the write.
/// let op = warmer.update_settings(t0, &id, SettingsChange { enabled: Some(true), ..Default::default() });
/// warmer.persisted(t0, op, true);
/// warmer.turn_settled(t0, &id, Some(Template::new(serde_json::json!({"model": "m"}), None, None).into()), None);
/// let due = warmer.poll_timeout().unwrap();
/// assert_eq!(due, t0.plus_millis(240_000));
///
/// while warmer.poll_write().is_some() {}
/// warmer.handle_timeout(due);
/// let Some(WarmAction::Send(warm)) = warmer.poll_warm() else { panic!("no warm") };
/// assert!(warmer.warm_completed(due.plus_millis(300), &id, warm.token, Usage::anthropic(3, 5_000, 0)));
/// let records: Vec<_> = std::iter::from_fn(|| warmer.poll_write())
///     .filter_map(|w| match w { Write::Record { record, .. } => Some(record), _ => None })
///     .collect();
/// assert_eq!(records[0].pct, Some(5_000.0 / 5_003.0 * 100.0));
/// assert_eq!(warmer.state(&id).next_warm_at, Some(due.plus_millis(240_000)));
/// ```
#[derive(Debug)]
pub struct Warmer {
    /// Settings for the whole engine.
    config: Config,
    /// Conversation records; a slot (index) never changes or goes away, so
    /// the deadline index and pending writes can name it with a `u32`.
    conversations: Vec<Conversation>,
    /// Id to slot.
    slots: FxHashMap<ConversationId, u32>,
    /// Armed deadlines ordered by time: the earliest is the next wake-up.
    deadlines: BTreeSet<(Timestamp, u32)>,
    /// Writes issued and not yet reported, by sequence number.
    pending: FxHashMap<u64, Pending>,
    /// Outputs waiting to be drained, one queue per consumer.
    out: Outputs,
    /// Next warm token; global, so a token is never reused.
    next_token: u64,
    /// Next write sequence number; global and increasing, so "newer write"
    /// is a comparison.
    next_op: u64,
    /// Latest time seen.
    now: Timestamp,
    /// What every conversation taught about returns, for `adaptive`.
    prior: ReturnPrior,
    /// Settled turns the prior will count once their first TTL is over.
    resolutions: Resolutions,
    /// Slots of evicted conversations, free for new ones.
    free_slots: Vec<u32>,
    /// Today's spend on warms, for the daily cap.
    spend: money::DailySpend,
}

impl Warmer {
    /// An engine with no conversations.
    #[must_use]
    pub fn new(config: Config) -> Self {
        Self {
            config,
            conversations: Vec::new(),
            slots: FxHashMap::default(),
            deadlines: BTreeSet::new(),
            pending: FxHashMap::default(),
            out: Outputs::default(),
            next_token: 1,
            next_op: 1,
            now: Timestamp::default(),
            prior: ReturnPrior::default(),
            resolutions: Resolutions::default(),
            free_slots: Vec::new(),
            spend: money::DailySpend::default(),
        }
    }

    /// What the engine has learned about returns (persist it to keep it
    /// across restarts). A settled turn counts once its first TTL is over,
    /// as of the latest input.
    #[must_use]
    pub fn prior(&self) -> &ReturnPrior {
        &self.prior
    }

    /// Replaces the learned prior, e.g. with one persisted earlier.
    pub fn set_prior(&mut self, prior: ReturnPrior) {
        self.prior = prior;
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The next write for the store, in order; `None` when drained. Drain
    /// the writes before the warms: a warm of a detached template reads
    /// back the body the write before it stored.
    #[must_use]
    pub fn poll_write(&mut self) -> Option<Write> {
        self.out.writes.pop_front()
    }

    /// The next warm to send or abort, in order; `None` when drained.
    #[must_use]
    pub fn poll_warm(&mut self) -> Option<WarmAction> {
        self.out.warms.pop_front()
    }

    /// The next event for watchers (UIs, metrics), in order; `None` when
    /// drained.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, or
    /// `None` when nothing is armed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let next_warm = self.deadlines.first().map(|&(at, _)| at);
        match (next_warm, self.next_day_start()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The state of a conversation; defaults, with `known: false`, for one
    /// never seen (reading it creates nothing).
    #[must_use]
    pub fn state(&self, id: &ConversationId) -> ConversationState {
        match self.slots.get(id) {
            Some(&slot) => self.conversations[slot as usize].snapshot(&self.config, self.spend.day),
            None => {
                let mut state =
                    Conversation::new(id.clone(), Settings::defaults(&self.config.limits))
                        .snapshot(&self.config, self.spend.day);
                state.known = false;
                state
            }
        }
    }

    /// Whether the engine has seen this conversation.
    #[must_use]
    pub fn knows(&self, id: &ConversationId) -> bool {
        self.slots.contains_key(id)
    }

    /// The state of every known conversation, in the order first seen.
    pub fn conversations(&self) -> impl Iterator<Item = ConversationState> + '_ {
        self.conversations
            .iter()
            .filter(|c| !c.deleted)
            .map(|c| c.snapshot(&self.config, self.spend.day))
    }

    /// One page of known conversations, in the order first seen: at most
    /// `limit` of those matching `filter`, starting at `cursor` (0 for the
    /// first page). Answers the page and the cursor of the next one, `None`
    /// after the last: cursors stay valid as conversations come and go.
    ///
    /// ```
    /// use warming_core::{Config, ConversationId, ListFilter, Warmer};
    /// let mut warmer = Warmer::new(Config::default());
    /// for raw in ["a", "b", "c"] {
    ///     warmer.turn_started(Default::default(), &ConversationId::new(raw).unwrap());
    /// }
    /// let (first, next) = warmer.conversations_page(0, 2, ListFilter::default());
    /// assert_eq!(first.len(), 2);
    /// let (rest, end) = warmer.conversations_page(next.unwrap(), 2, ListFilter::default());
    /// assert_eq!((rest.len(), end), (1, None));
    /// ```
    #[must_use]
    pub fn conversations_page(
        &self,
        cursor: usize,
        limit: usize,
        filter: ListFilter,
    ) -> (Vec<ConversationState>, Option<usize>) {
        let mut page = Vec::new();
        for (index, c) in self.conversations.iter().enumerate().skip(cursor) {
            if page.len() == limit.max(1) {
                return (page, Some(index));
            }
            let matches = !c.deleted
                && filter.enabled.is_none_or(|on| c.settings.enabled == on)
                && (!filter.armed || c.deadline.is_some())
                && (!filter.stopped || (c.settings.enabled && c.stopped.is_some()))
                && filter
                    .id_contains
                    .as_deref()
                    .is_none_or(|part| c.id.as_str().contains(part));
            if matches {
                page.push(c.snapshot(&self.config, self.spend.day));
            }
        }
        (page, None)
    }

    /// The state of a conversation as `restored` from storage, without
    /// bringing it into this engine: for one another instance holds, as
    /// that instance last committed it. Nothing running is known of it, so
    /// it is never `active`, and its next warm is the stored one.
    ///
    /// ```
    /// use warming_core::{Config, ConversationId, Restored, Timestamp, Warmer};
    /// let warmer = Warmer::new(Config::default());
    /// let stored = Restored {
    ///     next_warm_at: Some(Timestamp::from_millis(9_000)),
    ///     ..Restored::new(ConversationId::new("held-elsewhere").unwrap())
    /// };
    /// let state = warmer.stored_state(&stored);
    /// assert!(!state.enabled, "no stored settings: the defaults, warming off");
    /// assert_eq!(state.next_warm_at, None, "nothing is scheduled while off");
    /// assert!(!warmer.knows(&stored.conversation));
    /// ```
    #[must_use]
    pub fn stored_state(&self, restored: &Restored) -> ConversationState {
        let limits = &self.config.limits;
        let settings = restored
            .settings
            .unwrap_or_else(|| crate::Settings::defaults(limits));
        let mut c = Conversation::new(restored.conversation.clone(), settings);
        c.template = restored.template.clone().map(|t| Arc::new(t.detach()));
        c.backend = restored.backend.as_deref().map(Arc::from);
        c.stats = restored.stats.clone();
        let mut state = c.snapshot(&self.config, self.spend.day);
        state.next_warm_at = restored.next_warm_at.filter(|_| settings.enabled);
        state
    }

    /// What a conversation's warms spent and its returns saved, if the
    /// engine knows it.
    #[must_use]
    pub fn ledger(&self, id: &ConversationId) -> Option<crate::Ledger> {
        let slot = *self.slots.get(id)?;
        Some(self.conversations[slot as usize].stats.ledger)
    }

    /// The warm template of a conversation, if it has one.
    #[must_use]
    pub fn template(&self, id: &ConversationId) -> Option<Arc<Template>> {
        let slot = *self.slots.get(id)?;
        self.conversations[slot as usize].template.clone()
    }

    /// How many conversations have an armed timer.
    #[must_use]
    pub fn armed_count(&self) -> usize {
        self.deadlines.len()
    }

    /// Advances the engine's clock to `now` unless time went backwards, and
    /// lets the prior count the turns whose first TTL is over.
    fn tick(&mut self, now: Timestamp) -> Timestamp {
        self.now = self.now.max(now);
        self.resolutions.resolve(self.now, &mut self.prior);
        self.roll_day(self.now);
        self.now
    }

    /// The slot of a known conversation.
    fn slot_of(&self, id: &ConversationId) -> Option<u32> {
        self.slots.get(id).copied()
    }

    /// The slot of a conversation, created with defaults if never seen.
    fn ensure(&mut self, id: &ConversationId) -> u32 {
        if let Some(slot) = self.slot_of(id) {
            self.conversations[slot as usize].last_input_at = self.now;
            return slot;
        }
        let settings = Settings::defaults(&self.config.limits);
        let mut fresh = Conversation::new(id.clone(), settings);
        fresh.last_input_at = self.now;
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.conversations[slot as usize] = fresh;
                slot
            }
            None => {
                let slot =
                    u32::try_from(self.conversations.len()).expect("fewer than 2^32 conversations");
                self.conversations.push(fresh);
                slot
            }
        };
        self.slots.insert(id.clone(), slot);
        slot
    }

    /// Evicts conversations warming has no use for in memory: warming off,
    /// no turn running, nothing scheduled, in flight or being written, and
    /// no input for `idle`. Their state stays in the caller's store;
    /// restore one with [`restore`](Self::restore) before its next input.
    /// Returns the evicted ids. Memory is reused by later conversations.
    pub fn evict_idle(&mut self, now: Timestamp, idle: Duration) -> Vec<ConversationId> {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let now = self.tick(now);
        let pending: rustc_hash::FxHashSet<u32> = self
            .pending
            .values()
            .map(|p| match p {
                Pending::Settings { slot, .. }
                | Pending::Close { slot, .. }
                | Pending::Backend { slot, .. }
                | Pending::Delete { slot } => *slot,
            })
            .collect();
        let idle: Vec<u32> = (0..self.conversations.len() as u32)
            .filter(|slot| {
                let c = &self.conversations[*slot as usize];
                !(c.deleted
                    || c.settings.enabled
                    || c.active
                    || c.deadline.is_some()
                    || c.in_flight.is_some()
                    || now.millis_since(c.last_input_at) < idle_ms
                    || pending.contains(slot))
            })
            .collect();
        // Nothing refers to these slots any more: they are free for reuse.
        self.free_slots.extend(&idle);
        idle.into_iter().map(|slot| self.retire(slot)).collect()
    }

    fn conv(&mut self, slot: u32) -> &mut Conversation {
        &mut self.conversations[slot as usize]
    }

    fn next_op(&mut self) -> u64 {
        let op = self.next_op;
        self.next_op += 1;
        op
    }

    /// Arms (or re-arms) the conversation's single timer.
    fn arm(&mut self, slot: u32, at: Timestamp, trigger: WarmTrigger, save: bool) {
        let previous = self.conv(slot).deadline.replace(Deadline { at, trigger });
        if let Some(old) = previous {
            self.deadlines.remove(&(old.at, slot));
        }
        self.deadlines.insert((at, slot));
        if save {
            let conversation = self.conv(slot).id.clone();
            self.out.writes.push_back(Write::Schedule {
                conversation,
                next_warm_at: Some(at),
            });
        }
    }

    /// Cancels the conversation's timer, if armed.
    fn disarm(&mut self, slot: u32) {
        if let Some(old) = self.conv(slot).deadline.take() {
            self.deadlines.remove(&(old.at, slot));
            let conversation = self.conv(slot).id.clone();
            self.out.writes.push_back(Write::Schedule {
                conversation,
                next_warm_at: None,
            });
        }
    }

    /// Cancels the timer without storing the change: for a conversation
    /// whose rows were just deleted.
    fn disarm_quietly(&mut self, slot: u32) {
        if let Some(old) = self.conv(slot).deadline.take() {
            self.deadlines.remove(&(old.at, slot));
        }
    }

    /// Makes the timer agree with the state: disarmed when no timed warm may
    /// be scheduled; otherwise armed one interval after the cache was last
    /// touched (if `rearm`, or if nothing is armed yet).
    fn reconcile(&mut self, slot: u32, now: Timestamp, rearm: bool) {
        let limits = self.config.limits;
        let plan = self.conversations[slot as usize].plan(&self.config);
        let c = self.conv(slot);
        c.kept_by_provider = plan.keep_alive == crate::KeepAlive::None;
        if !c.may_schedule() {
            self.disarm(slot);
            return;
        }
        if !rearm && c.deadline.is_some() {
            return;
        }
        let anchor = c.last_touch.unwrap_or(now);
        let at = anchor.plus_millis(c.interval_ms(&limits));
        match (self.guard_allows(slot, now), at > now) {
            // A prompt the provider will not cache is said at once, not
            // after a countdown that ends in nothing; a warm due now is not
            // sent past a guard.
            (
                Err(
                    reason @ (crate::StopReason::BelowMinimum { .. }
                    | crate::StopReason::SmallSaving { .. }),
                ),
                _,
            )
            | (Err(reason), false) => {
                self.disarm(slot);
                self.stop(slot, reason, (WarmTrigger::Scheduled, at), now);
            }
            (_, true) => self.arm(slot, at, WarmTrigger::Scheduled, true),
            // Already due (a turn ran longer than the interval, warming was
            // just turned on again, or the interval got shorter): warm now,
            // so what is served and pushed next is `null` while it is in
            // flight, then a time in the future, never one already past.
            // Each cause is someone's action, so no policy is asked.
            (Ok(()), false) => {
                self.disarm(slot);
                self.conv(slot).warms_in_gap += 1;
                self.fire(slot, WarmTrigger::Scheduled, at, now);
            }
        }
    }

    /// Takes a conversation out of the index, its slot left as a tombstone
    /// (its template and gaps freed), and returns its id: the common part of
    /// a delete and an eviction.
    fn retire(&mut self, slot: u32) -> ConversationId {
        let c = self.conv(slot);
        c.deleted = true;
        c.template = None;
        c.own_gaps = Vec::new();
        c.stopped = None;
        let id = c.id.clone();
        self.slots.remove(&id);
        id
    }

    /// Forgets the in-flight warm, if any, so its outcome will be ignored.
    fn invalidate_in_flight(&mut self, slot: u32) {
        if let Some(flight) = self.conv(slot).in_flight.take() {
            let conversation = self.conv(slot).id.clone();
            self.out.warms.push_back(WarmAction::Abort {
                conversation,
                token: flight.token,
            });
        }
    }

    /// Sends a warm now (it was due at `due_at`) and returns its token.
    fn fire(
        &mut self,
        slot: u32,
        trigger: WarmTrigger,
        due_at: Timestamp,
        now: Timestamp,
    ) -> WarmToken {
        let token = WarmToken(self.next_token);
        self.next_token += 1;
        let limits = self.config.limits;
        let c = self.conv(slot);
        let keep_for = std::time::Duration::from_millis(c.interval_ms(&limits).saturating_mul(2));
        c.in_flight = Some(InFlight {
            token,
            started_at: now,
            trigger,
            due_at,
        });
        let request = WarmRequest {
            conversation: c.id.clone(),
            token,
            template: c
                .template
                .clone()
                .expect("fire is only called with a template"),
            preferred_backend: c.backend.clone(),
            trigger,
            due_at,
            keep_for,
        };
        self.out.warms.push_back(WarmAction::Send(request));
        token
    }

    /// Queues the conversation's current state for its subscribers.
    fn notify(&mut self, slot: u32) {
        let state = self.conversations[slot as usize].snapshot(&self.config, self.spend.day);
        self.out.events.push_back(Event::Changed(Arc::new(state)));
    }

    /// Delay before retrying after `failures` consecutive failures: doubling
    /// from the configured base up to the interval (a retry later than a
    /// regular warm is useless), and never sooner than the provider asked.
    fn retry_delay(&self, failures: u32, retry_after: Option<Duration>, interval_ms: u64) -> u64 {
        let retry_after_ms = retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let doublings = failures.saturating_sub(1).min(20);
        let backoff = self.config.retry_base_ms.saturating_mul(1 << doublings);
        // The backoff never waits longer than an interval; the provider's
        // `retry-after` is honoured whatever its length: sooner would only
        // be refused again.
        backoff
            .min(interval_ms)
            .max(retry_after_ms.unwrap_or(0))
            .max(1)
    }
}

impl PersistId {
    fn seq(self) -> u64 {
        self.0
    }
}
