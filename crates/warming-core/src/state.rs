//! The externally visible state of one conversation.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{ConversationId, Timestamp};

/// A conversation's state as shown to people: served and pushed by the
/// embedder, in whatever format it speaks.
///
/// `next_warm_at` is `None` or later than the time of the input that produced
/// this snapshot: `None` while disabled, while a turn is active, while a warm
/// is in flight and before the first settled turn.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationState {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Whether the service has seen this conversation; `false` for the
    /// default state of an id never seen (an extension of the contract).
    pub known: bool,
    /// Whether warming is on.
    pub enabled: bool,
    /// Time between warms, in ms.
    pub interval_ms: u64,
    /// Whether a turn is generating.
    pub active: bool,
    /// Cache-read share of all prompt tokens of the last warm, in percent.
    pub last_pct: Option<f64>,
    /// Cache retention of the last warm, in percent.
    pub last_expected_pct: Option<f64>,
    /// When the last successful warm finished.
    pub last_warm_at: Option<Timestamp>,
    /// When the next warm is due.
    pub next_warm_at: Option<Timestamp>,
    /// The sticky backend, if one was seen.
    pub backend: Option<Arc<str>>,
    /// The last warm's error, cleared by a successful warm.
    pub last_error: Option<Arc<str>>,
    /// Successful warms so far.
    pub warm_count: u64,
    /// What its warms spent and its returns saved (an extension).
    pub ledger: crate::Ledger,
    /// Saved minus spent, dollars: the figure a UI shows beside the
    /// countdown (an extension).
    pub net_dollars: f64,
    /// Where its prices come from (an extension): `list`, `config`,
    /// `estimate` (a model no price list knows), or `engine` (a
    /// self-hosted upstream: show the ledger's seconds, not dollars).
    pub priced: crate::PriceSource,
    /// The warming policy in force (an extension of the contract).
    pub policy: crate::Policy,
    /// Why warming stopped for this idle gap, if the policy stopped it (an
    /// extension): no one should wonder why the countdown vanished.
    pub stopped_reason: Option<String>,
    /// The same stop, typed, so programs branch on it instead of parsing
    /// the words.
    pub stopped: Option<crate::StopReason>,
    /// How its returning turns found the cache (an extension).
    pub turns: TurnReads,
    /// How its prefix is kept while its user is away, why, and what that
    /// costs an idle hour (an extension).
    pub plan: crate::Plan,
    /// When a request of it was rewritten to ask for the provider's longer
    /// retention (the plan's upgrade), if one was.
    pub upgraded_at: Option<Timestamp>,
}

/// How a conversation's returning turns found the cache: its real turns
/// after the first, as seen through the proxy since the service started.
/// Beside the warms' own hit %, it shows whether warms that "hit" kept what
/// the turns read.
///
/// ```
/// use warming_core::TurnReads;
/// let reads = TurnReads { returning: 4, hits: 3, last_pct: Some(97.5) };
/// assert_eq!(reads.hit_share_pct(), Some(75.0));
/// assert_eq!(TurnReads::default().hit_share_pct(), None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TurnReads {
    /// Returning turns seen.
    pub returning: u64,
    /// Those that read the cache (outcome `hit`).
    pub hits: u64,
    /// Cache-read share of the last returning turn's prompt, in percent.
    pub last_pct: Option<f64>,
}

impl TurnReads {
    /// The share of returning turns that read the cache, in percent; `None`
    /// before the first.
    #[must_use]
    pub fn hit_share_pct(&self) -> Option<f64> {
        (self.returning > 0).then(|| self.hits as f64 * 100.0 / self.returning as f64)
    }
}
