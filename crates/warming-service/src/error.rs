//! What can go wrong when asking the service: each variant maps onto one
//! error code of the HTTP contract, but the service knows nothing of HTTP.

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
    /// The store refused the write; nothing changed.
    #[error("{0}")]
    Storage(String),
    /// The provider failed.
    #[error("{0}")]
    Upstream(String),
    /// The service is shutting down.
    #[error("the service is shutting down")]
    Unavailable,
    /// The database cannot be reached right now; nothing changed and the
    /// call may be retried.
    #[error("{0}")]
    StorageUnavailable(String),
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
            Self::Storage(m) => Self::Storage(with(m)),
            Self::Upstream(m) => Self::Upstream(with(m)),
            Self::StorageUnavailable(m) => Self::StorageUnavailable(with(m)),
            Self::Unavailable => Self::Unavailable,
        }
    }
}

impl From<crate::ports::StoreError> for ServiceError {
    fn from(e: crate::ports::StoreError) -> Self {
        match e {
            crate::ports::StoreError::Unavailable(_) => Self::StorageUnavailable(e.to_string()),
            other => Self::Storage(other.to_string()),
        }
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
