//! The handlers' side of the driver: commands and the handle that sends them.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};
use warming_core::{
    ConversationId, ConversationState, RuntimeEvent, SettingsChange, Template, Timestamp,
    WarmRecord,
};

use crate::ports::{Clock, Cluster, Route};
use crate::ServiceError;

pub(crate) type Reply<T> = oneshot::Sender<T>;

/// What handlers ask the driver.
pub(crate) enum Command {
    TurnStarted(
        ConversationId,
        Reply<Result<ConversationState, ServiceError>>,
    ),
    TurnSettled {
        id: ConversationId,
        template: Option<Arc<Template>>,
        request_started_at: Option<Timestamp>,
        reply: Reply<Result<ConversationState, ServiceError>>,
    },
    Events(
        Vec<RuntimeEvent>,
        Reply<Result<(usize, usize), ServiceError>>,
    ),
    Waiting(
        ConversationId,
        Reply<Result<ConversationState, ServiceError>>,
    ),
    Update(
        ConversationId,
        SettingsChange,
        Reply<Result<ConversationState, ServiceError>>,
    ),
    Toggle(
        ConversationId,
        Option<bool>,
        Reply<Result<ConversationState, ServiceError>>,
    ),
    WarmNow(ConversationId, Reply<Result<WarmRecord, ServiceError>>),
    Close(
        ConversationId,
        Reply<Result<ConversationState, ServiceError>>,
    ),
    Delete(
        ConversationId,
        Reply<Result<ConversationState, ServiceError>>,
    ),
    Enroll(
        ConversationId,
        Option<f64>,
        Reply<Result<ConversationState, ServiceError>>,
    ),
    BackendSeen(ConversationId, String),
    /// A request of the conversation was rewritten to ask for the
    /// provider's longer retention.
    Upgraded(ConversationId),
    ProxySettled(ProxiedTurn),
    Get(ConversationId, Reply<ConversationState>),
    History(
        ConversationId,
        usize,
        Reply<Result<Vec<WarmRecord>, ServiceError>>,
    ),
    List {
        cursor: usize,
        limit: usize,
        filter: warming_core::ListFilter,
        reply: Reply<(Vec<ConversationState>, Option<usize>)>,
    },
    /// The states of stored conversations: live for those held here,
    /// as stored for the others.
    StoredStates(
        Vec<(warming_core::Restored, bool)>,
        Reply<Vec<ConversationState>>,
    ),
    Adopt(Vec<warming_core::Restored>, Reply<usize>),
    /// Stop sending warms (the lease may lapse), for the reason given.
    Pause(String),
    /// Send warms again.
    Resume,
    /// Let go of every conversation held in memory but not in the set
    /// (others adopted them); answers how many were let go.
    KeepOnly(std::collections::HashSet<ConversationId>, Reply<usize>),
    PriorLearned(Reply<warming_core::ReturnPrior>),
    PriorShared(Box<warming_core::ReturnPrior>),
}

/// The end of a turn seen through the proxy.
#[derive(Debug)]
pub struct ProxiedTurn {
    /// The conversation.
    pub id: ConversationId,
    /// The request, as the new warm template (`None` when the call failed).
    pub template: Option<Arc<Template>>,
    /// When the request was received: the provider's TTL counts from there.
    pub started_at: Timestamp,
    /// The usage the answer reported.
    pub usage: Option<warming_core::Usage>,
    /// The backend that served it.
    pub backend: Option<String>,
}

/// A cheap handle to the driver, shared by every handler.
#[derive(Clone)]
pub struct DriverHandle {
    /// Command queue of the driver task.
    pub(super) commands: mpsc::Sender<Command>,
    /// Every conversation's updates, for surface subscribers to filter.
    pub(super) updates: broadcast::Sender<Arc<ConversationState>>,
    /// The service's clock, for adapters that stamp times.
    pub(super) clock: Arc<dyn Clock>,
    /// Interval bounds, to read stored conversations' settings.
    pub(super) limits: warming_core::IntervalLimits,
    /// The cluster this instance is a member of, if several share its
    /// database.
    pub(super) cluster: Option<Arc<dyn Cluster>>,
    /// Conversations changed on any instance of the cluster.
    pub(super) changes: broadcast::Sender<ConversationId>,
    /// Whether the database answers and warms are paused.
    pub(super) health: Arc<crate::health::Health>,
    /// The deployment's own engine, for the proxy to restore a saved
    /// prefix before a turn.
    pub(super) engine: Option<Arc<dyn crate::Engine>>,
}

impl Command {
    /// The conversations the command is about.
    pub(super) fn conversations(&self) -> Vec<&ConversationId> {
        match self {
            Self::TurnStarted(id, _)
            | Self::TurnSettled { id, .. }
            | Self::Waiting(id, _)
            | Self::Update(id, _, _)
            | Self::Toggle(id, _, _)
            | Self::WarmNow(id, _)
            | Self::Close(id, _)
            | Self::Delete(id, _)
            | Self::Enroll(id, _, _)
            | Self::BackendSeen(id, _)
            | Self::Upgraded(id)
            | Self::Get(id, _)
            | Self::History(id, _, _) => vec![id],
            Self::ProxySettled(turn) => vec![&turn.id],
            Self::Events(events, _) => events.iter().map(|e| &e.conversation).collect(),
            Self::List { .. }
            | Self::StoredStates(..)
            | Self::Adopt(..)
            | Self::Pause(_)
            | Self::Resume
            | Self::KeepOnly(..)
            | Self::PriorLearned(_)
            | Self::PriorShared(_) => Vec::new(),
        }
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl std::fmt::Debug for DriverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DriverHandle")
    }
}

impl DriverHandle {
    /// The deployment's own engine, if one is attached (`--engine`).
    #[must_use]
    pub fn engine(&self) -> Option<&Arc<dyn crate::Engine>> {
        self.engine.as_ref()
    }

    /// Whether the driver task still runs: a stopped driver answers no
    /// command, so `/healthz` must not say the service is fine.
    #[must_use]
    pub fn is_alive(&self) -> bool {
        !self.commands.is_closed()
    }

    /// Whether the database answers and warms are paused, for `/healthz`
    /// and `/readyz`.
    #[must_use]
    pub fn health(&self) -> &Arc<crate::health::Health> {
        &self.health
    }

    /// Stops sending warms on this instance, for `reason` (shown as the
    /// failed warms' `lastError` and in `/healthz`): its lease may lapse.
    /// Warms in flight are abandoned.
    pub async fn pause(&self, reason: String) {
        self.health.pause(&reason);
        let _ = self.commands.send(Command::Pause(reason)).await;
    }

    /// Sends warms again after [`pause`](Self::pause); those that failed
    /// meanwhile are retried on their schedule.
    pub async fn resume(&self) {
        let _ = self.commands.send(Command::Resume).await;
        self.health.resume();
    }

    /// Lets go of every conversation in memory that is not in `held` (other
    /// instances hold them now), without writing; answers how many.
    ///
    /// # Errors
    /// Only when the service is shutting down.
    pub async fn keep_only(
        &self,
        held: std::collections::HashSet<ConversationId>,
    ) -> Result<usize, ServiceError> {
        self.call(|r| Command::KeepOnly(held, r)).await
    }

    /// The service's current time.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The newest `limit` history records of a conversation, newest first,
    /// including every warm recorded before this call.
    ///
    /// # Errors
    /// `Storage` when the read failed.
    pub async fn history(
        &self,
        id: ConversationId,
        limit: usize,
    ) -> Result<Vec<WarmRecord>, ServiceError> {
        self.call(|r| Command::History(id, limit, r)).await?
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ServiceError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| ServiceError::Unavailable)?;
        answer.await.map_err(|_| ServiceError::Unavailable)
    }

    /// Reports a turn start; answers once what it changed is stored.
    ///
    /// # Errors
    /// `storage` when a write failed; `unavailable` when shutting down.
    pub async fn turn_started(
        &self,
        id: ConversationId,
    ) -> Result<ConversationState, ServiceError> {
        self.call(|r| Command::TurnStarted(id, r)).await?
    }

    /// Reports a settled turn with its warm template; answers once the
    /// template and schedule are stored.
    ///
    /// # Errors
    /// `storage` when a write failed; `unavailable` when shutting down.
    pub async fn turn_settled(
        &self,
        id: ConversationId,
        template: Option<Arc<Template>>,
        request_started_at: Option<Timestamp>,
    ) -> Result<ConversationState, ServiceError> {
        self.call(|reply| Command::TurnSettled {
            id,
            template,
            request_started_at,
            reply,
        })
        .await?
    }

    /// Feeds runtime events; answers (applied, ignored) once what they
    /// changed is stored.
    ///
    /// # Errors
    /// `storage` when a write failed; `unavailable` when shutting down.
    pub async fn events(&self, events: Vec<RuntimeEvent>) -> Result<(usize, usize), ServiceError> {
        self.call(|r| Command::Events(events, r)).await?
    }

    /// The active turn waits on a tool or a person: warmed like idle until
    /// the next turn start or settle.
    ///
    /// # Errors
    /// `conflict` when no turn is active; `storage` when a write failed.
    pub async fn waiting(&self, id: ConversationId) -> Result<ConversationState, ServiceError> {
        self.call(|r| Command::Waiting(id, r)).await?
    }

    /// Changes settings; answers once the write is committed.
    ///
    /// # Errors
    /// `storage` when the write failed (nothing changed).
    pub async fn update(
        &self,
        id: ConversationId,
        change: SettingsChange,
    ) -> Result<ConversationState, ServiceError> {
        self.call(|r| Command::Update(id, change, r)).await?
    }

    /// Sets warming on or off, or flips it when `enabled` is `None`.
    ///
    /// # Errors
    /// `storage` when the write failed (nothing changed).
    pub async fn toggle(
        &self,
        id: ConversationId,
        enabled: Option<bool>,
    ) -> Result<ConversationState, ServiceError> {
        self.call(|r| Command::Toggle(id, enabled, r)).await?
    }

    /// Warms now and waits for the result.
    ///
    /// # Errors
    /// `conflict` while a turn runs, without a template, or when superseded;
    /// `upstream` when the provider failed.
    pub async fn warm_now(&self, id: ConversationId) -> Result<WarmRecord, ServiceError> {
        self.call(|r| Command::WarmNow(id, r)).await?
    }

    /// Closes the conversation.
    ///
    /// # Errors
    /// `storage` when persisting `enabled: false` failed (warming is off in
    /// memory regardless).
    pub async fn close(&self, id: ConversationId) -> Result<ConversationState, ServiceError> {
        self.call(|r| Command::Close(id, r)).await?
    }

    /// Deletes the conversation and its history; answers its default state
    /// once the delete is committed.
    ///
    /// # Errors
    /// `not_found` for a conversation never seen; `storage` when the delete
    /// failed (nothing changed).
    pub async fn delete(&self, id: ConversationId) -> Result<ConversationState, ServiceError> {
        self.call(|r| Command::Delete(id, r)).await?
    }

    /// Enrols a conversation nobody decided about yet (blanket opt-in, e.g.
    /// every proxied conversation); answers its state once committed, or at
    /// once when its settings were already decided.
    ///
    /// # Errors
    /// `storage` when the write failed (nothing changed).
    pub async fn enroll(
        &self,
        id: ConversationId,
        interval_ms: Option<f64>,
    ) -> Result<ConversationState, ServiceError> {
        self.call(|r| Command::Enroll(id, interval_ms, r)).await?
    }

    /// Reports the end of a proxied turn.
    pub async fn proxied_turn(&self, turn: ProxiedTurn) {
        let _ = self.commands.send(Command::ProxySettled(turn)).await;
    }

    /// Reports that the proxy rewrote a request of the conversation to ask
    /// for the provider's longer retention, as its plan said.
    pub async fn request_upgraded(&self, id: ConversationId) {
        let _ = self.commands.send(Command::Upgraded(id)).await;
    }

    /// Reports the backend that served a conversation's request.
    pub async fn backend_seen(&self, id: ConversationId, backend: String) {
        let _ = self.commands.send(Command::BackendSeen(id, backend)).await;
    }

    /// A conversation's state.
    ///
    /// # Errors
    /// Only when the service is shutting down.
    pub async fn get(&self, id: ConversationId) -> Result<ConversationState, ServiceError> {
        self.call(|r| Command::Get(id, r)).await
    }

    /// One page of known conversations, in the order first seen, and the
    /// cursor of the next page (`None` after the last).
    ///
    /// # Errors
    /// Only when the service is shutting down.
    pub async fn list(
        &self,
        cursor: usize,
        limit: usize,
        filter: warming_core::ListFilter,
    ) -> Result<(Vec<ConversationState>, Option<usize>), ServiceError> {
        self.call(|reply| Command::List {
            cursor,
            limit,
            filter,
            reply,
        })
        .await
    }

    /// One page of every conversation of the cluster, whichever instance
    /// holds it, in id order after `after`: those held here as they are
    /// now, the others as their holder last committed them. Answers the
    /// page and the id to continue after (`None` after the last). Without
    /// a cluster, see [`list`](Self::list).
    ///
    /// # Errors
    /// `storage` when the database could not be read; `unavailable` when
    /// shutting down.
    pub async fn list_cluster(
        &self,
        after: Option<ConversationId>,
        limit: usize,
        filter: warming_core::ListFilter,
    ) -> Result<(Vec<ConversationState>, Option<ConversationId>), ServiceError> {
        let Some(cluster) = self.cluster.clone() else {
            return Ok((Vec::new(), None));
        };
        let limits = self.limits;
        let limit = limit.max(1);
        let rows = tokio::task::spawn_blocking(move || {
            cluster.page(after.as_ref(), limit, filter, &limits)
        })
        .await
        .map_err(ServiceError::storage_task)?
        .map_err(ServiceError::from)?;
        let next = (rows.len() == limit)
            .then(|| rows.last().map(|(r, _)| r.conversation.clone()))
            .flatten();
        let states = self
            .call(|reply| Command::StoredStates(rows, reply))
            .await?;
        Ok((states, next))
    }

    /// Restores conversations this instance just adopted (their holder's
    /// lease lapsed); those it already holds are left alone. Answers how
    /// many were new to it.
    ///
    /// # Errors
    /// Only when the service is shutting down.
    pub async fn adopt(
        &self,
        conversations: Vec<warming_core::Restored>,
    ) -> Result<usize, ServiceError> {
        self.call(|r| Command::Adopt(conversations, r)).await
    }

    /// What the engine learned of users' returns since its prior was last
    /// merged with the cluster's; [`prior_merged`](Self::prior_merged)
    /// must follow with the merged total.
    ///
    /// # Errors
    /// Only when the service is shutting down.
    pub async fn prior_learned(&self) -> Result<warming_core::ReturnPrior, ServiceError> {
        self.call(Command::PriorLearned).await
    }

    /// The cluster's prior, merged with what
    /// [`prior_learned`](Self::prior_learned) handed out: the engine goes
    /// on from it.
    pub async fn prior_merged(&self, total: warming_core::ReturnPrior) {
        let _ = self
            .commands
            .send(Command::PriorShared(Box::new(total)))
            .await;
    }

    /// The same handle, for an instance that shares its database with
    /// others: [`route`](Self::route) asks `cluster`.
    #[must_use]
    pub fn with_cluster(mut self, cluster: Arc<dyn Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Where calls for `id` are handled: here, unless another live
    /// instance holds the conversation (always here without a cluster).
    ///
    /// # Errors
    /// `storage` when the database could not be asked.
    pub async fn route(&self, id: &ConversationId) -> Result<Route, ServiceError> {
        let Some(cluster) = self.cluster.clone() else {
            return Ok(Route::Here);
        };
        let id = id.clone();
        tokio::task::spawn_blocking(move || cluster.route(&id))
            .await
            .map_err(ServiceError::storage_task)?
            .map_err(ServiceError::from)
    }

    /// A peer that holds `id` did not answer: ask the database next time.
    pub fn forget_holder(&self, id: &ConversationId) {
        if let Some(cluster) = &self.cluster {
            cluster.forget(id);
        }
    }

    /// Whether this instance shares its database with others.
    #[must_use]
    pub fn clustered(&self) -> bool {
        self.cluster.is_some()
    }

    /// The secret a forwarded call between instances carries; `None`
    /// without a cluster.
    #[must_use]
    pub fn peer_secret(&self) -> Option<&str> {
        self.cluster.as_deref().map(Cluster::peer_secret)
    }

    /// A stream of the conversations changed on any instance of the
    /// cluster (this one's too), for subscribers of conversations another
    /// instance holds; silent without a cluster.
    #[must_use]
    pub fn subscribe_changes(&self) -> broadcast::Receiver<ConversationId> {
        self.changes.subscribe()
    }

    /// A stream of every conversation's updates.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ConversationState>> {
        self.updates.subscribe()
    }
}
