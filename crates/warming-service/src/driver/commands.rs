//! One handler per command the adapters send (`Command`), each with the
//! time it runs at. The dispatcher (`Driver::handle_now`) carries out the
//! engine's outputs after each.

use std::collections::HashSet;
use std::sync::Arc;

use warming_core::{
    ConversationId, ConversationState, ReturnPrior, RuntimeEvent, SettingsChange, Template,
    Timestamp, WarmRecord,
};

use super::handle::{ProxiedTurn, Reply};
use super::{all_stored, reply_when_stored, Driver, PersistWaiter, Refused};
use crate::ServiceError;

/// A command's answer: a conversation's state, or why not.
type StateReply = Reply<Result<ConversationState, ServiceError>>;

impl Driver {
    /// `turn-started`: answered once its writes committed.
    pub(super) fn on_turn_started(&mut self, t: Timestamp, id: ConversationId, reply: StateReply) {
        let ((), acks) = self.durably(|warmer| warmer.turn_started(t, &id));
        reply_when_stored(acks, reply, self.warmer.state(&id));
    }

    /// `turn-settled`: answered once its writes committed; if they fail,
    /// the template is taken back (`Refused`).
    pub(super) fn on_turn_settled(
        &mut self,
        t: Timestamp,
        id: ConversationId,
        template: Option<Arc<Template>>,
        request_started_at: Option<Timestamp>,
        reply: StateReply,
    ) {
        let previous = self.warmer.template(&id);
        let ((), acks) = self.durably(|warmer| {
            warmer.turn_settled(t, &id, template.clone(), request_started_at);
        });
        let state = self.warmer.state(&id);
        // What the engine now holds (detached when the engine keeps
        // templates so): the one to take back if the writes fail.
        let Some(installed) = template.and_then(|_| self.warmer.template(&id)) else {
            reply_when_stored(acks, reply, state);
            return;
        };
        let refused = self.refused.clone();
        tokio::spawn(async move {
            match all_stored(acks).await {
                Ok(()) => drop(reply.send(Ok(state))),
                Err(error) => drop(refused.send(Refused {
                    id,
                    template: installed,
                    previous,
                    error,
                    reply,
                })),
            }
        });
    }

    /// Runtime events: answers how many were applied and ignored.
    pub(super) fn on_events(
        &mut self,
        t: Timestamp,
        events: Vec<RuntimeEvent>,
        reply: Reply<Result<(usize, usize), ServiceError>>,
    ) {
        let total = events.len();
        let (applied, acks) = self.durably(|warmer| {
            events
                .into_iter()
                .map(|event| warmer.runtime_event(t, event))
                .filter(|d| *d == warming_core::EventDisposition::Applied)
                .count()
        });
        reply_when_stored(acks, reply, (applied, total - applied));
    }

    /// `waiting`: only a running turn can wait.
    pub(super) fn on_waiting(&mut self, t: Timestamp, id: ConversationId, reply: StateReply) {
        let (waiting, acks) = self.durably(|warmer| warmer.turn_waiting(t, &id));
        if waiting {
            reply_when_stored(acks, reply, self.warmer.state(&id));
        } else {
            let _ = reply.send(Err(ServiceError::Conflict(
                "no turn is in progress: only a running turn can wait (report turn-started \
                 first)"
                    .into(),
            )));
        }
    }

    /// A settings change: answered once written (`persist_finished`).
    pub(super) fn on_update(
        &mut self,
        t: Timestamp,
        id: ConversationId,
        change: SettingsChange,
        reply: StateReply,
    ) {
        let op = self.warmer.update_settings(t, &id, change);
        self.persist_waiters
            .insert(op, PersistWaiter::Settings(id, reply));
    }

    /// Warming on, off, or flipped (`None`).
    pub(super) fn on_toggle(
        &mut self,
        t: Timestamp,
        id: ConversationId,
        enabled: Option<bool>,
        reply: StateReply,
    ) {
        let enabled = enabled.unwrap_or_else(|| !self.warmer.state(&id).enabled);
        let change = SettingsChange {
            enabled: Some(enabled),
            ..SettingsChange::default()
        };
        self.on_update(t, id, change, reply);
    }

    /// A manual warm: answered with its record (`carry_out_write`).
    pub(super) fn on_warm_now(
        &mut self,
        t: Timestamp,
        id: &ConversationId,
        reply: Reply<Result<WarmRecord, ServiceError>>,
    ) {
        match self.warmer.warm_now(t, id) {
            Ok(token) => {
                self.manual.insert(token, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(ServiceError::Conflict(e.to_string())));
            }
        }
    }

    /// `close`: warming off at once, answered once written.
    pub(super) fn on_close(&mut self, t: Timestamp, id: ConversationId, reply: StateReply) {
        let op = self.warmer.close(t, &id);
        self.persist_waiters
            .insert(op, PersistWaiter::Settings(id, reply));
    }

    /// A delete: forgotten once written.
    pub(super) fn on_delete(&mut self, t: Timestamp, id: ConversationId, reply: StateReply) {
        match self.warmer.delete(t, &id) {
            Some(op) => {
                self.persist_waiters
                    .insert(op, PersistWaiter::Settings(id, reply));
            }
            None => {
                let _ = reply.send(Err(ServiceError::NotFound(format!(
                    "no conversation {id}: nothing to delete"
                ))));
            }
        }
    }

    /// Blanket enrolment (`x-warming`, `--proxy-warming on`).
    pub(super) fn on_enroll(
        &mut self,
        t: Timestamp,
        id: ConversationId,
        interval_ms: Option<f64>,
        reply: StateReply,
    ) {
        match self.warmer.enroll(t, &id, interval_ms) {
            Some(op) => {
                self.persist_waiters
                    .insert(op, PersistWaiter::Settings(id, reply));
            }
            None => {
                let _ = reply.send(Ok(self.warmer.state(&id)));
            }
        }
    }

    /// The end of a proxied turn: its template, usage and backend.
    pub(super) fn on_proxy_settled(&mut self, t: Timestamp, turn: ProxiedTurn) {
        let id = turn.id;
        // A conversation with a template settled a turn before: this one
        // came back to whatever the cache kept.
        let returning = self.warmer.template(&id).is_some();
        self.warmer
            .turn_settled(t, &id, turn.template, Some(turn.started_at));
        if let (Some(usage), Some(engine)) = (turn.usage, self.options.engine.clone()) {
            // Where the engine keeps it now, for the next warm's check:
            // expected before the settle below can fire a warm.
            let id = id.clone();
            engine.expect(&id, usage);
            tokio::spawn(async move { engine.observe(&id, usage).await });
        }
        if let Some(usage) = turn.usage {
            // Its record is counted as a returning turn's as it comes out
            // (`carry_out_write`).
            self.returning_turn = returning.then(|| id.clone());
            self.warmer.record_turn(t, &id, turn.started_at, usage);
        }
        if let Some(backend) = turn.backend {
            let _ = self.warmer.backend_resolved(t, &id, &backend);
        }
    }

    /// A page of history, read after every write queued before it (read
    /// your own writes), off the driver.
    pub(super) fn on_history(
        &mut self,
        id: ConversationId,
        limit: usize,
        reply: Reply<Result<Vec<WarmRecord>, ServiceError>>,
    ) {
        let store = self.storage.clone();
        let flushed = store.flush();
        tokio::spawn(async move {
            let answer = match flushed.await {
                Err(e) => Err(ServiceError::from(e)),
                Ok(()) => tokio::task::spawn_blocking(move || store.history(&id, limit))
                    .await
                    .map_err(ServiceError::storage_task)
                    .and_then(|read| read.map_err(ServiceError::from)),
            };
            let _ = reply.send(answer);
        });
    }

    /// What this instance learned since it last shared.
    pub(super) fn on_prior_learned(&mut self, reply: Reply<ReturnPrior>) {
        let now = self.warmer.prior().clone();
        let _ = reply.send(now.since(&self.prior_base));
        self.prior_sent = Some(now);
    }

    /// The cluster's merged prior.
    pub(super) fn on_prior_shared(&mut self, total: &ReturnPrior) {
        // What was learned while the merge ran is not in `total` yet: kept
        // on top, and counted in the next share.
        let sent = self
            .prior_sent
            .take()
            .unwrap_or_else(|| self.prior_base.clone());
        let newer = self.warmer.prior().since(&sent);
        let mut merged = total.clone();
        merged.add(&newer);
        self.warmer.set_prior(merged);
        self.prior_base = total.clone();
    }

    /// Lets go of what other instances adopted while the lease had lapsed.
    pub(super) fn on_keep_only(
        &mut self,
        t: Timestamp,
        held: &HashSet<ConversationId>,
        reply: Reply<usize>,
    ) {
        let gone: Vec<ConversationId> = self
            .warmer
            .conversations()
            .map(|s| s.conversation_id)
            .filter(|id| !held.contains(id))
            .collect();
        for id in &gone {
            self.warmer.release(t, id);
        }
        if !gone.is_empty() {
            tracing::warn!(
                conversations = gone.len(),
                "let go of conversations other instances adopted while the lease had lapsed"
            );
        }
        let _ = reply.send(gone.len());
    }

    /// Conversations adopted from the cluster, those not known yet.
    pub(super) fn on_adopt(
        &mut self,
        t: Timestamp,
        restored: Vec<warming_core::Restored>,
        reply: Reply<usize>,
    ) {
        let new: Vec<_> = restored
            .into_iter()
            .filter(|r| !self.warmer.knows(&r.conversation))
            .collect();
        for r in &new {
            self.evicted.remove(&r.conversation);
        }
        let count = new.len();
        self.warmer.restore(t, new);
        let _ = reply.send(count);
    }

    /// States of stored conversations: live for those held here, as
    /// stored for the others.
    pub(super) fn on_stored_states(
        &mut self,
        rows: &[(warming_core::Restored, bool)],
        reply: Reply<Vec<ConversationState>>,
    ) {
        let states = rows
            .iter()
            .map(|(stored, mine)| {
                if *mine && self.warmer.knows(&stored.conversation) {
                    self.warmer.state(&stored.conversation)
                } else {
                    self.warmer.stored_state(stored)
                }
            })
            .collect();
        let _ = reply.send(states);
    }
}
