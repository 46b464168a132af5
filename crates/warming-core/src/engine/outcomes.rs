//! Time passing and the outcomes of outputs: due warms sent, warms
//! answered or failed, turns seen through a proxy, writes confirmed.

use super::answers::{WarmFailure, WarmReply};
use std::sync::Arc;

use super::{Pending, Warmer};
use crate::{
    ConversationId, PersistId, StopReason, Timestamp, Usage, WarmKind, WarmOutcome, WarmRecord,
    WarmToken, WarmTrigger, Write,
};

impl Warmer {
    /// Time passed: sends the warms that are due, in deadline order.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let now = self.tick(now);
        while let Some(&(at, slot)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let c = self.conv(slot);
            let trigger = c
                .deadline
                .take()
                .map_or(WarmTrigger::Scheduled, |d| d.trigger);
            // Re-checked, never trusted: the index only holds schedulable
            // conversations, but a stale entry must do nothing.
            if !c.may_schedule() {
                continue;
            }
            if trigger != WarmTrigger::Manual {
                if let Err(reason) = self.guard_allows(slot, now).and_then(|()| {
                    if trigger == WarmTrigger::Scheduled {
                        self.policy_allows(slot, now)
                    } else {
                        Ok(())
                    }
                }) {
                    self.stop(slot, reason, (trigger, at), now);
                    continue;
                }
            }
            self.conv(slot).warms_in_gap += 1;
            self.fire(slot, trigger, at, now);
        }
    }

    /// A warm answered. Returns `false` when the token is stale
    /// (superseded, or the conversation turned active), in which case
    /// nothing changes; else its history record comes out as
    /// [`Write::Record`] naming `token`.
    ///
    /// The next warm is due one interval after this warm *started*, because
    /// the provider's TTL restarts when a request reads the cache.
    pub fn warm_completed(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        token: WarmToken,
        usage: Usage,
    ) -> bool {
        let reply = WarmReply {
            usage,
            backend: None,
            kind: None,
        };
        self.warm_answered(now, id, token, reply)
    }

    /// A warm answered: as [`warm_completed`](Self::warm_completed), with
    /// the backend that served it in the history record and adopted as the
    /// sticky backend (persisted first, see
    /// [`backend_resolved`](Self::backend_resolved)), the kind of request in
    /// the record, and its output tokens weighed in the next warm's cost. A
    /// warm that read and wrote nothing stops warming
    /// ([`StopReason::NothingCached`]): the provider does not cache this
    /// prompt.
    pub fn warm_answered(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        token: WarmToken,
        reply: WarmReply<'_>,
    ) -> bool {
        let WarmReply {
            usage,
            backend,
            kind,
        } = reply;
        let now = self.tick(now);
        let Some(slot) = self.slot_of(id) else {
            return false;
        };
        let limits = self.config.limits;
        let c = self.conv(slot);
        let Some(flight) = c.in_flight.filter(|f| f.token == token && !c.active) else {
            return false;
        };
        c.in_flight = None;
        c.failures = 0;
        c.last_touch = c.last_touch.max(Some(flight.started_at));
        // A warm answered more than an interval after it was issued (held
        // while its sender was paused, or a provider that hung) refreshed
        // the cache about now: the next is an interval from now, not due
        // at once beside it.
        if flight.started_at.plus_millis(c.interval_ms(&limits)) <= now {
            c.last_touch = Some(now);
        }
        let answered_by = backend.map(Arc::from).or_else(|| c.backend.clone());
        let first = c.caches_nothing_yet();
        let mut record = WarmRecord::answered(
            c.id.clone(),
            flight.trigger,
            (flight.due_at, flight.started_at, now),
            usage,
            answered_by,
        )
        .with_kind(kind);
        if first {
            record = record.first_write();
        }
        let record = record.engine_kept();
        let kept_by_engine = matches!(record.outcome, WarmOutcome::Resident | WarmOutcome::Saved);
        c.last_warm_output = usage.output_tokens;
        c.gap_last_hit_read = (record.outcome == WarmOutcome::Hit || kept_by_engine)
            .then_some(usage.cache_read_tokens);
        match record.outcome {
            WarmOutcome::Uncached => c.stopped = Some(StopReason::NothingCached),
            // Saved once per gap: the next turn restores it.
            WarmOutcome::Saved => c.stopped = Some(StopReason::SavedOnEngine),
            _ => {}
        }
        c.stats.last_pct = record.pct;
        c.stats.last_expected_pct = record.expected_pct;
        c.stats.last_warm_at = Some(now);
        c.stats.warm_count += 1;
        c.stats.last_error = None;
        c.prefix_tokens = usage.prompt_tokens();
        let seconds = record.latency_ms() as f64 / 1000.0;
        c.stats.ledger.warm_seconds += seconds;
        match record.outcome {
            // What a replay of a resident prefix took is what a check
            // found needless: the engine time it saved.
            WarmOutcome::Hit => c.replay_seconds = seconds as f32,
            WarmOutcome::Resident => {
                c.stats.ledger.replays_avoided += 1;
                c.stats.ledger.engine_seconds_saved += f64::from(c.replay_seconds);
            }
            _ => {}
        }
        let conversation = &self.conversations[slot as usize];
        // An extension reads nothing: it buys the cache storage. A check
        // or a save reads no tokens at all.
        let cost = if kept_by_engine {
            0.0
        } else if kind == Some(WarmKind::Extended) {
            conversation.extension_cost(&self.config, usage.cache_read_tokens)
        } else {
            conversation.economics(&self.config).usage_cost(&usage)
        };
        self.conv(slot).stats.ledger.spent_dollars += cost;
        self.spent(slot, cost);
        self.reconcile(slot, now, true);
        if let Some(backend) = backend {
            let _ = self.backend_resolved(now, id, backend);
        }
        self.notify(slot);
        self.out.writes.push_back(Write::Record {
            record,
            answers: Some(token),
        });
        true
    }

    /// A warm failed. Returns `false` for a stale token (nothing changes);
    /// else its history record comes out as [`Write::Record`] naming
    /// `token`. The error becomes `lastError` and, if warming is on, a retry
    /// is armed with backoff, never later than one interval.
    pub fn warm_failed(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        token: WarmToken,
        failure: WarmFailure,
    ) -> bool {
        let now = self.tick(now);
        let Some(slot) = self.slot_of(id) else {
            return false;
        };
        let limits = self.config.limits;
        let c = self.conv(slot);
        let Some(flight) = c.in_flight.filter(|f| f.token == token && !c.active) else {
            return false;
        };
        c.in_flight = None;
        c.failures = c.failures.saturating_add(1);
        let error: Arc<str> = Arc::from(failure.message);
        c.stats.last_error = Some(error.clone());
        if failure.refused {
            c.stopped = Some(StopReason::Refused);
        }
        let record = WarmRecord::unanswered(
            c.id.clone(),
            flight.trigger,
            (flight.due_at, flight.started_at, now),
            WarmOutcome::Failed,
            error,
            c.backend.clone(),
        );
        let (failures, interval_ms, may_schedule) =
            (c.failures, c.interval_ms(&limits), c.may_schedule());
        if may_schedule {
            let delay = self.retry_delay(failures, failure.retry_after, interval_ms);
            self.arm(slot, now.plus_millis(delay), WarmTrigger::Retry, true);
        } else {
            self.disarm(slot);
        }
        self.notify(slot);
        self.out.writes.push_back(Write::Record {
            record,
            answers: Some(token),
        });
        true
    }

    /// Records the usage of a real turn (seen by a proxy) in history, with
    /// trigger [`WarmTrigger::Turn`], and counts a returning one (any but
    /// the conversation's first) in its [`TurnReads`](crate::TurnReads).
    /// Warm stats are not touched: `lastPct` stays the last warm's. The
    /// record comes out as [`Write::Record`]; returns `false` (and records
    /// nothing) for a conversation never seen.
    pub fn record_turn(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        started_at: Timestamp,
        usage: Usage,
    ) -> bool {
        let now = self.tick(now);
        let Some(slot) = self.slot_of(id) else {
            return false;
        };
        let premium = self.retention_premium(slot, &usage);
        let c = self.conv(slot);
        let first = c.caches_nothing_yet();
        // What this turn added to the prefix (a miss re-writes it all, but
        // the retention's premium is paid on the growth once cached).
        let grown = usage.prompt_tokens().saturating_sub(c.prefix_tokens);
        c.last_written = (c.prefix_tokens > 0).then_some(grown);
        c.prefix_tokens = usage.prompt_tokens();
        if premium > 0.0 {
            c.stats.ledger.retention_premium_dollars += premium;
            c.stats.ledger.spent_dollars += premium;
        }
        let mut record = WarmRecord::answered(
            c.id.clone(),
            WarmTrigger::Turn,
            (started_at, started_at.min(now), now),
            usage,
            c.backend.clone(),
        );
        if first {
            record = record.first_write();
        }
        if c.depth > 1 {
            c.turns.returning += 1;
            c.turns.hits += u64::from(record.outcome == WarmOutcome::Hit);
            c.turns.last_pct = record.pct;
        }
        self.out.writes.push_back(Write::Record {
            record,
            answers: None,
        });
        if premium > 0.0 {
            self.spent(slot, premium);
        }
        true
    }

    /// A request of the conversation was rewritten, as its plan said
    /// ([`KeepAlive::Upgrade`](crate::KeepAlive::Upgrade)), to ask the
    /// provider for its longer retention. History records when and why;
    /// from then on the premium its turns pay on their writes is counted in
    /// its ledger (`retention_premium_dollars`). The request's template,
    /// settled next, asks for the retention, and replays stop if the plan
    /// then says [`KeepAlive::None`](crate::KeepAlive::None). Returns
    /// `false`, changing nothing, for a conversation never seen.
    pub fn request_upgraded(&mut self, now: Timestamp, id: &ConversationId) -> bool {
        let now = self.tick(now);
        let Some(slot) = self.slot_of(id) else {
            return false;
        };
        let why = self.conversations[slot as usize].plan(&self.config).why;
        let c = self.conv(slot);
        c.upgraded_at = Some(now);
        let record = WarmRecord::unanswered(
            c.id.clone(),
            WarmTrigger::Turn,
            (now, now, now),
            WarmOutcome::Upgraded,
            Arc::from(why.to_string()),
            c.backend.clone(),
        );
        self.out.writes.push_back(Write::Record {
            record,
            answers: None,
        });
        self.notify(slot);
        true
    }

    /// What a turn's writes cost over the short retention's price, for a
    /// conversation whose requests warming upgraded to the longer one.
    fn retention_premium(&self, slot: u32, usage: &Usage) -> f64 {
        let c = &self.conversations[slot as usize];
        if c.upgraded_at.is_none() || !c.long_ttl() {
            return 0.0;
        }
        let long = c.economics(&self.config);
        let model = c.template.as_deref().and_then(crate::Template::model);
        let (short, _) = crate::economics_for(
            model,
            false,
            &self.config.price_overrides,
            &self.config.list_prices,
            &self.config.economics,
        );
        let premium = (long.long_write_multiplier - short.write_multiplier).max(0.0);
        premium * usage.cache_write_tokens as f64 * long.input_price
    }

    /// Reports whether a requested write committed. On success the change is
    /// applied (unless a newer write already was) and subscribers notified;
    /// on failure memory stays as it was.
    pub fn persisted(&mut self, now: Timestamp, op: PersistId, committed: bool) {
        let now = self.tick(now);
        let Some(pending) = self.pending.remove(&op.seq()) else {
            return;
        };
        let slot = match pending {
            Pending::Settings { slot, .. }
            | Pending::Close { slot, .. }
            | Pending::Backend { slot, .. }
            | Pending::Delete { slot } => slot,
        };
        if self.conversations[slot as usize].deleted {
            return;
        }
        match pending {
            Pending::Close { slot, settings } if committed => self.conv(slot).stored = settings,
            Pending::Close { slot, .. } => {
                // Memory goes back to what is stored, but the timer stays
                // off: the person asked for warming to stop, and a warm
                // they did not want costs more than one they must re-ask.
                let c = self.conv(slot);
                if c.settings_issued == op.seq() {
                    let stored = c.stored;
                    c.settings = stored;
                    c.projected = stored;
                    if stored.enabled {
                        c.stopped = Some(StopReason::CloseNotStored);
                    }
                    self.notify(slot);
                }
            }
            Pending::Settings { slot, settings } => {
                let limits = self.config.limits;
                let c = self.conv(slot);
                if !committed {
                    if c.settings_issued == op.seq() {
                        c.projected = c.settings;
                    }
                    return;
                }
                c.stored = settings;
                if op.seq() < c.settings_applied {
                    return;
                }
                c.configured = true;
                let long = c.long_ttl();
                let interval_changed = c.settings.effective_interval_ms(long, &limits)
                    != settings.effective_interval_ms(long, &limits);
                // Turning warming on again, or choosing another policy, lifts
                // a stop; turning it on restarts the idle cap's count.
                if settings.enabled && !c.settings.enabled {
                    c.stopped = None;
                    if !c.active {
                        c.idle_since = Some(now);
                    }
                }
                if settings.policy != c.settings.policy || settings.enrolled != c.settings.enrolled
                {
                    c.stopped = None;
                }
                c.settings = settings;
                c.settings_applied = op.seq();
                self.reconcile(slot, now, interval_changed);
                self.notify(slot);
            }
            Pending::Backend { slot, backend } => {
                let c = self.conv(slot);
                if committed && op.seq() > c.backend_applied {
                    c.backend = Some(backend);
                    c.backend_applied = op.seq();
                    self.notify(slot);
                }
            }
            Pending::Delete { slot } if committed => self.forget(slot),
            Pending::Delete { .. } => {}
        }
    }

    /// The store refused the writes of a settle that brought `refused` as
    /// the template: the conversation goes back to `previous`, the template
    /// still stored, so memory holds what the disk does. The turn's end
    /// stands: it happened. Does nothing if a newer template came since.
    pub fn template_not_stored(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        refused: &Arc<crate::Template>,
        previous: Option<Arc<crate::Template>>,
    ) {
        let now = self.tick(now);
        let Some(slot) = self.slot_of(id) else {
            return;
        };
        let c = self.conv(slot);
        if !c.template.as_ref().is_some_and(|t| Arc::ptr_eq(t, refused)) {
            return;
        }
        c.template = previous;
        self.invalidate_in_flight(slot);
        self.reconcile(slot, now, true);
        self.notify(slot);
    }
}
