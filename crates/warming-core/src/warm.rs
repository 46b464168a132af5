//! Warms: their tokens, requests, kinds, outcomes and history records.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{ConversationId, Template, Timestamp, Usage};

/// Identifies one warm attempt. A completion or failure reported with any
/// token other than the conversation's current one is stale and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct WarmToken(pub(crate) u64);

impl WarmToken {
    /// The raw number, for logs and maps.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Identifies one requested durable write; the caller reports its result with
/// [`Warmer::persisted`](crate::Warmer::persisted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistId(pub(crate) u64);

impl PersistId {
    /// The raw number, for logs and maps.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Why a warm was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum WarmTrigger {
    /// The interval ran out.
    Scheduled,
    /// An earlier warm failed and this one retries it.
    Retry,
    /// Someone asked for a warm now.
    Manual,
    /// Not a warm: a real turn seen through the proxy, recorded in history
    /// so the hit % of turns shows beside the warms'.
    Turn,
}

impl WarmTrigger {
    /// The trigger's stable lowercase name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Retry => "retry",
            Self::Manual => "manual",
            Self::Turn => "turn",
        }
    }

    /// The trigger named by [`as_str`](Self::as_str), if any.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Scheduled, Self::Retry, Self::Manual, Self::Turn]
            .into_iter()
            .find(|t| t.as_str() == name)
    }
}

/// A warm to send: replay `template` with the smallest output.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmRequest {
    /// The conversation being warmed.
    pub conversation: ConversationId,
    /// Report the outcome with this token.
    pub token: WarmToken,
    /// The request to replay.
    pub template: Arc<Template>,
    /// The backend that served this conversation last, to route the warm to
    /// the replica holding its KV cache.
    pub preferred_backend: Option<Arc<str>>,
    /// Why this warm is sent.
    pub trigger: WarmTrigger,
    /// When it was due: `now - due_at` is how late it fires.
    pub due_at: Timestamp,
    /// How long what this warm keeps must last: until the warm after it is
    /// due, with an interval to spare. A provider whose cache lifetime is
    /// set rather than refreshed by use (Gemini's explicit caches) is asked
    /// for this much.
    pub keep_for: std::time::Duration,
}

/// Which request a warm sent, chosen per template so the provider accepts
/// it and it reads what the next turn will read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum WarmKind {
    /// The prefix with no output (`max_tokens: 0`).
    ZeroOutput,
    /// The prefix with one output token, where 0 is refused (OpenAI,
    /// structured outputs, models that need 1).
    OneToken,
    /// The prefix with its extended-thinking parameters kept and the output
    /// bounded just above the thinking budget: everything stays cached, at
    /// the price of the thinking tokens.
    ThinkingKept,
    /// Tools and system only, without the thinking parameters and the
    /// messages' breakpoints: the messages' cache entries (keyed by those
    /// parameters) are left to expire, and no entry a turn never reads is
    /// written.
    PrefixOnly,
    /// The prefix with the fewest output tokens the API accepts (OpenAI
    /// Responses: 16).
    MinimumOutput,
    /// No replay: the provider's explicit cache of the prefix had its
    /// lifetime extended (Gemini's `cachedContents`, a `PATCH` of its
    /// `ttl`). Priced as the storage it buys, not as tokens read.
    Extended,
    /// No replay: the deployment's own engine said the prefix is still
    /// resident (llama.cpp's slots), so nothing was sent and no engine time
    /// spent.
    Checked,
    /// No replay: the engine saved the resident prefix to its disk, to be
    /// restored when the next turn arrives; nothing more is sent while the
    /// user is away.
    Saved,
}

impl WarmKind {
    /// What of the next turn's prefix a warm of this kind keeps cached.
    ///
    /// ```
    /// use warming_core::{Refreshes, WarmKind};
    /// assert_eq!(WarmKind::ThinkingKept.refreshes(), Refreshes::WholePrefix);
    /// assert_eq!(WarmKind::PrefixOnly.refreshes(), Refreshes::SystemAndTools);
    /// ```
    #[must_use]
    pub const fn refreshes(self) -> Refreshes {
        match self {
            Self::PrefixOnly => Refreshes::SystemAndTools,
            Self::ZeroOutput
            | Self::OneToken
            | Self::ThinkingKept
            | Self::MinimumOutput
            | Self::Extended
            | Self::Checked
            | Self::Saved => Refreshes::WholePrefix,
        }
    }

    /// The kind's stable name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ZeroOutput => "zero-output",
            Self::OneToken => "one-token",
            Self::ThinkingKept => "thinking-kept",
            Self::PrefixOnly => "prefix-only",
            Self::MinimumOutput => "minimum-output",
            Self::Extended => "extended",
            Self::Checked => "checked",
            Self::Saved => "saved",
        }
    }

    /// The kind named by [`as_str`](Self::as_str), if any.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::ZeroOutput,
            Self::OneToken,
            Self::ThinkingKept,
            Self::PrefixOnly,
            Self::MinimumOutput,
            Self::Extended,
            Self::Checked,
            Self::Saved,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// What of the next turn's prefix a warm keeps cached: a warm whose request
/// differs from the turn's in something that keys the cache reads and
/// refreshes only the entries both share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Refreshes {
    /// Everything the next turn reads (its request, output bounded).
    WholePrefix,
    /// Tools and system only: the messages' entries expire, and the next
    /// turn after a long gap re-writes them.
    SystemAndTools,
}

/// How a warm ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum WarmOutcome {
    /// The prefix was read from the cache.
    Hit,
    /// The prefix had to be written again: the cache had expired.
    Expired,
    /// The prefix was written for the first time: nothing of the
    /// conversation had been cached before (its first turn, or the first
    /// warm after a turn warming never saw the usage of), so nothing was
    /// lost.
    Cold,
    /// The provider answered with neither a read nor a write.
    Uncached,
    /// The warm did not get a usable answer.
    Failed,
    /// Not sent: the policy stopped warming here (the record's `error` says
    /// why), so history shows when and why warming ended.
    Stopped,
    /// Not a warm: a request of the conversation was rewritten to ask the
    /// provider for its longer retention (the record's `error` says why),
    /// so history shows when replays gave way to it.
    Upgraded,
    /// Not sent: the engine said the prefix is still resident
    /// ([`WarmKind::Checked`]), so a replay would have changed nothing.
    Resident,
    /// Not sent: the engine saved the prefix to its disk
    /// ([`WarmKind::Saved`]); the next turn restores it.
    Saved,
}

impl WarmOutcome {
    /// The outcome's stable lowercase name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Expired => "expired",
            Self::Cold => "cold",
            Self::Uncached => "uncached",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Upgraded => "upgraded",
            Self::Resident => "resident",
            Self::Saved => "saved",
        }
    }

    /// The outcome named by [`as_str`](Self::as_str), if any.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Hit,
            Self::Expired,
            Self::Cold,
            Self::Uncached,
            Self::Failed,
            Self::Stopped,
            Self::Upgraded,
            Self::Resident,
            Self::Saved,
        ]
        .into_iter()
        .find(|o| o.as_str() == name)
    }
}

/// One finished warm, as kept in history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WarmRecord {
    /// The conversation warmed.
    pub conversation_id: ConversationId,
    /// When the warm was due (its deadline; for a manual warm, when asked).
    pub due_at: Timestamp,
    /// When the warm was sent.
    pub started_at: Timestamp,
    /// When its answer (or failure) arrived.
    pub finished_at: Timestamp,
    /// Why it was sent.
    pub trigger: WarmTrigger,
    /// How it ended.
    pub outcome: WarmOutcome,
    /// True when the cache had expired before this warm.
    pub expired: bool,
    /// The provider's token counts; `None` for a failure.
    pub usage: Option<Usage>,
    /// Cache-read share of all prompt tokens, in percent.
    pub pct: Option<f64>,
    /// Cache retention, in percent.
    pub expected_pct: Option<f64>,
    /// The backend the warm was routed to (the preferred one sent).
    pub backend: Option<Arc<str>>,
    /// What went wrong, for a failure.
    pub error: Option<Arc<str>>,
    /// Which request was sent, when it answered.
    pub kind: Option<WarmKind>,
    /// What of the next turn's prefix it kept cached (from `kind`): its
    /// `pct` is of what it read, which for `system-and-tools` is all the
    /// next turn will find.
    #[serde(default)]
    pub refreshes: Option<Refreshes>,
}

impl WarmRecord {
    /// The same record, naming the request that was sent.
    #[must_use]
    pub fn with_kind(mut self, kind: Option<WarmKind>) -> Self {
        self.kind = kind;
        self.refreshes = kind.map(WarmKind::refreshes);
        self
    }

    /// The record of a request that answered with `usage`: its outcome and
    /// figures all follow from the usage.
    #[must_use]
    pub fn answered(
        conversation_id: ConversationId,
        trigger: WarmTrigger,
        (due_at, started_at, finished_at): (Timestamp, Timestamp, Timestamp),
        usage: Usage,
        backend: Option<Arc<str>>,
    ) -> Self {
        let expired = usage.cache_had_expired();
        let outcome = if expired {
            WarmOutcome::Expired
        } else if usage.cache_read_tokens > 0 {
            WarmOutcome::Hit
        } else {
            WarmOutcome::Uncached
        };
        Self {
            conversation_id,
            due_at,
            started_at,
            finished_at,
            trigger,
            outcome,
            expired,
            usage: Some(usage),
            pct: usage.cache_pct(),
            expected_pct: usage.retention_pct(),
            backend,
            error: None,
            kind: None,
            refreshes: None,
        }
    }

    /// The same record, of a warm the engine answered without a replay
    /// ([`WarmKind::Checked`], [`WarmKind::Saved`]): `resident` or `saved`
    /// instead of what its usage would say. Other kinds are kept.
    #[must_use]
    pub fn engine_kept(mut self) -> Self {
        let outcome = match self.kind {
            Some(WarmKind::Checked) => WarmOutcome::Resident,
            Some(WarmKind::Saved) => WarmOutcome::Saved,
            _ => return self,
        };
        self.outcome = outcome;
        self.expired = false;
        self
    }

    /// The same record, a first write: `cold`, not `expired` (nothing was
    /// cached to lose). Other outcomes are kept.
    #[must_use]
    pub fn first_write(mut self) -> Self {
        if self.outcome == WarmOutcome::Expired {
            self.outcome = WarmOutcome::Cold;
            self.expired = false;
        }
        self
    }

    /// The record of a warm with no usage to show: it failed, or the policy
    /// stopped it (`outcome`); `error` says what happened.
    #[must_use]
    pub fn unanswered(
        conversation_id: ConversationId,
        trigger: WarmTrigger,
        (due_at, started_at, finished_at): (Timestamp, Timestamp, Timestamp),
        outcome: WarmOutcome,
        error: Arc<str>,
        backend: Option<Arc<str>>,
    ) -> Self {
        Self {
            conversation_id,
            due_at,
            started_at,
            finished_at,
            trigger,
            outcome,
            expired: false,
            usage: None,
            pct: None,
            expected_pct: None,
            backend,
            error: Some(error),
            kind: None,
            refreshes: None,
        }
    }

    /// Milliseconds from sending the warm to its end.
    #[must_use]
    pub fn latency_ms(&self) -> u64 {
        self.finished_at.millis_since(self.started_at)
    }
}
