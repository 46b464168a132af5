//! The durable changes the service asks a [`Store`](crate::Store) for.

use std::sync::Arc;

use warming_core::{
    ConversationId, Effect, Ledger, PersistId, Settings, Template, Timestamp, WarmRecord,
};

/// One durable change.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// A conversation's settings.
    Settings {
        /// The conversation.
        conversation: ConversationId,
        /// Its settings.
        settings: Settings,
    },
    /// A conversation's sticky backend.
    Backend {
        /// The conversation.
        conversation: ConversationId,
        /// The backend id.
        backend: Arc<str>,
    },
    /// A conversation's warm template (already free of credentials).
    Template {
        /// The conversation.
        conversation: ConversationId,
        /// The template.
        template: Arc<Template>,
    },
    /// When a conversation's next warm is due.
    Schedule {
        /// The conversation.
        conversation: ConversationId,
        /// The due time, or `None` when nothing is scheduled.
        next_warm_at: Option<Timestamp>,
    },
    /// A finished warm: appended to history (capped per conversation) and
    /// folded into the conversation's stats.
    Warm(WarmRecord),
    /// A conversation's turns so far and latest gaps.
    Rhythm {
        /// The conversation.
        conversation: ConversationId,
        /// Turns settled so far.
        depth: u32,
        /// Latest gaps, ms, oldest first.
        gaps: Vec<u64>,
        /// When its idle time began.
        idle_since: Timestamp,
    },
    /// What a conversation's warms spent and its returns saved, as the
    /// core tallies it (the whole ledger: the last one written wins).
    Ledger {
        /// The conversation.
        conversation: ConversationId,
        /// Its ledger.
        ledger: Ledger,
    },
    /// Removes a conversation and its history.
    Delete {
        /// The conversation.
        conversation: ConversationId,
    },
    /// A service-wide value (e.g. the learned return prior).
    Meta {
        /// Its name.
        key: &'static str,
        /// Its value.
        value: String,
    },
}

impl Write {
    /// The conversation the write changes; `None` for a service-wide value.
    #[must_use]
    pub fn conversation(&self) -> Option<&ConversationId> {
        match self {
            Self::Settings { conversation, .. }
            | Self::Backend { conversation, .. }
            | Self::Template { conversation, .. }
            | Self::Schedule { conversation, .. }
            | Self::Rhythm { conversation, .. }
            | Self::Ledger { conversation, .. }
            | Self::Delete { conversation } => Some(conversation),
            Self::Warm(record) => Some(&record.conversation_id),
            Self::Meta { .. } => None,
        }
    }

    /// The write a core persist effect asks for, with the id its result is
    /// reported under; `None` for any other effect.
    #[must_use]
    pub fn for_persist(effect: &Effect) -> Option<(PersistId, Self)> {
        match effect {
            Effect::PersistSettings {
                op,
                conversation,
                settings,
            } => Some((
                *op,
                Self::Settings {
                    conversation: conversation.clone(),
                    settings: *settings,
                },
            )),
            Effect::PersistBackend {
                op,
                conversation,
                backend,
            } => Some((
                *op,
                Self::Backend {
                    conversation: conversation.clone(),
                    backend: backend.clone(),
                },
            )),
            Effect::PersistDelete { op, conversation } => Some((
                *op,
                Self::Delete {
                    conversation: conversation.clone(),
                },
            )),
            _ => None,
        }
    }
}
