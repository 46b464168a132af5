//! `warming serve` assembles the service here, and nowhere else: the
//! SQLite store, the provider client, the wall clock and the driver, handed
//! to the HTTP adapter.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warming_core::{ReturnPrior, Warmer};
use warming_provider::ProviderClient;
use warming_service::generations::Generations;
use warming_service::metrics::Metrics;
use warming_service::{
    hold_leases, Clock, Cluster, DriverOptions, ProviderKind, Store, StoreError, SystemClock,
    PRIOR_KEY,
};
use warming_storage::{Storage, StorageOptions};
use warming_transport::ServiceParts;

use crate::config::ServerConfig;

/// One WARN line per provider whose key is missing, naming the variable:
/// without it every warm of a conversation not seen through the proxy fails
/// with a 401, and a newcomer should learn that at start, not from history.
/// Only for the provider's public API: a local upstream (the stand-in, an
/// engine) takes no key, and a warning there would be false; a refused key
/// is said by the warm's own error.
fn warn_about_missing_keys(config: &ServerConfig) {
    let upstream = config.upstreams().of(config.provider).url;
    if config.provider.default_upstream() != Some(upstream.as_str()) {
        return;
    }
    let missing = match config.provider {
        ProviderKind::Anthropic if config.anthropic_key.is_none() => Some("ANTHROPIC_API_KEY"),
        ProviderKind::OpenAi if config.openai_key.is_none() => Some("OPENAI_API_KEY"),
        ProviderKind::Gemini if config.gemini_key.is_none() => Some("GEMINI_API_KEY"),
        _ => None,
    };
    if let Some(variable) = missing {
        tracing::warn!(
            "{variable} is not set: warms will be refused by the provider (401) except for \
             conversations sent through the proxy, which use the client's own key"
        );
    }
}

/// Whether `--db` names a PostgreSQL database rather than a SQLite file.
fn is_postgres(db: &std::path::Path) -> bool {
    db.to_str()
        .is_some_and(|d| d.starts_with("postgres://") || d.starts_with("postgresql://"))
}

/// Opens the store `--db` names: a PostgreSQL URL, else a SQLite file.
fn open_store(config: &ServerConfig) -> Result<Arc<dyn Store>, String> {
    if is_postgres(&config.db) {
        let options = warming_storage_postgres::PgOptions {
            history_cap: config.history_cap,
            template_cache_bytes: config.template_cache_bytes,
            ..warming_storage_postgres::PgOptions::default()
        };
        let url = config.db.to_string_lossy();
        let store =
            warming_storage_postgres::PgStorage::open(&url, options).map_err(|e| e.to_string())?;
        return Ok(Arc::new(store));
    }
    let options = StorageOptions {
        history_cap: config.history_cap,
        template_cache_bytes: config.template_cache_bytes,
        ..StorageOptions::default()
    };
    let storage = Storage::open(&config.db, options).map_err(|e| e.to_string())?;
    Ok(Arc::new(storage))
}

/// What `restore` hands over: the store, the engine restored from it, and
/// the cluster when several instances share the database.
struct Restoration {
    storage: Arc<dyn Store>,
    warmer: Warmer,
    cluster: Option<Arc<dyn Cluster>>,
}

/// Opens the store and restores the engine from it. On PostgreSQL the
/// instance joins the cluster instead of loading every conversation: it
/// adopts those nobody live holds once it runs (`hold_leases`).
async fn restore(
    config: &ServerConfig,
    clock: &dyn Clock,
    advertise: String,
) -> Result<Restoration, String> {
    let (owned, limits) = (config.clone(), config.limits);
    let clustered = is_postgres(&config.db);
    let (storage, restored, prior, cluster) = tokio::task::spawn_blocking(move || {
        let storage = open_store(&owned)?;
        let restore = |e: StoreError| format!("cannot restore from the database: {e}");
        let cluster: Option<Arc<dyn Cluster>> = if clustered {
            let url = owned.db.to_string_lossy();
            let lease = u64::try_from(owned.lease.as_millis()).unwrap_or(u64::MAX);
            let member = warming_storage_postgres::PgCluster::join(&url, &advertise, lease)
                .map_err(|e| e.to_string())?;
            tracing::info!(instance = member.id(), url = %advertise, "joined the cluster");
            Some(Arc::new(member))
        } else {
            None
        };
        let restored = match cluster {
            Some(_) => Vec::new(),
            None => storage.load_all(&limits).map_err(restore)?,
        };
        let prior = storage.meta(PRIOR_KEY).map_err(restore)?;
        Ok::<_, String>((storage, restored, prior, cluster))
    })
    .await
    .map_err(|e| e.to_string())??;
    let mut warmer = Warmer::new(config.core_config().map_err(|e| e.to_string())?);
    if let Some(prior) = prior {
        warmer.set_prior(ReturnPrior::from_json(&prior));
    }
    let count = restored.len();
    warmer.restore(clock.now(), restored);
    // A URL may carry a password: log only where the store is.
    let db = if clustered {
        "postgres".to_owned()
    } else {
        config.db.display().to_string()
    };
    tracing::info!(
        conversations = count,
        armed = warmer.armed_count(),
        db = %db,
        "restored"
    );
    Ok(Restoration {
        storage,
        warmer,
        cluster,
    })
}

/// The URL other instances reach this one at: `--advertise-url`, else the
/// listening address (with a warning when that is no address a peer can
/// use).
fn advertise_url(config: &ServerConfig, listener: &TcpListener) -> Result<String, String> {
    if let Some(url) = &config.advertise_url {
        return Ok(url.clone());
    }
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if addr.ip().is_unspecified() && is_postgres(&config.db) {
        tracing::warn!(
            "listening on {addr}: give --advertise-url so that other instances on this \
             database can reach this one"
        );
    }
    Ok(format!("http://{addr}"))
}

/// The deployment's own engine, when `--engine` names one: connected and
/// asked what it supports, said in the log.
async fn connect_engine(
    config: &ServerConfig,
) -> Result<Option<Arc<dyn warming_service::Engine>>, String> {
    let Some(options) = config.engine_options() else {
        return Ok(None);
    };
    let base = options.base.clone();
    let engine = warming_provider::LlamaCpp::connect(options).await?;
    let support = warming_service::Engine::support(&engine);
    tracing::info!(engine = "llama.cpp", upstream = %base, ?support, "engine port on");
    Ok(Some(Arc::new(engine)))
}

/// Runs the service on `listener` until `shutdown` resolves, then stops
/// the HTTP side (bounded by the grace period), the driver (timers and
/// warms cancelled) and the store (flushed), in that order; in a cluster,
/// the lease is given back last, so the adopters read the final state.
///
/// # Errors
/// A message when the configuration is refused, the database cannot be
/// opened or restored, the server fails, or this instance lost its lease.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    config.validate()?;
    warn_about_missing_keys(&config);
    let provider = Arc::new(ProviderClient::new(config.provider_options())?);
    let engine = connect_engine(&config).await?;
    let mut config = config;
    config.engine_support = engine
        .as_ref()
        .map_or(warming_core::EngineSupport::None, |e| e.support());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let advertise = advertise_url(&config, &listener)?;
    let Restoration {
        storage,
        warmer,
        cluster,
    } = restore(&config, clock.as_ref(), advertise).await?;
    let generations = Arc::new(Generations::new(config.proxy_credentials_ttl));
    let metrics = Arc::new(Metrics::new(config.pricing.clone(), config.economics));
    metrics.count_dropped_log_lines(Box::new(crate::log::dropped_lines));
    metrics.set_spend_caps(
        config.max_spend_per_day,
        config.max_spend_per_conversation_day,
    );
    let stop = CancellationToken::new();
    let (mut driver, driver_task) = warming_service::spawn(
        warmer,
        storage.clone(),
        provider,
        clock,
        generations.clone(),
        metrics.clone(),
        DriverOptions {
            warm_concurrency: config.warm_concurrency,
            evict_after: config.evict_after,
            limits: config.limits,
            clustered: cluster.is_some(),
            release_explicit_caches: config.delete_explicit_caches,
            engine,
        },
        stop.clone(),
    );
    tokio::spawn(warming_service::health::watch_database(
        storage.clone(),
        driver.health().clone(),
        stop.clone(),
    ));
    let lost = CancellationToken::new();
    let membership = cluster.clone().map(|cluster| {
        driver = driver.clone().with_cluster(cluster.clone());
        let (handle, lease, limits) = (driver.clone(), config.lease, config.limits);
        let (stop, lost) = (stop.clone(), lost.clone());
        tokio::spawn(async move {
            let held = hold_leases(cluster, handle, lease, limits, stop).await;
            if held.is_err() {
                lost.cancel();
            }
            held
        })
    });
    let parts = ServiceParts {
        driver,
        generations,
        metrics,
    };
    // The driver ending before it is asked to (a panic) stops the server:
    // an instance that answers but never warms looks alive to a supervisor.
    // Once shutting down, the driver ends as the server lets go of its
    // handles: expected, not a death.
    let (driver_died, shutting_down) = (CancellationToken::new(), CancellationToken::new());
    let driver_task = {
        let (died, shutting) = (driver_died.clone(), shutting_down.clone());
        tokio::spawn(async move {
            let ended = driver_task.await;
            if !shutting.is_cancelled() {
                died.cancel();
            }
            ended
        })
    };
    let (stopping, died, shutting) = (lost.clone(), driver_died.clone(), shutting_down.clone());
    let shutdown = async move {
        tokio::select! {
            () = shutdown => {}
            () = stopping.cancelled() => {}
            () = died.cancelled() => {}
        }
        shutting.cancel();
    };
    let served = warming_transport::serve(
        listener,
        &config.http_options(),
        &config.proxy_options(),
        parts,
        shutdown,
    )
    .await;
    shutting_down.cancel();
    stop.cancel();
    let _ = driver_task.await;
    let lease = match membership {
        Some(task) => task.await.map_err(|e| e.to_string())?,
        None => Ok(()),
    };
    tokio::task::spawn_blocking(move || {
        storage.close();
        if let Some(cluster) = cluster {
            cluster.leave();
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    if let Err(lost) = lease {
        tracing::error!("{lost}");
        return Err(lost.to_string());
    }
    if driver_died.is_cancelled() {
        let message = "the driver stopped unexpectedly (see the log above); exiting so a \
                       supervisor restarts warming";
        tracing::error!("{message}");
        return Err(message.into());
    }
    tracing::info!("stopped");
    served.map_err(|e| e.to_string())
}
