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
    ConversationId, ConversationState, PersistId, Template, WarmRecord, WarmToken, Warmer,
};

mod commands;
mod effects;
mod engine_warm;
mod handle;
mod loading;
mod membership;
mod reads;
mod template_body;

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
#[derive(Clone)]
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
    /// Delete a conversation's explicit cache (Gemini's `cachedContents`)
    /// when warming of it ends (closed, or idle past the cap) instead of
    /// leaving it to expire.
    pub release_explicit_caches: bool,
    /// The deployment's own engine, asked before timed warms and told of
    /// every request it served; `None` without `--engine`.
    pub engine: Option<Arc<dyn crate::Engine>>,
}

impl std::fmt::Debug for DriverOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverOptions")
            .field("warm_concurrency", &self.warm_concurrency)
            .field("clustered", &self.clustered)
            .field("engine", &self.engine.as_ref().map(|e| e.name()))
            .finish_non_exhaustive()
    }
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
    let (limits, engine) = (options.limits, options.engine.clone());
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
            limits,
            engine,
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

    /// Runs `command` (every conversation it names is in memory, or new):
    /// one handler each (`commands.rs`), then the engine's outputs.
    fn handle_now(&mut self, command: Command) {
        let t = self.clock.now();
        self.warmer.handle_timeout(t);
        match command {
            Command::TurnStarted(id, reply) => self.on_turn_started(t, id, reply),
            Command::TurnSettled {
                id,
                template,
                request_started_at,
                reply,
            } => self.on_turn_settled(t, id, template, request_started_at, reply),
            Command::Events(events, reply) => self.on_events(t, events, reply),
            Command::Waiting(id, reply) => self.on_waiting(t, id, reply),
            Command::Update(id, change, reply) => self.on_update(t, id, change, reply),
            Command::Toggle(id, enabled, reply) => self.on_toggle(t, id, enabled, reply),
            Command::WarmNow(id, reply) => self.on_warm_now(t, &id, reply),
            Command::Close(id, reply) => self.on_close(t, id, reply),
            Command::Delete(id, reply) => self.on_delete(t, id, reply),
            Command::Enroll(id, interval_ms, reply) => self.on_enroll(t, id, interval_ms, reply),
            Command::BackendSeen(id, backend) => {
                let _ = self.warmer.backend_resolved(t, &id, &backend);
            }
            Command::Upgraded(id) => {
                tracing::info!(conversation = %id, "a request asked for the provider's longer retention");
                self.warmer.request_upgraded(t, &id);
            }
            Command::ProxySettled(turn) => self.on_proxy_settled(t, turn),
            Command::History(id, limit, reply) => self.on_history(id, limit, reply),
            Command::Get(id, reply) => {
                let _ = reply.send(self.warmer.state(&id));
            }
            Command::PriorLearned(reply) => self.on_prior_learned(reply),
            Command::PriorShared(total) => self.on_prior_shared(&total),
            Command::Pause(reason) => self.pause(reason),
            Command::Resume => self.resume(),
            Command::KeepOnly(held, reply) => self.on_keep_only(t, &held, reply),
            Command::Adopt(restored, reply) => self.on_adopt(t, restored, reply),
            Command::List {
                cursor,
                limit,
                filter,
                reply,
            } => {
                let _ = reply.send(self.warmer.conversations_page(cursor, limit, filter));
            }
            Command::StoredStates(rows, reply) => self.on_stored_states(&rows, reply),
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
