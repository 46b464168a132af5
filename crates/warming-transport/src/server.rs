//! Wiring: storage, restore, driver, HTTP server, graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warming_core::{Config as CoreConfig, Warmer};
use warming_storage::{Storage, StorageOptions};

use crate::config::ServerConfig;
use crate::driver::{self, now};
use crate::generations::Generations;
use crate::http::{router, AppState};
use crate::metrics::Metrics;
use crate::provider::ProviderClient;
use crate::proxy::Proxy;

/// Why the service could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is refused.
    #[error("{0}")]
    Config(String),
    /// The database could not be opened.
    #[error(transparent)]
    Storage(#[from] warming_storage::OpenError),
    /// Restoring from the database failed.
    #[error("cannot restore from the database: {0}")]
    Restore(String),
    /// The HTTP server failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// One WARN line per provider whose key is missing, naming the variable:
/// without it every warm of a conversation not seen through the proxy fails
/// with a 401, and a newcomer should learn that at start, not from history.
fn warn_about_missing_keys(config: &ServerConfig) {
    use crate::config::ProviderKind;
    let missing = match config.provider {
        ProviderKind::Anthropic if config.anthropic_key.is_none() => Some("ANTHROPIC_API_KEY"),
        ProviderKind::OpenAi if config.openai_key.is_none() => Some("OPENAI_API_KEY"),
        _ => None,
    };
    if let Some(variable) = missing {
        tracing::warn!(
            "{variable} is not set: warms will be refused by the provider (401) except for \
             conversations sent through the proxy, which use the client's own key"
        );
    }
}

/// Runs the service on `listener` until `shutdown` resolves, then stops
/// accepting, cancels timers and in-flight warms, flushes storage and
/// returns.
///
/// # Errors
/// [`ServeError`] when the configuration is refused, the database cannot be
/// opened or restored, or the server fails.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.validate().map_err(ServeError::Config)?;
    warn_about_missing_keys(&config);
    let provider = Arc::new(ProviderClient::new(&config).map_err(ServeError::Config)?);
    let options = StorageOptions {
        history_cap: config.history_cap,
        ..StorageOptions::default()
    };
    let db = config.db.clone();
    let limits = config.limits;
    let (storage, restored, prior) = tokio::task::spawn_blocking(move || {
        let storage = Storage::open(&db, options)?;
        let restore = |e: warming_storage::ReadError| ServeError::Restore(e.to_string());
        let restored = storage.load_all(&limits).map_err(restore)?;
        let prior = storage.meta(driver::PRIOR_KEY).map_err(restore)?;
        Ok::<_, ServeError>((Arc::new(storage), restored, prior))
    })
    .await
    .map_err(|e| ServeError::Restore(e.to_string()))??;

    let mut warmer = Warmer::new(CoreConfig {
        limits,
        policy: config.policy,
        enrolled_policy: config.proxy_policy,
        max_idle_ms: u64::try_from(config.max_idle.as_millis()).unwrap_or(u64::MAX),
        economics: config.economics,
        min_cacheable_overrides: config.min_cacheable_overrides.clone(),
        ..CoreConfig::default()
    });
    if let Some(prior) = prior {
        warmer.set_prior(warming_core::ReturnPrior::from_json(&prior));
    }
    let count = restored.len();
    warmer.restore(now(), restored);
    tracing::info!(
        conversations = count,
        armed = warmer.armed_count(),
        db = %config.db.display(),
        "restored"
    );

    let stop = CancellationToken::new();
    let generations = Arc::new(Generations::new(config.proxy_credentials_ttl));
    let in_flight = generations.clone();
    let proxy = Arc::new(Proxy::new(&config, generations.clone()).map_err(ServeError::Config)?);
    let metrics = Arc::new(Metrics::new(config.pricing.clone(), config.economics));
    let (driver, driver_task) = driver::spawn(
        warmer,
        storage.clone(),
        provider,
        generations,
        metrics.clone(),
        config.warm_concurrency,
        stop.clone(),
    );
    let state = AppState {
        driver,
        storage: storage.clone(),
        token: config.token.clone(),
        limits,
        metrics,
        proxy,
        public_metrics: config.public_metrics,
    };
    tracing::info!(listen = %listener.local_addr()?, provider = config.provider.as_str(), "serving");
    // The signal stops accepting; requests in flight get `shutdown_grace`
    // to finish, then proxied generations are cancelled and whatever still
    // runs is dropped with the runtime, so a stuck upstream cannot hold the
    // process (systemd would kill it at TimeoutStopSec).
    let signalled = CancellationToken::new();
    tokio::spawn({
        let signalled = signalled.clone();
        async move {
            shutdown.await;
            signalled.cancel();
        }
    });
    let limits = crate::listen::ConnectionLimits {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout,
    };
    let app = router(state).layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        config.body_read_timeout,
    ));
    let served = crate::listen::serve(listener, app, limits, signalled.clone());
    let grace = config.shutdown_grace;
    let served: std::io::Result<()> = tokio::select! {
        () = served => Ok(()),
        () = async {
            signalled.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            let cancelled = in_flight.abort_all();
            tracing::warn!(
                grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
                cancelled,
                "shutdown grace period over: cancelling requests still in flight"
            );
            Ok(())
        }
    };
    stop.cancel();
    let _ = driver_task.await;
    tokio::task::spawn_blocking(move || storage.close())
        .await
        .map_err(|e| ServeError::Io(std::io::Error::other(e)))?;
    tracing::info!("stopped");
    served.map_err(ServeError::Io)
}
