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

/// This instance could not hold a lease at all (the thread listening for
/// the cluster's changes could not start, or the renewal task panicked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this instance lost its lease on the cluster ({0}); stopping so that no conversation is warmed by two instances")]
pub struct LeaseLost(pub String);

/// Holds this instance's lease until `stop`: renews it three times a lease
/// and, as often, adopts what lapsed instances held (everything that
/// lapsed at once on the first round, so a restart resumes every warm).
///
/// The database going away does not stop the instance. Once renewals have
/// failed for two thirds of a lease, warms pause (before the lease could
/// lapse and another instance adopt them: no conversation is warmed by
/// two). When the database answers again, the lease is renewed and warms
/// resume; if it lapsed meanwhile, a new lease is taken under the same
/// identity, the conversations others adopted are let go, and the rest
/// resume. Returns when stopped, or with [`LeaseLost`] when the lease
/// could not be held at all. The lease is not given back here: the caller
/// does that after the driver and store stopped, so the adopters read the
/// final state.
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
    let mut paused = false;
    loop {
        if !paused {
            adopt_lapsed(&cluster, &driver, limits).await;
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
        if !paused && merged_at.elapsed() >= PRIOR_MERGE_EVERY {
            merged_at = Instant::now();
            merge_prior(&cluster, &driver).await;
        }
        let asked = Instant::now();
        let renew = cluster.clone();
        let mut renewal = tokio::task::spawn_blocking(move || renew.renew());
        // Warms pause at two thirds of the lease after the last renewal,
        // whether the renewal failed or is still waiting for an answer.
        let pause_at = tokio::time::Instant::from_std(renewed_at + lease * 2 / 3);
        let renewed = loop {
            tokio::select! {
                answer = &mut renewal => break answer,
                () = tokio::time::sleep_until(pause_at), if !paused => {
                    paused = true;
                    driver.pause(unreachable_reason(renewed_at)).await;
                }
            }
        };
        match renewed {
            Ok(Ok(true)) => {
                renewed_at = asked;
                driver.health().database_answered();
                if paused {
                    paused = false;
                    tracing::info!("the lease is renewed again");
                    driver.resume().await;
                }
            }
            Ok(Ok(false)) => {
                driver.health().database_answered();
                if !paused {
                    paused = true;
                    driver
                        .pause("this instance's lease lapsed; taking a new one".into())
                        .await;
                }
                if rejoin(&cluster, &driver).await {
                    renewed_at = asked;
                    paused = false;
                    driver.resume().await;
                }
            }
            Ok(Err(e)) => {
                driver.health().database_failed(&e);
                tracing::warn!(error = %e, "could not renew the lease; retrying");
                if !paused && renewed_at.elapsed() >= lease * 2 / 3 {
                    paused = true;
                    driver.pause(unreachable_reason(renewed_at)).await;
                }
            }
            Err(e) => return Err(LeaseLost(e.to_string())),
        }
    }
}

/// Why warms pause while the lease cannot be renewed.
fn unreachable_reason(renewed_at: Instant) -> String {
    format!(
        "this instance could not renew its lease on the cluster's database for {} s; \
         warms resume when it answers",
        renewed_at.elapsed().as_secs()
    )
}

/// Takes a new lease after the last one lapsed and lets go of what other
/// instances adopted meanwhile; whether it worked.
async fn rejoin(cluster: &Arc<dyn Cluster>, driver: &DriverHandle) -> bool {
    let again = cluster.clone();
    match tokio::task::spawn_blocking(move || again.rejoin()).await {
        Ok(Ok(held)) => {
            let _ = driver.keep_only(held.into_iter().collect()).await;
            true
        }
        Ok(Err(e)) => {
            driver.health().database_failed(&e);
            tracing::warn!(error = %e, "could not take a new lease; retrying");
            false
        }
        Err(_) => false,
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
