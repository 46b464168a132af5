//! What can go wrong when asking the service: each variant maps onto one
//! error code of the HTTP contract, but the service knows nothing of HTTP.
//! Errors keep what caused them ([`Cause`], `source()`), so a log or a
//! caller can walk the chain down to the database's or the OS's own words.

use crate::ports::StoreError;
use crate::Cause;

/// Why the service could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The request conflicts with the conversation's state (a turn is
    /// running, nothing to warm, superseded).
    #[error("{0}")]
    Conflict(String),
    /// No such conversation.
    #[error("{0}")]
    NotFound(String),
    /// The store refused the write or the read; nothing changed. `note`
    /// says what happened anyway and what to do.
    #[error("{error}{}", note_text(note.as_deref()))]
    Storage {
        /// What the store said.
        #[source]
        error: StoreError,
        /// What happened anyway, what to do.
        note: Option<String>,
    },
    /// The provider failed.
    #[error("{0}")]
    Upstream(String),
    /// The service is shutting down.
    #[error("the service is shutting down")]
    Unavailable,
    /// The database cannot be reached right now; nothing changed and the
    /// call may be retried.
    #[error("{error}{}", note_text(note.as_deref()))]
    StorageUnavailable {
        /// What the store said.
        #[source]
        error: StoreError,
        /// What happened anyway, what to do.
        note: Option<String>,
    },
}

/// A note as it follows an error's words.
fn note_text(note: Option<&str>) -> String {
    note.map(|n| format!("; {n}")).unwrap_or_default()
}

impl ServiceError {
    /// The same error, its message followed by `note` (what happened
    /// anyway, what to do).
    #[must_use]
    pub fn explained(self, note: &str) -> Self {
        let with = |message: String| format!("{message}; {note}");
        match self {
            Self::Conflict(m) => Self::Conflict(with(m)),
            Self::NotFound(m) => Self::NotFound(with(m)),
            Self::Storage {
                error,
                note: before,
            } => Self::Storage {
                error,
                note: Some(before.map_or_else(|| note.to_owned(), with)),
            },
            Self::Upstream(m) => Self::Upstream(with(m)),
            Self::StorageUnavailable {
                error,
                note: before,
            } => Self::StorageUnavailable {
                error,
                note: Some(before.map_or_else(|| note.to_owned(), with)),
            },
            Self::Unavailable => Self::Unavailable,
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Self::StorageUnavailable { error, note: None },
            error => Self::Storage { error, note: None },
        }
    }
}

impl ServiceError {
    /// A store call that never ran to its end (its blocking task
    /// panicked or was cancelled).
    #[must_use]
    pub fn storage_task(error: tokio::task::JoinError) -> Self {
        Self::from(StoreError::Failed(Cause::new(error)))
    }
}

/// The innermost cause of an error: the readable part ("Connection refused")
/// of a client error that wraps it several times.
#[must_use]
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_error_keeps_its_cause_down_to_the_os_words() {
        let os = std::io::Error::other("No space left on device");
        let error = ServiceError::from(StoreError::Failed(Cause::new(os)))
            .explained("warming stays off until the disk has room");
        assert_eq!(
            error.to_string(),
            "storage: No space left on device; warming stays off until the disk has room"
        );
        let store = std::error::Error::source(&error).expect("the store's error");
        let cause = store.source().expect("its cause");
        assert_eq!(cause.to_string(), "No space left on device");
        let Some(StoreError::Failed(held)) = store.downcast_ref::<StoreError>() else {
            panic!("the source is the store's error");
        };
        assert!(held.get_ref().downcast_ref::<std::io::Error>().is_some());
        assert_eq!(root_cause(&error), "No space left on device");
    }
}
