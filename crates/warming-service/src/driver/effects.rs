//! Carrying out the engine's effects: warms through the provider, writes
//! through the store (their results reported back), records, notifications.

use warming_core::{Event, PersistId, Template, WarmAction, WarmFailure, WarmRecord, WarmRequest};

use super::{Driver, PersistWaiter, WarmDone, PRIOR_KEY};
use crate::ports::StoreError;
use crate::{ServiceError, Write};

impl Driver {
    /// Drains the engine's outputs and carries each out, in order: the
    /// writes first (a warm of a detached template reads back the body the
    /// write before it stores), then the warms, then the events.
    pub(super) fn execute_effects(&mut self) {
        loop {
            if let Some(write) = self.warmer.poll_write() {
                self.carry_out_write(write);
            } else if let Some(action) = self.warmer.poll_warm() {
                self.carry_out_warm(action);
            } else if let Some(event) = self.warmer.poll_event() {
                self.carry_out_event(event);
            } else {
                break;
            }
        }
        self.returning_turn = None;
    }

    fn carry_out_write(&mut self, write: warming_core::Write) {
        if let warming_core::Write::Record { record, answers } = write {
            if record.trigger == warming_core::WarmTrigger::Turn
                && self.returning_turn.as_ref() == Some(&record.conversation_id)
            {
                self.metrics.returning_turn(&record);
            }
            if let Some(reply) = answers.and_then(|token| self.manual.remove(&token)) {
                let answer = match (&record.outcome, &record.error) {
                    (warming_core::WarmOutcome::Failed, Some(error)) => {
                        Err(ServiceError::Upstream(error.to_string()))
                    }
                    _ => Ok(record.clone()),
                };
                let _ = reply.send(answer);
            }
            self.record(record);
            return;
        }
        let ack = write.ack();
        let Some(write) = Write::from_core(write) else {
            // A write this build does not know changes nothing it keeps.
            tracing::debug!("a write this build does not carry out");
            return;
        };
        match ack {
            Some(ack) => self.persist(ack, write),
            None => self.save(write),
        }
    }

    fn carry_out_warm(&mut self, action: WarmAction) {
        match action {
            WarmAction::Send(warm) => self.start_warm(warm),
            WarmAction::Abort {
                token,
                conversation,
            } => {
                if let Some((_, task)) = self.in_flight.remove(&token) {
                    task.abort();
                }
                if self
                    .held
                    .get(&conversation)
                    .is_some_and(|w| w.token == token)
                {
                    self.held.remove(&conversation);
                }
                if let Some(reply) = self.manual.remove(&token) {
                    let _ = reply.send(Err(ServiceError::Conflict(
                        "the warm was superseded by a new turn or a close".into(),
                    )));
                }
            }
            WarmAction::AbortGeneration { conversation } => {
                // Closed: its explicit cache goes first, while the
                // client's credentials are still here.
                self.release_explicit_cache(&conversation);
                if let Some(engine) = self.options.engine.clone() {
                    let id = conversation.clone();
                    tokio::spawn(async move { engine.forget(&id).await });
                }
                self.generations.abort(&conversation);
            }
            _ => tracing::debug!("a warm action this build does not carry out"),
        }
    }

    fn carry_out_event(&mut self, event: Event) {
        match event {
            Event::TurnReturned {
                conversation,
                miss_avoided_tokens: Some(tokens),
                ..
            } => {
                let template = self.warmer.template(&conversation);
                let template = template.as_deref();
                self.metrics.miss_avoided(
                    tokens,
                    template.and_then(Template::model),
                    template.is_some_and(Template::long_ttl),
                );
                self.save_ledger(conversation);
            }
            Event::TurnReturned {
                conversation,
                warms,
                ..
            } => {
                if warms > 0 {
                    self.metrics.unrepaid_warms(warms);
                    self.save_ledger(conversation);
                }
            }
            Event::Changed(state) => {
                let _ = self.updates.send(state);
            }
            _ => tracing::debug!("an event this build does not carry out"),
        }
    }

    /// Stores a write the core asked for: acknowledged when a durable
    /// command waits for it, else behind (nobody waits).
    pub(super) fn save(&mut self, write: Write) {
        match &mut self.acks {
            Some(acks) => acks.push(self.storage.submit(write)),
            None => self.storage.submit_behind(write),
        }
    }

    /// Keeps a history record: counted in the metrics, stored behind.
    pub(super) fn record(&self, record: WarmRecord) {
        if record.outcome == warming_core::WarmOutcome::Stopped {
            let state = self.warmer.state(&record.conversation_id);
            if let Some(cap) = state.stopped.filter(warming_core::StopReason::is_spend_cap) {
                tracing::warn!(conversation = %record.conversation_id, "{cap}");
            }
            // Idle past the cap: warming of it ended.
            if matches!(
                state.stopped,
                Some(warming_core::StopReason::IdleCap { .. })
            ) {
                self.release_explicit_cache(&record.conversation_id);
            }
        }
        let template = self.warmer.template(&record.conversation_id);
        let template = template.as_deref();
        self.metrics.warm(
            &record,
            template.and_then(Template::model),
            template.is_some_and(Template::long_ttl),
        );
        let priced = record.usage.is_some()
            && record.trigger != warming_core::WarmTrigger::Turn
            && !matches!(
                record.outcome,
                warming_core::WarmOutcome::Failed | warming_core::WarmOutcome::Stopped
            );
        let conversation = priced.then(|| record.conversation_id.clone());
        self.storage.submit_behind(Write::Warm(record));
        if let Some(conversation) = conversation {
            self.save_ledger(conversation);
        }
    }

    /// Stores the conversation's ledger as the core now has it (behind: a
    /// crash loses at most the figures of the last warms, never a write
    /// anyone waited for).
    fn save_ledger(&self, conversation: warming_core::ConversationId) {
        if let Some(ledger) = self.warmer.ledger(&conversation) {
            self.storage.submit_behind(Write::Ledger {
                conversation,
                ledger,
            });
        }
    }

    pub(super) fn persist(&mut self, op: PersistId, write: Write) {
        let ack = self.storage.submit(write);
        let submitted = tokio::time::Instant::now();
        self.persists.push_back(Box::pin(async move {
            let result = ack.await;
            (op, result, submitted.elapsed())
        }));
    }

    pub(super) fn persist_finished(&mut self, op: PersistId, result: Result<(), StoreError>) {
        if let Err(e) = &result {
            tracing::warn!(op = op.get(), error = %e, "write failed; state unchanged");
        }
        self.warmer.persisted(self.clock.now(), op, result.is_ok());
        self.execute_effects();
        if let Some(PersistWaiter::Settings(id, reply)) = self.persist_waiters.remove(&op) {
            let answer = match result {
                Ok(()) => Ok(self.warmer.state(&id)),
                Err(e) => {
                    let stop = self.warmer.state(&id).stopped;
                    match stop.filter(|s| *s == warming_core::StopReason::CloseNotStored) {
                        Some(stop) => Err(ServiceError::from(e).explained(&stop.to_string())),
                        None => Err(ServiceError::from(e)),
                    }
                }
            };
            let _ = reply.send(answer);
        }
    }

    /// Stops sending warms for `reason`. Warms in flight are abandoned and
    /// reported failed (retried on their backoff); those coming due from
    /// now on are held until [`resume`](Self::resume).
    pub(super) fn pause(&mut self, reason: String) {
        if self.paused.is_none() {
            tracing::warn!(reason = %reason, "warms paused");
        }
        let failure = WarmFailure {
            message: format!("warms are paused on this instance: {reason}"),
            retry_after: None,
            refused: false,
        };
        self.paused = Some(reason);
        for (token, (conversation, task)) in std::mem::take(&mut self.in_flight) {
            task.abort();
            let _ = self.warm_done.send(WarmDone {
                conversation,
                token,
                result: Err(failure.clone()),
            });
        }
    }

    /// Sends warms again, first those held while paused (the engine
    /// anchors the next warm of each at its answer, an interval later).
    pub(super) fn resume(&mut self) {
        if self.paused.take().is_none() {
            return;
        }
        let held: Vec<WarmRequest> = self.held.drain().map(|(_, warm)| warm).collect();
        tracing::info!(held = held.len(), "warms resume");
        for warm in held {
            self.start_warm(warm);
        }
    }

    /// Deletes the conversation's explicit cache through the provider, when
    /// the operator chose so (`--explicit-caches delete`) and its template
    /// reads one; logged, never waited for.
    fn release_explicit_cache(&self, id: &warming_core::ConversationId) {
        if !self.options.release_explicit_caches {
            return;
        }
        let Some(template) = self.warmer.template(id).filter(|t| t.explicit_cache()) else {
            return;
        };
        let credentials = self.generations.credentials(id);
        let (provider, store, id) = (self.provider.clone(), self.storage.clone(), id.clone());
        tokio::spawn(async move {
            let released = match super::template_body::body_of(store, &id, template).await {
                Ok(template) => provider.release(&template, credentials.as_ref()).await,
                Err(failure) => Err(failure),
            };
            match released {
                Ok(()) => tracing::info!(conversation = %id, "its explicit cache was deleted"),
                Err(failure) => {
                    tracing::warn!(conversation = %id, error = %failure.message, "cannot release its explicit cache");
                }
            }
        });
    }

    pub(super) fn start_warm(&mut self, warm: WarmRequest) {
        if let Some(reason) = &self.paused {
            // A person asking for a warm hears why at once; a timed one
            // waits for the resume.
            if warm.trigger == warming_core::WarmTrigger::Manual {
                let _ = self.warm_done.send(WarmDone {
                    conversation: warm.conversation,
                    token: warm.token,
                    result: Err(WarmFailure {
                        message: format!("warms are paused on this instance: {reason}"),
                        retry_after: None,
                        refused: false,
                    }),
                });
            } else {
                self.held.insert(warm.conversation.clone(), warm);
            }
            return;
        }
        let provider = self.provider.clone();
        let permits = self.permits.clone();
        let done = self.warm_done.clone();
        let credentials = self.generations.credentials(&warm.conversation);
        let token = warm.token;
        let conversation = warm.conversation.clone();
        tracing::debug!(conversation = %warm.conversation, token = token.get(), trigger = warm.trigger.as_str(), "warming");
        let store = self.storage.clone();
        let engine = self.options.engine.clone();
        let task = tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let conversation = warm.conversation.clone();
            let result = super::engine_warm::send(provider, engine, store, warm, credentials).await;
            let _ = done.send(WarmDone {
                conversation,
                token,
                result,
            });
        });
        self.in_flight
            .insert(token, (conversation, task.abort_handle()));
    }

    pub(super) fn warm_finished(&mut self, done: WarmDone) {
        self.in_flight.remove(&done.token);
        let t = self.clock.now();
        let taken = match done.result {
            Ok(answer) => self.warmer.warm_answered(
                t,
                &done.conversation,
                done.token,
                warming_core::WarmReply {
                    usage: answer.usage,
                    backend: answer.backend.as_deref(),
                    kind: answer.kind,
                },
            ),
            Err(failure) => {
                tracing::warn!(conversation = %done.conversation, error = %failure.message, "warm failed");
                self.warmer
                    .warm_failed(t, &done.conversation, done.token, failure)
            }
        };
        // A taken answer's record answers a manual warm's caller there.
        self.execute_effects();
        if !taken {
            if let Some(reply) = self.manual.remove(&done.token) {
                let _ = reply.send(Err(ServiceError::Conflict(
                    "the warm was superseded by a new turn or a close".into(),
                )));
            }
        }
    }

    /// Saves what `adaptive` has learned, write-behind.
    pub(super) fn save_prior(&self) {
        if self.options.clustered {
            // Merged through the cluster (`hold_leases`): saving this
            // instance's view would overwrite what the others learned.
            return;
        }
        self.storage.submit_behind(Write::Meta {
            key: PRIOR_KEY,
            value: self.warmer.prior().to_json(),
        });
    }
}
