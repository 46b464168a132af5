//! The engine's inputs: lifecycle, user commands and effect outcomes.

use std::sync::Arc;

use super::conversation::OWN_GAPS;
use super::{Pending, Restored, Warmer};
use crate::lifecycle::{guard, LifecycleStep};
use crate::{
    decide, minimum_cacheable_tokens, ConversationId, Effect, EventDisposition, GapView, PersistId,
    RuntimeEvent, RuntimeEventKind, SessionState, SettingsChange, StopReason, Template, Timestamp,
    Usage, WarmKind, WarmOutcome, WarmRecord, WarmToken, WarmTrigger,
};

/// Why a manual warm was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmNowError {
    /// A turn is generating; it keeps the cache warm by itself.
    Active,
    /// No turn has settled yet, so there is nothing to replay.
    NoTemplate,
}

impl std::fmt::Display for WarmNowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Active => "a turn is in progress",
            Self::NoTemplate => "no turn has settled yet: nothing to warm",
        })
    }
}

impl std::error::Error for WarmNowError {}

/// Why a warm did not get a usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmFailure {
    /// A readable reason, shown as `lastError`.
    pub message: String,
    /// How long the provider asked to wait (HTTP `retry-after`), in ms.
    pub retry_after_ms: Option<u64>,
    /// The provider refused the request itself (a 4xx other than a rate
    /// limit): the same warm would be refused again, so warming stops
    /// instead of retrying ([`StopReason::Refused`]).
    pub refused: bool,
}

/// What a warm's answer told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmReply<'a> {
    /// The provider's token counts.
    pub usage: Usage,
    /// The backend that served it, if the upstream named one.
    pub backend: Option<&'a str>,
    /// Which request was sent.
    pub kind: Option<WarmKind>,
}

impl Warmer {
    /// A turn started: the conversation is active, its timer is cancelled
    /// and an in-flight warm is invalidated.
    #[doc(alias = "invalidate")]
    #[doc(alias = "pause")]
    pub fn turn_started(&mut self, now: Timestamp, id: &ConversationId) {
        let now = self.tick(now);
        let slot = self.ensure(id);
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

    /// A warm answered. Returns its history record, or `None` when the token
    /// is stale (superseded, or the conversation turned active), in which
    /// case nothing changes.
    ///
    /// The next warm is due one interval after this warm *started*, because
    /// the provider's TTL restarts when a request reads the cache.
    pub fn warm_completed(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        token: WarmToken,
        usage: Usage,
    ) -> Option<WarmRecord> {
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
    ) -> Option<WarmRecord> {
        let WarmReply {
            usage,
            backend,
            kind,
        } = reply;
        let now = self.tick(now);
        let slot = self.slot_of(id)?;
        let c = self.conv(slot);
        let flight = c.in_flight.filter(|f| f.token == token && !c.active)?;
        c.in_flight = None;
        c.failures = 0;
        c.last_touch = c.last_touch.max(Some(flight.started_at));
        let answered_by = backend.map(Arc::from).or_else(|| c.backend.clone());
        let mut record = WarmRecord::answered(
            c.id.clone(),
            flight.trigger,
            (flight.due_at, flight.started_at, now),
            usage,
            answered_by,
        );
        record.kind = kind;
        c.last_warm_output = usage.output_tokens;
        c.gap_last_hit_read =
            (record.outcome == WarmOutcome::Hit).then_some(usage.cache_read_tokens);
        if record.outcome == WarmOutcome::Uncached {
            c.stopped = Some(StopReason::NothingCached);
        }
        c.stats.last_pct = record.pct;
        c.stats.last_expected_pct = record.expected_pct;
        c.stats.last_warm_at = Some(now);
        c.stats.warm_count += 1;
        c.stats.last_error = None;
        c.prefix_tokens = usage.prompt_tokens();
        self.effects.push_back(Effect::RecordWarm(record.clone()));
        self.reconcile(slot, now, true);
        if let Some(backend) = backend {
            let _ = self.backend_resolved(now, id, backend);
        }
        self.notify(slot);
        Some(record)
    }

    /// A warm failed. Returns its history record, or `None` for a stale
    /// token. The error becomes `lastError` and, if warming is on, a retry is
    /// armed with backoff, never later than one interval.
    pub fn warm_failed(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        token: WarmToken,
        failure: WarmFailure,
    ) -> Option<WarmRecord> {
        let now = self.tick(now);
        let slot = self.slot_of(id)?;
        let limits = self.config.limits;
        let c = self.conv(slot);
        let flight = c.in_flight.filter(|f| f.token == token && !c.active)?;
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
        self.effects.push_back(Effect::RecordWarm(record.clone()));
        if may_schedule {
            let delay = self.retry_delay(failures, failure.retry_after_ms, interval_ms);
            self.arm(slot, now.plus_millis(delay), WarmTrigger::Retry, true);
        } else {
            self.disarm(slot);
        }
        self.notify(slot);
        Some(record)
    }

    /// Records the usage of a real turn (seen by a proxy) in history, with
    /// trigger [`WarmTrigger::Turn`]. Warm stats are not touched: `lastPct`
    /// stays the last warm's. Returns the record, or `None` for a conversation
    /// never seen.
    pub fn record_turn(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        started_at: Timestamp,
        usage: Usage,
    ) -> Option<WarmRecord> {
        let now = self.tick(now);
        let slot = self.slot_of(id)?;
        let c = self.conv(slot);
        c.prefix_tokens = usage.prompt_tokens();
        let record = WarmRecord::answered(
            c.id.clone(),
            WarmTrigger::Turn,
            (started_at, started_at.min(now), now),
            usage,
            c.backend.clone(),
        );
        self.effects.push_back(Effect::RecordWarm(record.clone()));
        Some(record)
    }

    /// A manual warm, sent now on the same path as a timed one. On success
    /// the cycle restarts from now. Works while warming is off (it then warms
    /// once and arms nothing).
    ///
    /// # Errors
    /// [`WarmNowError::Active`] while a turn generates;
    /// [`WarmNowError::NoTemplate`] before the first settled turn.
    pub fn warm_now(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
    ) -> Result<WarmToken, WarmNowError> {
        let now = self.tick(now);
        let slot = self.slot_of(id).ok_or(WarmNowError::NoTemplate)?;
        let c = self.conv(slot);
        if c.active {
            return Err(WarmNowError::Active);
        }
        if c.template.is_none() {
            return Err(WarmNowError::NoTemplate);
        }
        // Someone wants this conversation warm: a stop is lifted and the
        // idle cap counts again from now.
        c.stopped = None;
        c.idle_since = Some(now);
        c.warms_in_gap += 1;
        self.invalidate_in_flight(slot);
        self.disarm(slot);
        Ok(self.fire(slot, WarmTrigger::Manual, now, now))
    }

    /// Asks to change settings. Emits [`Effect::PersistSettings`]; memory
    /// changes (and subscribers hear of it) only when the caller reports the
    /// write with [`persisted`](Self::persisted). Intervals are clamped.
    #[must_use = "report the write's result with `persisted`"]
    pub fn update_settings(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        change: SettingsChange,
    ) -> PersistId {
        self.tick(now);
        let slot = self.ensure(id);
        let op = self.next_op();
        let limits = self.config.limits;
        let c = self.conv(slot);
        let settings = change.apply(c.projected, &limits);
        c.projected = settings;
        c.settings_issued = op;
        let conversation = c.id.clone();
        self.pending.insert(
            op,
            Pending::Settings {
                slot,
                settings,
                eager: false,
            },
        );
        self.effects.push_back(Effect::PersistSettings {
            op: PersistId(op),
            conversation,
            settings,
        });
        PersistId(op)
    }

    /// The user is done with the conversation: warming is disabled in memory
    /// at once (so a racing settle cannot re-arm), the timer cancelled, the
    /// in-flight warm and generation aborted, `enabled: false` persisted
    /// (interval kept) and subscribers notified.
    #[must_use = "report the write's result with `persisted`"]
    pub fn close(&mut self, now: Timestamp, id: &ConversationId) -> PersistId {
        self.tick(now);
        let slot = self.ensure(id);
        let op = self.next_op();
        let c = self.conv(slot);
        let settings = crate::Settings {
            enabled: false,
            ..c.projected
        };
        c.settings = settings;
        c.projected = settings;
        c.settings_applied = op;
        c.settings_issued = op;
        c.configured = true;
        c.active = false;
        c.active_turn = None;
        c.turn_started_at = None;
        let conversation = c.id.clone();
        self.invalidate_in_flight(slot);
        self.disarm(slot);
        self.effects.push_back(Effect::AbortGeneration {
            conversation: conversation.clone(),
        });
        self.pending.insert(
            op,
            Pending::Settings {
                slot,
                settings,
                eager: true,
            },
        );
        self.effects.push_back(Effect::PersistSettings {
            op: PersistId(op),
            conversation,
            settings,
        });
        self.notify(slot);
        PersistId(op)
    }

    /// The upstream named the backend that served the conversation. A new id
    /// is persisted first ([`Effect::PersistBackend`]) and adopted only once
    /// the write is confirmed; a failed write keeps the old id, so the next
    /// report retries. Returns the write to report, or `None` if unchanged.
    #[must_use = "report the write's result with `persisted`"]
    pub fn backend_resolved(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        backend: &str,
    ) -> Option<PersistId> {
        self.tick(now);
        let slot = self.ensure(id);
        if self.conv(slot).backend.as_deref() == Some(backend) {
            return None;
        }
        let op = self.next_op();
        let backend: Arc<str> = Arc::from(backend);
        let conversation = self.conv(slot).id.clone();
        self.pending.insert(
            op,
            Pending::Backend {
                slot,
                backend: backend.clone(),
            },
        );
        self.effects.push_back(Effect::PersistBackend {
            op: PersistId(op),
            conversation,
            backend,
        });
        Some(PersistId(op))
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
            | Pending::Backend { slot, .. }
            | Pending::Delete { slot } => slot,
        };
        if self.conversations[slot as usize].deleted {
            return;
        }
        match pending {
            Pending::Settings { eager: true, .. } => {}
            Pending::Settings {
                slot,
                settings,
                eager: false,
            } => {
                let limits = self.config.limits;
                let c = self.conv(slot);
                if !committed {
                    if c.settings_issued == op.seq() {
                        c.projected = c.settings;
                    }
                    return;
                }
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

    /// Enrols a conversation nobody has decided about yet: warming on, under
    /// [`Config::enrolled_policy`](crate::Config::enrolled_policy), at `interval_ms` if given (clamped). For
    /// blanket opt-ins such as "warm every proxied conversation". Returns the
    /// write to report with [`persisted`](Self::persisted), or `None` when
    /// the conversation's settings were already decided (a person's `off`
    /// stays off) or a decision is being written.
    #[must_use = "report the write's result with `persisted`"]
    pub fn enroll(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        interval_ms: Option<f64>,
    ) -> Option<PersistId> {
        self.tick(now);
        if let Some(slot) = self.slot_of(id) {
            let c = &self.conversations[slot as usize];
            // Decided, or a decision (perhaps a person's) is being written.
            if c.configured || c.projected != c.settings {
                return None;
            }
        }
        let slot = self.ensure(id);
        let op = self.next_op();
        let limits = self.config.limits;
        let c = self.conv(slot);
        let settings = crate::Settings {
            enabled: true,
            enrolled: true,
            interval_ms: interval_ms.map_or(c.projected.interval_ms, |ms| limits.clamp(ms)),
            interval_chosen: interval_ms.is_some(),
            ..c.projected
        };
        c.projected = settings;
        c.settings_issued = op;
        let conversation = c.id.clone();
        self.pending.insert(
            op,
            Pending::Settings {
                slot,
                settings,
                eager: false,
            },
        );
        self.effects.push_back(Effect::PersistSettings {
            op: PersistId(op),
            conversation,
            settings,
        });
        Some(PersistId(op))
    }

    /// Deletes a conversation: once the caller confirms the delete with
    /// [`persisted`](Self::persisted), its timer, in-flight warm and
    /// generation are cancelled, it leaves [`conversations`](Self::conversations),
    /// and subscribers get its default state (`known: false`). A failed
    /// delete changes nothing. Returns `None` for a conversation never seen.
    #[must_use = "report the write's result with `persisted`"]
    pub fn delete(&mut self, now: Timestamp, id: &ConversationId) -> Option<PersistId> {
        self.tick(now);
        let slot = self.slot_of(id)?;
        let op = self.next_op();
        self.pending.insert(op, Pending::Delete { slot });
        self.effects.push_back(Effect::PersistDelete {
            op: PersistId(op),
            conversation: id.clone(),
        });
        Some(PersistId(op))
    }

    /// Removes a deleted conversation from the index; its slot stays as a
    /// tombstone so stale slot numbers stay harmless.
    fn forget(&mut self, slot: u32) {
        self.invalidate_in_flight(slot);
        self.disarm_quietly(slot);
        let c = self.conv(slot);
        c.deleted = true;
        c.template = None;
        c.own_gaps = Vec::new();
        c.stopped = None;
        let id = c.id.clone();
        self.slots.remove(&id);
        self.effects.push_back(Effect::AbortGeneration {
            conversation: id.clone(),
        });
        let state = self.state(&id);
        self.effects.push_back(Effect::Notify(state));
    }

    /// Loads conversations from storage at start. Enabled conversations with
    /// a template resume warming: at their stored next warm if it is still
    /// ahead, else after the configured restore delay (once, not once per
    /// missed interval). Conversations already known are left alone.
    pub fn restore(&mut self, now: Timestamp, conversations: impl IntoIterator<Item = Restored>) {
        let now = self.tick(now);
        let limits = self.config.limits;
        let restore_at = now.plus_millis(self.config.restore_delay_ms.max(1));
        for restored in conversations {
            if self.knows(&restored.conversation) {
                continue;
            }
            let slot = self.ensure(&restored.conversation);
            let c = self.conv(slot);
            c.configured = restored.settings.is_some();
            let stored = restored
                .settings
                .unwrap_or_else(|| crate::Settings::defaults(&limits));
            let settings = crate::Settings {
                interval_ms: stored.interval_ms.clamp(limits.min_ms, limits.max_ms),
                ..stored
            };
            c.settings = settings;
            c.projected = settings;
            c.template = restored.template.map(Arc::new);
            c.backend = restored.backend.map(Arc::from);
            c.stats = restored.stats;
            c.depth = restored.depth;
            c.own_gaps = restored.gaps;
            c.own_gaps.truncate(OWN_GAPS);
            // Stored before the idle cap existed: the cap counts from now.
            c.idle_since = Some(restored.idle_since.unwrap_or(now).min(now));
            if c.may_schedule() {
                let at = restored
                    .next_warm_at
                    .filter(|&at| at > now)
                    .unwrap_or(restore_at);
                self.arm(slot, at, WarmTrigger::Scheduled, false);
            }
        }
    }

    /// Cancels every timer and forgets in-flight warms, for a shutdown. The
    /// stored schedules are kept, so a restart resumes them.
    pub fn shutdown(&mut self) {
        for (_, slot) in std::mem::take(&mut self.deadlines) {
            self.conv(slot).deadline = None;
        }
        for c in &mut self.conversations {
            c.in_flight = None;
        }
    }

    /// What stops a timed warm under every policy: the spend guard (idle
    /// for `max_idle_ms`) and a prefix too short for the provider to cache.
    pub(super) fn guard_allows(&self, slot: u32, now: Timestamp) -> Result<(), StopReason> {
        let c = &self.conversations[slot as usize];
        let max_idle_ms = self.config.max_idle_ms;
        let idle_ms = c.idle_since.map_or(0, |since| now.millis_since(since));
        if max_idle_ms > 0 && idle_ms >= max_idle_ms {
            return Err(StopReason::IdleCap { max_idle_ms });
        }
        if let Some(template) = &c.template {
            let model = template.model().unwrap_or_default();
            let minimum = minimum_cacheable_tokens(model, &self.config.min_cacheable_overrides);
            let estimate = template.cacheable_tokens_estimate();
            if estimate < minimum {
                return Err(StopReason::BelowMinimum { estimate, minimum });
            }
        }
        Ok(())
    }

    /// Stops timed warming of a conversation for `reason`: recorded in
    /// history (when it was due), the schedule cleared, subscribers told.
    pub(super) fn stop(
        &mut self,
        slot: u32,
        reason: StopReason,
        (trigger, due_at): (WarmTrigger, Timestamp),
        now: Timestamp,
    ) {
        let c = self.conv(slot);
        c.stopped = Some(reason);
        let conversation = c.id.clone();
        let record = WarmRecord::unanswered(
            conversation.clone(),
            trigger,
            (due_at, now, now),
            WarmOutcome::Stopped,
            Arc::from(reason.to_string()),
            c.backend.clone(),
        );
        self.effects.push_back(Effect::RecordWarm(record));
        self.effects.push_back(Effect::SaveSchedule {
            conversation,
            next_warm_at: None,
        });
        self.notify(slot);
    }

    /// Asks the conversation's policy whether its next timed warm is sent.
    fn policy_allows(&self, slot: u32, now: Timestamp) -> Result<(), StopReason> {
        let c = &self.conversations[slot as usize];
        let view = GapView {
            idle_ms: c.gap_start.map_or(0, |start| now.millis_since(start)),
            warms_in_gap: c.warms_in_gap,
            interval_ms: c.interval_ms(&self.config.limits),
            prefix_tokens: c.prefix_tokens,
            depth: c.depth,
            own_gaps: &c.own_gaps,
            warm_output_tokens: c.last_warm_output,
        };
        decide(
            c.policy(&self.config),
            &c.economics(&self.config.economics),
            &self.prior,
            &view,
        )
    }

    fn start_turn(&mut self, slot: u32, turn_id: Option<Box<str>>, now: Timestamp) {
        let c = self.conv(slot);
        if let Some(start) = c.gap_start.take() {
            // The user came back: one more gap learned, here and globally.
            let gap = now.millis_since(start);
            let depth = c.depth;
            let returned = Effect::TurnReturned {
                conversation: c.id.clone(),
                idle_ms: gap,
                warms: c.warms_in_gap,
                last_hit_read: c.gap_last_hit_read.take(),
            };
            self.effects.push_back(returned);
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

    fn settle(
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
            let rhythm = Effect::SaveRhythm {
                conversation: c.id.clone(),
                depth,
                gaps: c.own_gaps.clone(),
                idle_since: now,
            };
            self.effects.push_back(rhythm);
            let due = now.plus_millis(self.config.economics.ttl_ms);
            let seq = self.resolutions.open(due, depth);
            self.conv(slot).uncounted_turn = Some(seq);
        }
        let c = self.conv(slot);
        if let Some(template) = template {
            c.template = Some(template.clone());
            let conversation = c.id.clone();
            self.effects.push_back(Effect::SaveTemplate {
                conversation,
                template,
            });
        }
        // The turn's own requests refreshed the cache: a warm still in
        // flight is redundant and its timing is stale.
        self.invalidate_in_flight(slot);
        self.reconcile(slot, now, true);
        // Notified only now, after arming, so the update carries the new
        // future nextWarmAt (the CR-4b bug).
        self.notify(slot);
    }
}
