//! The ports: what the service needs from the world, as traits its
//! adapters implement. The service owns them; adapters depend on the
//! service, never on each other.

use std::future::Future;
use std::pin::Pin;

use warming_core::{
    ConversationId, IntervalLimits, ListFilter, Restored, ReturnPrior, Template, Timestamp, Usage,
    WarmFailure, WarmKind, WarmRecord, WarmRequest,
};

use crate::{Cause, Write};

/// A future the service can hold across tasks.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store refused the write or the read (disk full, I/O error, ...).
    #[error("storage: {0}")]
    Failed(#[source] Cause),
    /// The store is closed: the service is stopping.
    #[error("storage is closed")]
    Closed,
    /// The database cannot be reached right now (restarting, failing
    /// over); the same call may succeed in a moment. Nothing was written.
    #[error("the database is unreachable ({0}); nothing was written, retry shortly")]
    Unavailable(#[source] Cause),
}

/// A write's acknowledgement: resolves once the write is committed.
pub type Ack = BoxFuture<'static, Result<(), StoreError>>;

/// Durable storage of conversations and their history.
///
/// Writes are applied in the order they are submitted (FIFO): an
/// acknowledged write means every write submitted before it is committed
/// too. The service loads what it restores before it starts, so the port
/// holds only what a running service needs.
pub trait Store: Send + Sync + 'static {
    /// Queues a write; the returned future resolves when it is committed.
    ///
    /// # Errors
    /// The future resolves to [`StoreError`] when the write or its commit
    /// failed: nothing of it was committed.
    fn submit(&self, write: Write) -> Ack;

    /// Queues a write nobody waits for; a failure is the store's to log.
    fn submit_behind(&self, write: Write);

    /// Resolves once every write queued before this call is committed.
    ///
    /// # Errors
    /// [`StoreError::Closed`] when the store has stopped.
    fn flush(&self) -> Ack;

    /// The newest `limit` history records of a conversation, newest first.
    /// Blocking: the service calls it off the async threads.
    ///
    /// # Errors
    /// [`StoreError`] when the read failed.
    fn history(
        &self,
        conversation: &ConversationId,
        limit: usize,
    ) -> Result<Vec<WarmRecord>, StoreError>;

    /// One stored conversation, to bring an evicted one back into memory;
    /// `None` if none is stored. Blocking: the service calls it off the
    /// driver, whose other conversations go on meanwhile.
    ///
    /// # Errors
    /// [`StoreError`] when the read failed.
    fn load(
        &self,
        conversation: &ConversationId,
        limits: &IntervalLimits,
    ) -> Result<Option<Restored>, StoreError>;

    /// The stored warm template of a conversation, with its body: the
    /// service keeps templates [detached](Template::detach) and reads the
    /// body back here before each warm. `None` if none is stored.
    /// Blocking: the service calls it off the async threads.
    ///
    /// # Errors
    /// [`StoreError`] when the read failed.
    fn template(&self, conversation: &ConversationId) -> Result<Option<Template>, StoreError>;

    /// Every stored conversation, for [`warming_core::Warmer::restore`] at
    /// start. Blocking.
    ///
    /// # Errors
    /// [`StoreError`] when the read failed.
    fn load_all(&self, limits: &IntervalLimits) -> Result<Vec<Restored>, StoreError>;

    /// A service-wide value written with [`Write::Meta`]. Blocking.
    ///
    /// # Errors
    /// [`StoreError`] when the read failed.
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Asks the database something cheap, to tell whether it answers
    /// (`/healthz`, `/readyz`). Blocking. By default a [`meta`](Self::meta)
    /// read.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    fn ping(&self) -> Result<(), StoreError> {
        self.meta("ping").map(drop)
    }

    /// Commits everything queued, then stops; later writes fail with
    /// [`StoreError::Closed`]. Blocking; safe to call twice.
    fn close(&self);
}

/// Which provider API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// Anthropic Messages: `POST {upstream}/v1/messages`.
    Anthropic,
    /// OpenAI Chat Completions: `POST {upstream}/v1/chat/completions`.
    OpenAi,
    /// Google's Gemini API: `POST {upstream}/v1beta/models/{model}:generateContent`.
    Gemini,
    /// Google Cloud's Vertex AI, Gemini's API under a project and location:
    /// `POST {upstream}/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:generateContent`.
    Vertex,
    /// A custom endpoint: `POST {upstream}` with the conversation and its
    /// template; it answers with Anthropic or OpenAI usage.
    Webhook,
}

impl ProviderKind {
    /// The upstream used when none is configured.
    #[must_use]
    pub const fn default_upstream(self) -> Option<&'static str> {
        match self {
            Self::Anthropic => Some("https://api.anthropic.com"),
            Self::OpenAi => Some("https://api.openai.com"),
            Self::Gemini => Some("https://generativelanguage.googleapis.com"),
            Self::Vertex => Some(crate::upstreams::VERTEX_GLOBAL),
            Self::Webhook => None,
        }
    }

    /// The flag value naming this provider.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::OpenAi => "openai",
            Self::Gemini => "gemini",
            Self::Vertex => "vertex",
            Self::Webhook => "webhook",
        }
    }
}

impl std::str::FromStr for ProviderKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "anthropic" => Ok(Self::Anthropic),
            "openai" => Ok(Self::OpenAi),
            "gemini" => Ok(Self::Gemini),
            "vertex" => Ok(Self::Vertex),
            "webhook" => Ok(Self::Webhook),
            other => Err(format!(
                "unknown provider {other:?}: expected anthropic, openai, gemini, vertex or webhook"
            )),
        }
    }
}

/// A secret string: never printed by `Debug`, so it cannot leak into logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Credentials for one conversation's warms, overriding the provider's
/// configured key: a proxied request's own headers, kept in memory only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The API the conversation was proxied to.
    pub kind: ProviderKind,
    /// Headers to send as they came (`x-api-key`, `authorization`, ...),
    /// lowercase names.
    pub headers: Vec<(String, Secret)>,
}

/// A warm the provider answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmAnswer {
    /// The provider's token counts.
    pub usage: Usage,
    /// The backend that served the warm, if the upstream named one.
    pub backend: Option<String>,
    /// Which request was sent.
    pub kind: Option<WarmKind>,
}

/// Sends warms to a provider.
pub trait Provider: Send + Sync + 'static {
    /// Sends one warm and waits for its answer.
    ///
    /// # Errors
    /// A [`WarmFailure`] with a readable message for any upstream error,
    /// timeout or refused connection (`refused` when sending it again
    /// would be refused again), and the provider's `retry-after`.
    fn warm<'a>(
        &'a self,
        warm: &'a WarmRequest,
        credentials: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<WarmAnswer, WarmFailure>>;

    /// Lets go of what the provider keeps for the conversation beyond its
    /// cache's own lifetime (an explicit cache, `template` naming it) when
    /// warming of it ends and the operator chose to release it. Default:
    /// nothing to release.
    ///
    /// # Errors
    /// A [`WarmFailure`] saying why the provider did not let go.
    fn release<'a>(
        &'a self,
        template: &'a Template,
        credentials: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<(), WarmFailure>> {
        let _ = (template, credentials);
        Box::pin(async { Ok(()) })
    }
}

/// Where the time comes from: the wall clock in service, a controllable
/// one in tests.
pub trait Clock: Send + Sync + 'static {
    /// The current time, epoch milliseconds.
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Timestamp::from_millis(ms)
    }
}

/// A clock that follows tokio's: with `tokio::time::pause()`, time moves
/// only when the test advances it (or the runtime is idle), and the
/// driver's sleeps and its clock agree.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
    origin_ms: u64,
}

impl TokioClock {
    /// A clock reading `start` now.
    #[must_use]
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            origin: tokio::time::Instant::now(),
            origin_ms: start.as_millis(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        Timestamp::from_millis(self.origin_ms.saturating_add(elapsed))
    }
}

/// Where calls for a conversation are handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// By this instance, which holds the conversation (claimed now if no
    /// live instance held it).
    Here,
    /// By the live instance at this base URL, which holds it.
    Peer(String),
}

/// Several instances sharing one database: each conversation is held by
/// one live instance, which alone keeps its state in memory and warms it.
/// An instance holds its conversations while it renews its lease; when a
/// lease lapses (the instance died), others adopt its conversations.
///
/// Every method may block on the database: the service calls them off its
/// async threads.
pub trait Cluster: Send + Sync + 'static {
    /// The secret instances present to each other on a forwarded call
    /// (`x-warming-forwarded`): shared by the cluster's instances only, so
    /// no client can pass for a peer.
    fn peer_secret(&self) -> &str;

    /// Who handles `conversation`: [`Route::Here`] if this instance holds
    /// it or just claimed it (nobody held it, or its holder's lease
    /// lapsed), else the holder's URL.
    ///
    /// # Errors
    /// [`StoreError`] when the database could not be asked.
    fn route(&self, conversation: &ConversationId) -> Result<Route, StoreError>;

    /// Forgets what is remembered of `conversation`'s holder (a peer that
    /// did not answer), so the next [`route`](Self::route) asks again.
    fn forget(&self, conversation: &ConversationId);

    /// Extends this instance's lease; `Ok(false)` if it had lapsed (others
    /// may have adopted its conversations: see [`rejoin`](Self::rejoin)).
    ///
    /// # Errors
    /// [`StoreError`] when the database could not be reached.
    fn renew(&self) -> Result<bool, StoreError>;

    /// Takes a new lease after this one lapsed, under the same identity,
    /// and answers the conversations this instance still holds: those no
    /// other instance adopted meanwhile. The rest are others' now.
    ///
    /// # Errors
    /// [`StoreError`] when the database could not be reached.
    fn rejoin(&self) -> Result<Vec<ConversationId>, StoreError>;

    /// Claims up to `limit` conversations whose holder's lease lapsed (or
    /// that nobody holds) and reads them, to restore into memory.
    ///
    /// # Errors
    /// [`StoreError`] when the claim or the read failed (nothing claimed).
    fn adopt(&self, limit: usize, limits: &IntervalLimits) -> Result<Vec<Restored>, StoreError>;

    /// Gives the lease back at once (graceful shutdown): the others adopt
    /// this instance's conversations without waiting for it to lapse.
    fn leave(&self);

    /// Adds `learned` (what this instance learned since its last merge) to
    /// the return prior the cluster shares, and answers the new total.
    ///
    /// # Errors
    /// [`StoreError`] when the merge failed (nothing was added).
    fn merge_prior(&self, learned: &ReturnPrior) -> Result<ReturnPrior, StoreError>;

    /// One page of every conversation the cluster stores, in id order: at
    /// most `limit` matching `filter`, after the conversation `after` (from
    /// the start when `None`), each as last committed and with whether
    /// this instance holds it. The page is the last one when it is short.
    ///
    /// # Errors
    /// [`StoreError`] when the read failed.
    fn page(
        &self,
        after: Option<&ConversationId>,
        limit: usize,
        filter: ListFilter,
        limits: &IntervalLimits,
    ) -> Result<Vec<(Restored, bool)>, StoreError>;

    /// Blocks until an instance (this one included) committed a change to
    /// a conversation, and names it; `None` once this instance left. Best
    /// effort: changes made while the database was unreachable are not
    /// replayed, so a reader re-reads state after a gap.
    fn next_change(&self) -> Option<ConversationId>;
}
