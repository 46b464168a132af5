//! An instance's part in a cluster: it renews its lease, and adopts the
//! conversations of instances whose lease lapsed, restoring them into its
//! engine so their warms go on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use warming_core::IntervalLimits;

use super::DriverHandle;
use crate::ports::Cluster;

/// Conversations adopted per database round trip.
const ADOPT_BATCH: usize = 1_000;

/// This instance's lease lapsed (it could not renew it in time, or found
/// it taken): others may hold its conversations now, so it must stop
/// rather than warm them twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this instance lost its lease on the cluster ({0}); stopping so that no conversation is warmed by two instances")]
pub struct LeaseLost(pub String);

/// Holds this instance's lease until `stop`: renews it three times a lease
/// and, as often, adopts what lapsed instances held (everything that
/// lapsed at once on the first round, so a restart resumes every warm).
/// Returns when stopped, or with [`LeaseLost`] when the lease could not
/// be kept. The lease is not given back here: the caller does that after
/// the driver and store stopped, so the adopters read the final state.
///
/// # Errors
/// [`LeaseLost`].
pub async fn hold_leases(
    cluster: Arc<dyn Cluster>,
    driver: DriverHandle,
    lease: Duration,
    limits: IntervalLimits,
    stop: CancellationToken,
) -> Result<(), LeaseLost> {
    let every = (lease / 3).max(Duration::from_millis(10));
    let mut merged_at = Instant::now();
    // Changes heard from the database, passed on to the surface; the
    // thread ends when the cluster is left.
    let (heard, changes) = (cluster.clone(), driver.changes.clone());
    std::thread::Builder::new()
        .name("warming-changes".into())
        .spawn(move || {
            while let Some(id) = heard.next_change() {
                let _ = changes.send(id);
            }
        })
        .map_err(|e| LeaseLost(format!("cannot start listening for changes: {e}")))?;
    let mut renewed_at = Instant::now();
    loop {
        adopt_lapsed(&cluster, &driver, limits).await;
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
        if merged_at.elapsed() >= PRIOR_MERGE_EVERY {
            merged_at = Instant::now();
            merge_prior(&cluster, &driver).await;
        }
        let asked = Instant::now();
        let renew = cluster.clone();
        match tokio::task::spawn_blocking(move || renew.renew()).await {
            Ok(Ok(true)) => renewed_at = asked,
            Ok(Ok(false)) => return Err(LeaseLost("it lapsed before it was renewed".into())),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not renew the lease; retrying");
                if renewed_at.elapsed() >= lease {
                    return Err(LeaseLost(e.to_string()));
                }
            }
            Err(e) => return Err(LeaseLost(e.to_string())),
        }
    }
}

/// How often what this instance learned of users' returns is merged into
/// the prior the cluster shares (and the others' learning taken in).
const PRIOR_MERGE_EVERY: Duration = Duration::from_secs(60);

/// Merges this instance's learned return prior with the cluster's.
async fn merge_prior(cluster: &Arc<dyn Cluster>, driver: &DriverHandle) {
    let Ok(learned) = driver.prior_learned().await else {
        return;
    };
    let merge = cluster.clone();
    match tokio::task::spawn_blocking(move || merge.merge_prior(&learned)).await {
        Ok(Ok(total)) => driver.prior_merged(total).await,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not merge the learned prior; retrying later")
        }
        Err(_) => {}
    }
}

/// Adopts every conversation whose holder's lease lapsed, in batches.
async fn adopt_lapsed(cluster: &Arc<dyn Cluster>, driver: &DriverHandle, limits: IntervalLimits) {
    loop {
        let adopt = cluster.clone();
        let batch = match tokio::task::spawn_blocking(move || adopt.adopt(ADOPT_BATCH, &limits))
            .await
        {
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not adopt lapsed conversations; retrying later");
                return;
            }
            Err(_) => return,
        };
        let full = batch.len() >= ADOPT_BATCH;
        if batch.is_empty() || driver.adopt(batch).await.is_err() || !full {
            return;
        }
    }
}
