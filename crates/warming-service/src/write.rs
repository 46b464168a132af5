//! The durable changes the service asks a [`Store`](crate::Store) for.

use std::sync::Arc;

use warming_core::{ConversationId, Ledger, Settings, Template, Timestamp, WarmRecord};

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

    /// The store's write for one the core asked for; `None` for a kind of
    /// write this build does not know (the core's enum may grow).
    #[must_use]
    pub fn from_core(write: warming_core::Write) -> Option<Self> {
        use warming_core::Write as Core;
        Some(match write {
            Core::Settings {
                conversation,
                settings,
                ..
            } => Self::Settings {
                conversation,
                settings,
            },
            Core::Backend {
                conversation,
                backend,
                ..
            } => Self::Backend {
                conversation,
                backend,
            },
            Core::Delete { conversation, .. } => Self::Delete { conversation },
            Core::Template {
                conversation,
                template,
            } => Self::Template {
                conversation,
                template,
            },
            Core::Schedule {
                conversation,
                next_warm_at,
            } => Self::Schedule {
                conversation,
                next_warm_at,
            },
            Core::Rhythm {
                conversation,
                depth,
                gaps,
                idle_since,
            } => Self::Rhythm {
                conversation,
                depth,
                gaps,
                idle_since,
            },
            Core::Record { record, .. } => Self::Warm(record),
            _ => return None,
        })
    }
}
