//! What comes out of the engine, split by who carries it out: the sender
//! of warms ([`WarmAction`], [`Warmer::poll_warm`](crate::Warmer::poll_warm)),
//! the store ([`Write`], [`Warmer::poll_write`](crate::Warmer::poll_write))
//! and whoever watches (UIs, metrics: [`Event`],
//! [`Warmer::poll_event`](crate::Warmer::poll_event)). Each output comes out
//! one way only.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::{
    ConversationId, ConversationState, PersistId, Settings, Template, Timestamp, WarmRecord,
    WarmRequest, WarmToken,
};

/// Something for the caller's provider side to do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WarmAction {
    /// Send a warm; report its answer with
    /// [`warm_answered`](crate::Warmer::warm_answered) or its failure with
    /// [`warm_failed`](crate::Warmer::warm_failed).
    Send(WarmRequest),
    /// Stop waiting for this in-flight warm: it was superseded. Its outcome,
    /// if it still arrives, is ignored anyway.
    Abort {
        /// The conversation.
        conversation: ConversationId,
        /// The warm to abort.
        token: WarmToken,
    },
    /// The user closed the conversation: abort its in-flight generation.
    AbortGeneration {
        /// The conversation.
        conversation: ConversationId,
    },
}

/// Something for the caller's store to write. A write with an
/// [`ack`](Self::ack) is awaited: report its result with
/// [`persisted`](crate::Warmer::persisted), and memory changes only once it
/// committed. The others are write-behind: nothing waits for them (an
/// embedder without storage drops them).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Write {
    /// Store the conversation's settings (acknowledged).
    Settings {
        /// Report the write's result with this id.
        ack: PersistId,
        /// The conversation.
        conversation: ConversationId,
        /// The settings to store.
        settings: Settings,
    },
    /// Store the conversation's sticky backend (acknowledged).
    Backend {
        /// Report the write's result with this id.
        ack: PersistId,
        /// The conversation.
        conversation: ConversationId,
        /// The backend id to store.
        backend: Arc<str>,
    },
    /// Delete the conversation and its history (acknowledged): memory
    /// forgets it once the delete committed.
    Delete {
        /// Report the write's result with this id.
        ack: PersistId,
        /// The conversation.
        conversation: ConversationId,
    },
    /// Store the warm template (behind).
    Template {
        /// The conversation.
        conversation: ConversationId,
        /// The template to store.
        template: Arc<Template>,
    },
    /// Store when the next warm is due, for a restart (behind).
    Schedule {
        /// The conversation.
        conversation: ConversationId,
        /// The next warm, or `None` when nothing is scheduled.
        next_warm_at: Option<Timestamp>,
    },
    /// Store what the policies know of the conversation's rhythm, for a
    /// restart (behind): turns so far and its latest gaps.
    Rhythm {
        /// The conversation.
        conversation: ConversationId,
        /// Turns settled so far.
        depth: u32,
        /// Its latest gaps between turns, ms, oldest first.
        gaps: Vec<u64>,
        /// When its idle time began (this settle), for the idle cap.
        idle_since: Timestamp,
    },
    /// Append a record to history (behind): every warm answered or failed,
    /// every turn reported with
    /// [`record_turn`](crate::Warmer::record_turn), and every timed warm a
    /// policy or a guard stopped.
    Record {
        /// The record.
        record: WarmRecord,
        /// The warm this record answers, when it reports one (a caller that
        /// waits on a manual warm matches it here).
        answers: Option<WarmToken>,
    },
}

impl Write {
    /// The id to report this write's result with, when something waits
    /// for it.
    #[must_use]
    pub fn ack(&self) -> Option<PersistId> {
        match self {
            Self::Settings { ack, .. } | Self::Backend { ack, .. } | Self::Delete { ack, .. } => {
                Some(*ack)
            }
            Self::Template { .. }
            | Self::Schedule { .. }
            | Self::Rhythm { .. }
            | Self::Record { .. } => None,
        }
    }
}

/// Something that happened, for whoever watches: UIs and metrics.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The conversation's state after a change, for its subscribers.
    /// Emitted once the change is complete, so it never carries a stale
    /// `next_warm_at`.
    Changed(Arc<ConversationState>),
    /// The user came back: a turn started after an idle gap. The facts the
    /// cost figures need, from the one place that tracks gaps.
    TurnReturned {
        /// The conversation.
        conversation: ConversationId,
        /// How long the user was away, ms (from the settle to this start).
        idle_ms: u64,
        /// Warms sent during the gap.
        warms: u32,
        /// A miss avoided: when the gap outlived the cache's TTL and its
        /// last warm was a hit, the tokens that warm read, which this turn
        /// reads instead of re-writing. `None` when warming saved nothing.
        miss_avoided_tokens: Option<u64>,
    },
}

/// The three queues, one per consumer.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    pub(crate) warms: VecDeque<WarmAction>,
    pub(crate) writes: VecDeque<Write>,
    pub(crate) events: VecDeque<Event>,
}
