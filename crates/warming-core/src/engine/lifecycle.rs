//! Lifecycle inputs: turns starting, settling and waiting, and provider
//! runtime events through the lifecycle guard.

use std::sync::Arc;

use super::conversation::OWN_GAPS;
use super::Warmer;
use crate::lifecycle::{guard, LifecycleStep};
use crate::{
    ConversationId, Event, EventDisposition, RuntimeEvent, RuntimeEventKind, SessionState,
    Template, Timestamp, Write,
};

impl Warmer {
    /// A turn started: the conversation is active, its timer is cancelled
    /// and an in-flight warm is invalidated. A conversation first seen here
    /// is written ([`Write::Schedule`], nothing scheduled), so that a
    /// caller who waits for the write knows it survives a crash.
    #[doc(alias = "invalidate")]
    #[doc(alias = "pause")]
    pub fn turn_started(&mut self, now: Timestamp, id: &ConversationId) {
        let now = self.tick(now);
        let first_seen = self.slot_of(id).is_none();
        let slot = self.ensure(id);
        if first_seen {
            self.out.writes.push_back(Write::Schedule {
                conversation: id.clone(),
                next_warm_at: None,
            });
        }
        self.start_turn(slot, None, now);
    }

    /// A turn settled: the conversation is idle, `template` (if given)
    /// replaces the stored one, and the timer is armed one interval after the
    /// turn's request started if warming is enabled.
    ///
    /// `request_started_at` is when the turn's last provider request started;
    /// without it, the time of `turn_started` is used, else `now`.
    pub fn turn_settled(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        template: Option<Arc<Template>>,
        request_started_at: Option<Timestamp>,
    ) {
        let now = self.tick(now);
        let slot = self.ensure(id);
        let c = self.conv(slot);
        let touched = request_started_at.or(c.turn_started_at).unwrap_or(now);
        self.settle(slot, template, Some(touched), now);
    }

    /// A provider runtime event, filtered by the lifecycle guard: a start
    /// conflicting with the active turn, or a completion of any turn but the
    /// active one, is ignored, and so is every event of a conversation never
    /// seen (as the agent host's own ingestion does). Accepted events start
    /// or settle a turn; a failed turn or session sets `lastError`, a
    /// completed turn or a ready session clears it.
    pub fn runtime_event(&mut self, now: Timestamp, event: RuntimeEvent) -> EventDisposition {
        let now = self.tick(now);
        let Some(slot) = self.slot_of(&event.conversation) else {
            return EventDisposition::Ignored;
        };
        let active_turn = self.conversations[slot as usize].active_turn.as_deref();
        match guard(active_turn, &event.kind, event.turn_id.as_deref()) {
            LifecycleStep::Ignore => EventDisposition::Ignored,
            LifecycleStep::Start => {
                self.start_turn(slot, event.turn_id.map(String::into_boxed_str), now);
                EventDisposition::Applied
            }
            LifecycleStep::Settle => {
                let c = self.conv(slot);
                let was_active = c.active;
                let started = c.turn_started_at.unwrap_or(now);
                let (template, touched, error) = match event.kind {
                    RuntimeEventKind::TurnCompleted { template, failure } => {
                        (template, Some(started), Some(failure))
                    }
                    RuntimeEventKind::SessionState(SessionState::Error(reason)) => {
                        (None, was_active.then_some(started), Some(Some(reason)))
                    }
                    RuntimeEventKind::SessionState(SessionState::Ready) => {
                        (None, was_active.then_some(started), Some(None))
                    }
                    // An exit or a pause is no request: it touched the cache
                    // only if a turn was running.
                    _ => (None, was_active.then_some(started), None),
                };
                if let Some(error) = error {
                    self.conv(slot).stats.last_error = error;
                }
                self.settle(slot, template, touched, now);
                EventDisposition::Applied
            }
        }
    }

    /// The active turn waits inside itself, on a tool or a person: the
    /// conversation is warmed like an idle one until the next turn start or
    /// settle. Returns `false`, changing nothing, when no turn is active.
    pub fn turn_waiting(&mut self, now: Timestamp, id: &ConversationId) -> bool {
        let now = self.tick(now);
        let Some(slot) = self.slot_of(id) else {
            return false;
        };
        let c = self.conv(slot);
        if !c.active {
            return false;
        }
        let started = c.turn_started_at.unwrap_or(now);
        self.settle(slot, None, Some(started), now);
        true
    }

    pub(super) fn start_turn(&mut self, slot: u32, turn_id: Option<Box<str>>, now: Timestamp) {
        let economics = self.conversations[slot as usize].economics(&self.config);
        let ttl_ms = economics.ttl_ms;
        let (cap, limits) = (self.config.max_idle_ms, self.config.limits);
        let c = self.conv(slot);
        if let Some(start) = c.gap_start.take() {
            // The user came back: one more gap learned, here and globally.
            let gap = now.millis_since(start);
            let depth = c.depth;
            // Without warming the cache would have died after the TTL: a
            // longer gap that ends on a warm hit is a miss avoided.
            let outlived_ttl = gap > ttl_ms;
            let last_hit_read = c.gap_last_hit_read.take();
            let miss_avoided_tokens = last_hit_read.filter(|_| outlived_ttl);
            if miss_avoided_tokens.is_none() {
                // The gap's warms bought nothing this return needed.
                c.stats.ledger.unrepaid_warms += u64::from(c.warms_in_gap);
            }
            let mut saved = None;
            if let Some(tokens) = miss_avoided_tokens {
                let ledger = &mut c.stats.ledger;
                let dollars = economics.miss_avoided_cost(tokens);
                ledger.misses_avoided += 1;
                ledger.saved_dollars += dollars;
                ledger.saved_prefill_seconds +=
                    tokens as f64 / economics.prefill_tokens_per_sec.max(1.0);
                saved = Some(dollars);
            }
            let saved_on_engine = c.stopped == Some(crate::StopReason::SavedOnEngine);
            if c.kept_by_provider || saved_on_engine {
                // The provider kept it, or the engine saved it: the replays
                // an interval apart over the gap (up to the idle cap) were
                // never needed.
                let kept = if cap > 0 { gap.min(cap) } else { gap };
                let interval = c.settings.effective_interval_ms(false, &limits).max(1);
                let avoided = kept / interval;
                c.stats.ledger.replays_avoided += avoided;
                if saved_on_engine {
                    c.stats.ledger.engine_seconds_saved +=
                        avoided as f64 * f64::from(c.replay_seconds);
                }
            }
            let returned = Event::TurnReturned {
                conversation: c.id.clone(),
                idle_ms: gap,
                warms: c.warms_in_gap,
                miss_avoided_tokens,
            };
            self.out.events.push_back(returned);
            if let Some(dollars) = saved {
                self.saved(slot, dollars);
            }
            let c = self.conv(slot);
            if c.own_gaps.len() == OWN_GAPS {
                c.own_gaps.remove(0);
            }
            c.own_gaps.push(gap);
            let counted_later = c
                .uncounted_turn
                .take()
                .is_some_and(|seq| self.resolutions.returned(seq, gap));
            if !counted_later {
                self.prior.observe_return(depth, gap);
            }
        }
        let c = self.conv(slot);
        c.stopped = None;
        c.idle_since = None;
        c.last_input_at = now;
        c.active = true;
        c.active_turn = turn_id;
        c.turn_started_at = Some(now);
        self.invalidate_in_flight(slot);
        self.disarm(slot);
        self.notify(slot);
    }

    pub(super) fn settle(
        &mut self,
        slot: u32,
        template: Option<Arc<Template>>,
        touched: Option<Timestamp>,
        now: Timestamp,
    ) {
        let c = self.conv(slot);
        c.active = false;
        c.active_turn = None;
        c.turn_started_at = None;
        c.last_input_at = now;
        if let Some(touched) = touched {
            c.last_touch = c.last_touch.max(Some(touched.min(now)));
            // A real request just went through: the upstream works.
            c.failures = 0;
            // A turn ended: a new idle gap begins.
            c.depth = c.depth.saturating_add(1);
            c.gap_start = Some(now);
            c.warms_in_gap = 0;
            c.gap_last_hit_read = None;
            c.stopped = None;
            c.idle_since = Some(now);
            let depth = c.depth;
            let rhythm = Write::Rhythm {
                conversation: c.id.clone(),
                depth,
                gaps: c.own_gaps.clone(),
                idle_since: now,
            };
            self.out.writes.push_back(rhythm);
            let due = now.plus_millis(self.config.economics.ttl_ms);
            let seq = self.resolutions.open(due, depth);
            self.conv(slot).uncounted_turn = Some(seq);
        }
        let detach = self.config.detach_templates;
        let c = self.conv(slot);
        if let Some(template) = template {
            c.template = Some(if detach {
                Arc::new(template.detach())
            } else {
                template.clone()
            });
            let conversation = c.id.clone();
            self.out.writes.push_back(Write::Template {
                conversation,
                template,
            });
        }
        // The turn's own requests refreshed the cache: a warm still in
        // flight is redundant and its timing is stale.
        self.invalidate_in_flight(slot);
        self.reconcile(slot, now, true);
        // Notified only now, after arming, so the update carries the new
        // future nextWarmAt (behaviour 3 of docs/BEHAVIOUR.md).
        self.notify(slot);
    }
}
