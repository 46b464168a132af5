//! Per-conversation generations in flight through the proxy, and the
//! credentials their requests carried, kept in memory only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use warming_core::ConversationId;

use crate::ports::Credentials;

#[derive(Debug)]
struct Entry {
    /// Cancelled when the conversation is closed.
    cancel: CancellationToken,
    /// Headers of the last proxied request, for this conversation's warms.
    credentials: Credentials,
    /// When the last proxied request arrived: credentials expire after it.
    seen_at: Instant,
}

/// Generations that `close` can abort, and the credentials warms may reuse.
#[derive(Debug)]
pub struct Generations {
    /// How long credentials are kept after a conversation's last request.
    ttl: Duration,
    entries: Mutex<HashMap<ConversationId, Entry>>,
}

impl Default for Generations {
    fn default() -> Self {
        Self::new(Duration::from_secs(3600))
    }
}

impl Generations {
    /// Keeps credentials for `ttl` after each conversation's last request.
    #[must_use]
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationId, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a generation; the token is cancelled by [`abort`](Self::abort).
    pub fn begin(&self, id: &ConversationId, credentials: Credentials) -> CancellationToken {
        let mut entries = self.entries();
        let now = Instant::now();
        entries.retain(|_, e| now.duration_since(e.seen_at) < self.ttl);
        let entry = entries.entry(id.clone()).or_insert_with(|| Entry {
            cancel: CancellationToken::new(),
            credentials: credentials.clone(),
            seen_at: now,
        });
        entry.credentials = credentials;
        entry.seen_at = now;
        entry.cancel.clone()
    }

    /// Aborts every generation of the conversation and forgets its
    /// credentials: the user closed it.
    pub fn abort(&self, id: &ConversationId) {
        if let Some(entry) = self.entries().remove(id) {
            entry.cancel.cancel();
        }
    }

    /// Aborts every generation in flight, for a shutdown whose grace period
    /// is over; answers how many conversations had one.
    pub fn abort_all(&self) -> usize {
        let entries = std::mem::take(&mut *self.entries());
        for entry in entries.values() {
            entry.cancel.cancel();
        }
        entries.len()
    }

    /// The credentials the conversation's last proxied request carried, unless
    /// they expired.
    #[must_use]
    pub fn credentials(&self, id: &ConversationId) -> Option<Credentials> {
        let mut entries = self.entries();
        let fresh = entries
            .get(id)
            .is_some_and(|e| e.seen_at.elapsed() < self.ttl);
        if !fresh {
            entries.remove(id);
            return None;
        }
        entries.get(id).map(|e| e.credentials.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ProviderKind;

    fn creds() -> Credentials {
        Credentials {
            kind: ProviderKind::Anthropic,
            headers: Vec::new(),
        }
    }

    #[test]
    fn close_cancels_and_forgets() {
        let generations = Generations::default();
        let id = ConversationId::new("c").unwrap();
        let token = generations.begin(&id, creds());
        assert!(generations.credentials(&id).is_some());
        generations.abort(&id);
        assert!(token.is_cancelled());
        assert!(generations.credentials(&id).is_none());
        // A new request after the close gets a fresh, live token.
        assert!(!generations.begin(&id, creds()).is_cancelled());
    }

    #[test]
    fn credentials_expire_after_the_idle_time() {
        let generations = Generations::new(Duration::ZERO);
        let id = ConversationId::new("c").unwrap();
        let _ = generations.begin(&id, creds());
        assert!(generations.credentials(&id).is_none());
    }
}
