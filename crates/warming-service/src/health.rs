//! What `/healthz` and `/readyz` report beyond "the driver runs": whether
//! the database answers, and whether this instance paused its warms (a
//! cluster member that could not renew its lease).
//!
//! The database is watched two ways: [`watch_database`] reads from it every
//! few seconds, and the lease loop reports each renewal; either marks it
//! reachable or not, so an outage shows even when nothing is being written.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use warming_core::Timestamp;

use crate::ports::{Clock, Store, StoreError};

/// How often [`watch_database`] asks the database.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The database as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseState {
    /// The last read or renewal succeeded.
    Reachable,
    /// Reads and renewals fail since `since`; `error` is the latest.
    Unreachable {
        /// When it first failed.
        since: Timestamp,
        /// The latest failure, as the database driver said it.
        error: String,
    },
}

/// Why warms are paused on this instance, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    /// Since when.
    pub since: Timestamp,
    /// Why, in words.
    pub reason: String,
}

/// A report of both, shared by the lease loop, the probe and the routes.
pub struct Health {
    clock: Arc<dyn Clock>,
    state: Mutex<(DatabaseState, Option<Paused>)>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("state", &self.state)
            .finish()
    }
}

impl Health {
    /// Healthy: the database reachable, nothing paused.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            state: Mutex::new((DatabaseState::Reachable, None)),
        }
    }

    /// The database answered.
    pub fn database_answered(&self) {
        if let Ok(mut state) = self.state.lock() {
            if state.0 != DatabaseState::Reachable {
                tracing::info!("the database answers again");
            }
            state.0 = DatabaseState::Reachable;
        }
    }

    /// The database could not be reached; `since` stays the first failure's
    /// time. Other errors (a refused write) say nothing of reachability.
    pub fn database_failed(&self, error: &StoreError) {
        if !matches!(error, StoreError::Unavailable(_)) {
            return;
        }
        let now = self.clock.now();
        if let Ok(mut state) = self.state.lock() {
            state.0 = match &state.0 {
                DatabaseState::Unreachable { since, .. } => DatabaseState::Unreachable {
                    since: *since,
                    error: error.to_string(),
                },
                DatabaseState::Reachable => {
                    tracing::warn!(error = %error, "the database cannot be reached");
                    DatabaseState::Unreachable {
                        since: now,
                        error: error.to_string(),
                    }
                }
            };
        }
    }

    /// Warms are paused for `reason` (kept from the first pause).
    pub fn pause(&self, reason: &str) {
        let now = self.clock.now();
        if let Ok(mut state) = self.state.lock() {
            if state.1.is_none() {
                state.1 = Some(Paused {
                    since: now,
                    reason: reason.to_owned(),
                });
            }
        }
    }

    /// Warms go on.
    pub fn resume(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.1 = None;
        }
    }

    /// The database's state and the pause, if any.
    #[must_use]
    pub fn report(&self) -> (DatabaseState, Option<Paused>) {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or((DatabaseState::Reachable, None))
    }
}

/// Reads from the store every [`PROBE_EVERY`] until `stop`, reporting to
/// `health` whether the database answered.
pub async fn watch_database(store: Arc<dyn Store>, health: Arc<Health>, stop: CancellationToken) {
    loop {
        let probe = store.clone();
        match tokio::task::spawn_blocking(move || probe.ping()).await {
            Ok(Ok(())) => health.database_answered(),
            Ok(Err(e)) => health.database_failed(&e),
            Err(_) => return,
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}
