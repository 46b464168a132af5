//! The driver task: the only owner of the [`Warmer`]. It takes commands from
//! handlers, sleeps until the core's next deadline, and carries out effects:
//! warms through the provider client, writes through storage (reporting
//! their results back to the core), updates to surface subscribers.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use warming_core::{
    ConversationId, ConversationState, PersistId, SettingsChange, Template, WarmRecord, WarmToken,
    Warmer,
};

mod effects;
mod handle;
mod loading;
mod membership;
mod reads;

use handle::{Command, Reply};
pub use handle::{DriverHandle, ProxiedTurn};
pub use membership::{hold_leases, LeaseLost};

use crate::generations::Generations;
use crate::metrics::Metrics;
use crate::ports::{Ack, Clock, Provider, Store, StoreError, WarmAnswer};
use crate::ServiceError;

/// The `meta` key the learned return prior is stored under.
pub const PRIOR_KEY: &str = "return_prior";

/// How often the learned prior is saved.
const PRIOR_SAVE_EVERY: Duration = Duration::from_secs(60);

/// The outcome of a warm task.
struct WarmDone {
    conversation: ConversationId,
    token: WarmToken,
    result: Result<WarmAnswer, warming_core::WarmFailure>,
}

/// Who waits for a write's result.
enum PersistWaiter {
    /// An HTTP or surface call waiting for its settings.
    Settings(
        ConversationId,
        Reply<Result<ConversationState, ServiceError>>,
    ),
}

type PersistFuture =
    Pin<Box<dyn Future<Output = (PersistId, Result<(), StoreError>, Duration)> + Send>>;

/// How the driver behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverOptions {
    /// Most warms in flight at once.
    pub warm_concurrency: usize,
    /// A conversation with warming off and no input for this long leaves
    /// memory (it stays in the store and comes back on its next input);
    /// zero keeps every conversation in memory.
    pub evict_after: Duration,
    /// Interval bounds, to restore an evicted conversation's settings.
    pub limits: warming_core::IntervalLimits,
    /// One of several instances on one database: a conversation memory
    /// does not know is looked for in the store before an input for it
    /// (one this instance just claimed may have been another's), and the
    /// learned return prior is merged through the cluster
    /// ([`hold_leases`]) instead of saved over the others'.
    pub clustered: bool,
}

/// How often the driver looks for conversations to evict.
const EVICT_EVERY: Duration = Duration::from_secs(60);

/// The driver's state; lives in its task.
struct Driver {
    warmer: Warmer,
    storage: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    clock: Arc<dyn Clock>,
    generations: Arc<Generations>,
    updates: broadcast::Sender<Arc<ConversationState>>,
    /// Bounds the warms in flight.
    permits: Arc<Semaphore>,
    /// Warm tasks by token, to abort superseded ones.
    in_flight: HashMap<WarmToken, (ConversationId, AbortHandle)>,
    /// Why warms are not sent, while this instance's lease is in doubt.
    paused: Option<String>,
    /// Warms that came due while paused, the newest of each conversation:
    /// retried on resume.
    held: HashMap<ConversationId, warming_core::WarmRequest>,
    /// Manual warms waiting for their result.
    manual: HashMap<WarmToken, Reply<Result<WarmRecord, ServiceError>>>,
    /// The conversation whose turn record, about to come out, is a
    /// returning turn's (for the metrics); cleared once drained.
    returning_turn: Option<ConversationId>,
    /// Calls waiting for a write.
    persist_waiters: HashMap<PersistId, PersistWaiter>,
    /// Writes in flight, completed in submission order (storage is FIFO).
    persists: FuturesOrdered<PersistFuture>,
    /// Where warm tasks report.
    warm_done: mpsc::UnboundedSender<WarmDone>,
    /// What `/metrics` exports.
    metrics: Arc<Metrics>,
    /// While a durable command runs: the acknowledgements of the writes it
    /// caused, so its answer waits for them (a 2xx is a committed write).
    acks: Option<Vec<Ack>>,
    /// Where settles whose writes failed come back to be taken back.
    refused: mpsc::UnboundedSender<Refused>,
    /// Conversations evicted from memory, to load back on their next input.
    evicted: HashSet<ConversationId>,
    /// Conversations being read back, and the commands waiting for them.
    loading: reads::Loading,
    /// Where reads report.
    loaded: mpsc::UnboundedSender<reads::Loaded>,
    /// How the driver behaves.
    options: DriverOptions,
    /// The learned prior as last merged with the cluster's: what was
    /// learned since is the next merge's share.
    prior_base: warming_core::ReturnPrior,
    /// The prior as it was when its share was last handed out for merging.
    prior_sent: Option<warming_core::ReturnPrior>,
}

/// Waits for every write in `acks`; the first failure's message.
async fn all_stored(acks: Vec<Ack>) -> Result<(), ServiceError> {
    for ack in acks {
        if let Err(e) = ack.await {
            tracing::warn!(error = %e, "write failed; answering with a storage error");
            return Err(ServiceError::from(e));
        }
    }
    Ok(())
}

/// Answers `value` once every write in `acks` committed, or a `storage`
/// error if one failed. Storage is FIFO, so these are also after every
/// earlier write.
fn reply_when_stored<T: Send + 'static>(
    acks: Vec<Ack>,
    reply: Reply<Result<T, ServiceError>>,
    value: T,
) {
    if acks.is_empty() {
        let _ = reply.send(Ok(value));
        return;
    }
    tokio::spawn(async move {
        let answer = all_stored(acks).await.map(|()| value);
        let _ = reply.send(answer);
    });
}

/// A settle whose writes the store refused: its template is taken back.
struct Refused {
    id: ConversationId,
    template: Arc<Template>,
    previous: Option<Arc<Template>>,
    error: ServiceError,
    reply: Reply<Result<ConversationState, ServiceError>>,
}

/// Starts the driver task owning `warmer` (already restored from the
/// store); it runs until `shutdown` is cancelled, then cancels timers and
/// in-flight warms and flushes the store.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    warmer: Warmer,
    storage: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    clock: Arc<dyn Clock>,
    generations: Arc<Generations>,
    metrics: Arc<Metrics>,
    options: DriverOptions,
    shutdown: CancellationToken,
) -> (DriverHandle, tokio::task::JoinHandle<()>) {
    let (commands, command_queue) = mpsc::channel(1024);
    let (updates, _) = broadcast::channel(4096);
    let (warm_done, warm_queue) = mpsc::unbounded_channel();
    let (refused, refused_queue) = mpsc::unbounded_channel();
    let (loaded, loaded_queue) = mpsc::unbounded_channel();
    let prior_base = warmer.prior().clone();
    let health = Arc::new(crate::health::Health::new(clock.clone()));
    let driver = Driver {
        prior_base,
        prior_sent: None,
        warmer,
        storage,
        provider,
        clock: clock.clone(),
        generations,
        updates: updates.clone(),
        permits: Arc::new(Semaphore::new(options.warm_concurrency.max(1))),
        evicted: HashSet::new(),
        loading: reads::Loading::default(),
        loaded,
        options,
        in_flight: HashMap::new(),
        paused: None,
        held: HashMap::new(),
        manual: HashMap::new(),
        returning_turn: None,
        persist_waiters: HashMap::new(),
        persists: FuturesOrdered::new(),
        warm_done,
        metrics,
        acks: None,
        refused,
    };
    let task = tokio::spawn(driver.run(
        command_queue,
        warm_queue,
        refused_queue,
        loaded_queue,
        shutdown,
    ));
    (
        DriverHandle {
            commands,
            updates,
            clock,
            limits: options.limits,
            cluster: None,
            changes: broadcast::channel(4096).0,
            health,
        },
        task,
    )
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut warm_queue: mpsc::UnboundedReceiver<WarmDone>,
        mut refused_queue: mpsc::UnboundedReceiver<Refused>,
        mut loaded_queue: mpsc::UnboundedReceiver<reads::Loaded>,
        shutdown: CancellationToken,
    ) {
        let mut save_prior = tokio::time::interval(PRIOR_SAVE_EVERY);
        save_prior.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut evict = tokio::time::interval(EVICT_EVERY);
        evict.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.warmer.handle_timeout(self.clock.now());
            self.execute_effects();
            self.metrics.set_armed(self.warmer.armed_count());
            self.metrics.set_today(self.warmer.money_today());
            let sleep = match self.warmer.poll_timeout() {
                Some(at) => Duration::from_millis(at.millis_since(self.clock.now())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                command = commands.recv() => match command {
                    Some(command) => self.handle(command),
                    None => break,
                },
                Some(done) = warm_queue.recv() => self.warm_finished(done),
                Some(refused) = refused_queue.recv() => self.take_back(refused),
                Some(loaded) = loaded_queue.recv() => self.loaded(loaded),
                Some((op, result, elapsed)) = self.persists.next(), if !self.persists.is_empty() => {
                    self.metrics.storage_write(elapsed);
                    self.persist_finished(op, result);
                }
                () = tokio::time::sleep(sleep) => {}
                _ = save_prior.tick() => self.save_prior(),
                _ = evict.tick(), if !self.options.evict_after.is_zero() => self.evict(),
            }
        }
        self.stop().await;
    }

    /// Runs an input whose answer must wait for what it writes: its
    /// effects are carried out at once, with the writes acknowledged, and
    /// the acknowledgements returned beside its result.
    fn durably<T>(&mut self, input: impl FnOnce(&mut Warmer) -> T) -> (T, Vec<Ack>) {
        self.acks = Some(Vec::new());
        let result = input(&mut self.warmer);
        self.execute_effects();
        (result, self.acks.take().unwrap_or_default())
    }

    /// A settle's writes failed: memory goes back to the template on disk,
    /// and the caller hears of the failure.
    fn take_back(&mut self, refused: Refused) {
        let Refused {
            id,
            template,
            previous,
            error,
            reply,
        } = refused;
        self.warmer
            .template_not_stored(self.clock.now(), &id, &template, previous);
        self.execute_effects();
        let _ = reply.send(Err(error));
    }

    /// Lets conversations nobody needs in memory go (see [`DriverOptions`]).
    fn evict(&mut self) {
        let gone = self
            .warmer
            .evict_idle(self.clock.now(), self.options.evict_after);
        if !gone.is_empty() {
            tracing::debug!(evicted = gone.len(), "conversations left memory");
        }
        self.evicted.extend(gone);
    }

    /// Runs `command` (every conversation it names is in memory, or new).
    fn handle_now(&mut self, command: Command) {
        let t = self.clock.now();
        self.warmer.handle_timeout(t);
        match command {
            Command::TurnStarted(id, reply) => {
                let ((), acks) = self.durably(|warmer| warmer.turn_started(t, &id));
                reply_when_stored(acks, reply, self.warmer.state(&id));
            }
            Command::TurnSettled {
                id,
                template,
                request_started_at,
                reply,
            } => {
                let previous = self.warmer.template(&id);
                let ((), acks) = self.durably(|warmer| {
                    warmer.turn_settled(t, &id, template.clone(), request_started_at);
                });
                let state = self.warmer.state(&id);
                // What the engine now holds (detached when the engine keeps
                // templates so): the one to take back if the writes fail.
                let installed = template.and_then(|_| self.warmer.template(&id));
                match installed {
                    // If its writes fail, the template is taken back.
                    Some(template) => {
                        let refused = self.refused.clone();
                        tokio::spawn(async move {
                            match all_stored(acks).await {
                                Ok(()) => drop(reply.send(Ok(state))),
                                Err(error) => drop(refused.send(Refused {
                                    id,
                                    template,
                                    previous,
                                    error,
                                    reply,
                                })),
                            }
                        });
                    }
                    None => reply_when_stored(acks, reply, state),
                }
            }
            Command::Events(events, reply) => {
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
            Command::Waiting(id, reply) => {
                let (waiting, acks) = self.durably(|warmer| warmer.turn_waiting(t, &id));
                if waiting {
                    reply_when_stored(acks, reply, self.warmer.state(&id));
                } else {
                    let _ = reply.send(Err(ServiceError::Conflict("no turn is in progress: only a running turn can wait (report turn-started first)".into())));
                }
            }
            Command::Update(id, change, reply) => {
                let op = self.warmer.update_settings(t, &id, change);
                self.persist_waiters
                    .insert(op, PersistWaiter::Settings(id, reply));
            }
            Command::Toggle(id, enabled, reply) => {
                let enabled = enabled.unwrap_or_else(|| !self.warmer.state(&id).enabled);
                let change = SettingsChange {
                    enabled: Some(enabled),
                    ..SettingsChange::default()
                };
                let op = self.warmer.update_settings(t, &id, change);
                self.persist_waiters
                    .insert(op, PersistWaiter::Settings(id, reply));
            }
            Command::WarmNow(id, reply) => match self.warmer.warm_now(t, &id) {
                Ok(token) => {
                    self.manual.insert(token, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(ServiceError::Conflict(e.to_string())));
                }
            },
            Command::Close(id, reply) => {
                let op = self.warmer.close(t, &id);
                self.persist_waiters
                    .insert(op, PersistWaiter::Settings(id, reply));
            }
            Command::Delete(id, reply) => match self.warmer.delete(t, &id) {
                Some(op) => {
                    self.persist_waiters
                        .insert(op, PersistWaiter::Settings(id, reply));
                }
                None => {
                    let _ = reply.send(Err(ServiceError::NotFound(format!(
                        "no conversation {id}: nothing to delete"
                    ))));
                }
            },
            Command::Enroll(id, interval_ms, reply) => {
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
            Command::BackendSeen(id, backend) => {
                let _ = self.warmer.backend_resolved(t, &id, &backend);
            }
            Command::ProxySettled(turn) => {
                let id = turn.id;
                // A conversation with a template settled a turn before:
                // this one came back to whatever the cache kept.
                let returning = self.warmer.template(&id).is_some();
                self.warmer
                    .turn_settled(t, &id, turn.template, Some(turn.started_at));
                if let Some(usage) = turn.usage {
                    // Its record is counted as a returning turn's as it
                    // comes out (`carry_out_write`).
                    self.returning_turn = returning.then(|| id.clone());
                    self.warmer.record_turn(t, &id, turn.started_at, usage);
                }
                if let Some(backend) = turn.backend {
                    let _ = self.warmer.backend_resolved(t, &id, &backend);
                }
            }
            Command::History(id, limit, reply) => {
                // Asked in the driver's order, so the page holds every warm
                // recorded before (read your own writes).
                let store = self.storage.clone();
                let flushed = store.flush();
                tokio::spawn(async move {
                    let answer = match flushed.await {
                        Err(e) => Err(ServiceError::from(e)),
                        Ok(()) => tokio::task::spawn_blocking(move || store.history(&id, limit))
                            .await
                            .map_err(|e| ServiceError::Storage(e.to_string()))
                            .and_then(|read| read.map_err(ServiceError::from)),
                    };
                    let _ = reply.send(answer);
                });
            }
            Command::Get(id, reply) => {
                let _ = reply.send(self.warmer.state(&id));
            }
            Command::PriorLearned(reply) => {
                let now = self.warmer.prior().clone();
                let _ = reply.send(now.since(&self.prior_base));
                self.prior_sent = Some(now);
            }
            Command::PriorShared(total) => {
                // What was learned while the merge ran is not in `total`
                // yet: kept on top, and counted in the next share.
                let sent = self
                    .prior_sent
                    .take()
                    .unwrap_or_else(|| self.prior_base.clone());
                let newer = self.warmer.prior().since(&sent);
                let mut merged = (*total).clone();
                merged.add(&newer);
                self.warmer.set_prior(merged);
                self.prior_base = *total;
            }
            Command::Pause(reason) => self.pause(reason),
            Command::Resume => self.resume(),
            Command::KeepOnly(held, reply) => {
                let gone: Vec<ConversationId> = self
                    .warmer
                    .conversations()
                    .map(|s| s.conversation_id)
                    .filter(|id| !held.contains(id))
                    .collect();
                for id in &gone {
                    self.warmer.release(t, id);
                }
                self.execute_effects();
                if !gone.is_empty() {
                    tracing::warn!(
                        conversations = gone.len(),
                        "let go of conversations other instances adopted while the lease had lapsed"
                    );
                }
                let _ = reply.send(gone.len());
            }
            Command::Adopt(restored, reply) => {
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
            Command::List {
                cursor,
                limit,
                filter,
                reply,
            } => {
                let _ = reply.send(self.warmer.conversations_page(cursor, limit, filter));
            }
            Command::StoredStates(rows, reply) => {
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
        self.execute_effects();
    }

    async fn stop(mut self) {
        self.save_prior();
        self.warmer.shutdown();
        for (_, (_, task)) in self.in_flight.drain() {
            task.abort();
        }
        for (_, reply) in self.manual.drain() {
            let _ = reply.send(Err(ServiceError::Unavailable));
        }
        while let Some((op, result, _)) = self.persists.next().await {
            self.persist_finished(op, result);
        }
        if let Err(e) = self.storage.flush().await {
            tracing::warn!(error = %e, "final storage flush failed");
        }
    }
}
