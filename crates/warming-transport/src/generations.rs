//! Per-conversation generations in flight through the proxy, and the
//! credentials their requests carried, kept in memory only.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;
use warming_core::ConversationId;

use crate::provider::Credentials;

#[derive(Debug, Default)]
struct Entry {
    /// Cancelled when the conversation is closed.
    cancel: CancellationToken,
    /// Headers of the last proxied request, for this conversation's warms.
    credentials: Option<Credentials>,
}

/// Generations that `close` can abort, and the credentials warms may reuse.
#[derive(Debug, Default)]
pub struct Generations {
    entries: Mutex<HashMap<ConversationId, Entry>>,
}

impl Generations {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationId, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a generation; the token is cancelled by [`abort`](Self::abort).
    pub fn begin(&self, id: &ConversationId, credentials: Credentials) -> CancellationToken {
        let mut entries = self.entries();
        let entry = entries.entry(id.clone()).or_default();
        if entry.cancel.is_cancelled() {
            entry.cancel = CancellationToken::new();
        }
        entry.credentials = Some(credentials);
        entry.cancel.clone()
    }

    /// Aborts every generation of the conversation and forgets its
    /// credentials: the user closed it.
    pub fn abort(&self, id: &ConversationId) {
        if let Some(entry) = self.entries().remove(id) {
            entry.cancel.cancel();
        }
    }

    /// The credentials the conversation's last proxied request carried.
    #[must_use]
    pub fn credentials(&self, id: &ConversationId) -> Option<Credentials> {
        self.entries().get(id).and_then(|e| e.credentials.clone())
    }
}
