//! What people ask for: a warm now, settings, close, enrolment, delete, a
//! sticky backend; and the restore and shutdown of the whole engine.

use super::answers::WarmNowError;
use std::sync::Arc;

use super::conversation::OWN_GAPS;
use super::{Pending, Restored, Warmer};
use crate::{
    ConversationId, Event, PersistId, SettingsChange, Timestamp, WarmAction, WarmToken,
    WarmTrigger, Write,
};

impl Warmer {
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
        self.spend_cap_allows(slot)
            .map_err(WarmNowError::SpendCap)?;
        let c = self.conv(slot);
        // Someone wants this conversation warm: a stop is lifted and the
        // idle cap counts again from now.
        c.stopped = None;
        c.idle_since = Some(now);
        c.warms_in_gap += 1;
        self.invalidate_in_flight(slot);
        self.disarm(slot);
        Ok(self.fire(slot, WarmTrigger::Manual, now, now))
    }

    /// Asks to change settings. Emits [`Write::Settings`]; memory
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
        self.issue_settings(slot, op, settings)
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
        self.out.warms.push_back(WarmAction::AbortGeneration {
            conversation: conversation.clone(),
        });
        self.pending.insert(op, Pending::Close { slot, settings });
        self.out.writes.push_back(Write::Settings {
            ack: PersistId(op),
            conversation,
            settings,
        });
        self.notify(slot);
        PersistId(op)
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
        Some(self.issue_settings(slot, op, settings))
    }

    /// Asks for `settings` to be written as write `op`: memory changes only
    /// when [`persisted`](Self::persisted) confirms it, but the next change
    /// builds on it (`projected`).
    fn issue_settings(&mut self, slot: u32, op: u64, settings: crate::Settings) -> PersistId {
        let c = self.conv(slot);
        c.projected = settings;
        c.settings_issued = op;
        let conversation = c.id.clone();
        self.pending
            .insert(op, Pending::Settings { slot, settings });
        self.out.writes.push_back(Write::Settings {
            ack: PersistId(op),
            conversation,
            settings,
        });
        PersistId(op)
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
        self.out.writes.push_back(Write::Delete {
            ack: PersistId(op),
            conversation: id.clone(),
        });
        Some(PersistId(op))
    }

    /// Removes a deleted conversation from the index; its slot stays as a
    /// tombstone so stale slot numbers stay harmless.
    pub(super) fn forget(&mut self, slot: u32) {
        self.invalidate_in_flight(slot);
        self.disarm_quietly(slot);
        let id = self.retire(slot);
        self.out.warms.push_back(WarmAction::AbortGeneration {
            conversation: id.clone(),
        });
        let state = self.state(&id);
        self.out.events.push_back(Event::Changed(Arc::new(state)));
    }

    /// Another holder has the conversation now (a cluster member adopted it
    /// while this one's lease had lapsed): it leaves memory at once, its
    /// timer and in-flight warm dropped and nothing written, so only the
    /// new holder warms it. Writes for it still pending are forgotten.
    /// Returns whether it was held here.
    pub fn release(&mut self, now: Timestamp, id: &ConversationId) -> bool {
        self.tick(now);
        let Some(slot) = self.slot_of(id) else {
            return false;
        };
        self.invalidate_in_flight(slot);
        self.disarm_quietly(slot);
        self.pending.retain(|_, pending| {
            let held = match pending {
                Pending::Settings { slot, .. }
                | Pending::Close { slot, .. }
                | Pending::Backend { slot, .. }
                | Pending::Delete { slot } => *slot,
            };
            held != slot
        });
        // The slot is not reused (as after a delete): outcomes still on
        // their way may name it.
        self.retire(slot);
        true
    }

    /// The upstream named the backend that served the conversation. A new id
    /// is persisted first ([`Write::Backend`]) and adopted only once
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
        self.out.writes.push_back(Write::Backend {
            ack: PersistId(op),
            conversation,
            backend,
        });
        Some(PersistId(op))
    }

    /// Loads conversations from storage at start. Enabled conversations with
    /// a template resume warming: at their stored next warm if it is still
    /// ahead, else after the configured restore delay (once, not once per
    /// missed interval). Conversations already known are left alone.
    pub fn restore(&mut self, now: Timestamp, conversations: impl IntoIterator<Item = Restored>) {
        let now = self.tick(now);
        let limits = self.config.limits;
        let detach = self.config.detach_templates;
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
                interval_ms: limits.clamp_ms(stored.interval_ms),
                ..stored
            };
            c.settings = settings;
            c.projected = settings;
            c.stored = settings;
            c.template = restored
                .template
                .map(|t| Arc::new(if detach { t.detach() } else { t }));
            c.backend = restored.backend.map(Arc::from);
            c.stats = restored.stats;
            c.depth = restored.depth;
            c.own_gaps = restored.gaps;
            c.own_gaps.truncate(OWN_GAPS);
            // Stored before the idle cap existed: the cap counts from now.
            c.idle_since = Some(restored.idle_since.unwrap_or(now).min(now));
            self.restored_spend(slot);
            let c = self.conv(slot);
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
}
