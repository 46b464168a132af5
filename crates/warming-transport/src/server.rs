//! The HTTP adapter's server: the router on the accept loop, and a shutdown
//! bounded by the grace period. The binary builds the service and hands its
//! parts here.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warming_service::generations::Generations;
use warming_service::metrics::Metrics;
use warming_service::DriverHandle;

use crate::http::{router, AppState};
use crate::proxy::{Proxy, ProxyOptions};

/// What the HTTP side is configured with: its part of the binary's
/// configuration.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Bearer token `/v1`, `/metrics`, the dashboard and (as
    /// `x-warming-token`) the proxy require, if any.
    pub token: Option<warming_service::Secret>,
    /// Serve `/metrics` and the dashboard without the token.
    pub public_metrics: bool,
    /// Interval bounds, for the surface's spec and settings' clamping notes.
    pub limits: warming_core::IntervalLimits,
    /// Most client connections open at once; an eighth more (at least 8)
    /// are reserved for probes and token holders.
    pub max_connections: usize,
    /// Most connections one client address may hold.
    pub max_connections_per_client: usize,
    /// Longest a client may take to send a request's headers.
    pub header_read_timeout: std::time::Duration,
    /// Longest a client may take to send a request's body.
    pub body_read_timeout: std::time::Duration,
    /// How long a shutdown waits for requests in flight (proxied streams
    /// included) before cancelling them.
    pub shutdown_grace: std::time::Duration,
    /// Longest a call forwarded to the instance holding a conversation may
    /// take (a dead peer must not hold the caller longer than a lease).
    pub peer_timeout: std::time::Duration,
}

/// Why the HTTP server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A part of the configuration cannot be used (a header name, say).
    #[error("{0}")]
    Config(String),
    /// The server failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// What the HTTP adapter uses of a running service.
#[derive(Debug, Clone)]
pub struct ServiceParts {
    /// The driver's handle: every read and change goes through it.
    pub driver: DriverHandle,
    /// Proxied generations and their credentials (shared with the driver).
    pub generations: Arc<Generations>,
    /// What `/metrics` exports (shared with the driver).
    pub metrics: Arc<Metrics>,
}

/// Serves the HTTP API, the surface, the dashboard and the proxy on
/// `listener` until `shutdown` resolves; the binary validated `config`. Then it stops accepting, gives
/// requests in flight `shutdown_grace` to finish, cancels the proxied
/// generations still running, and returns; the caller stops the service.
///
/// # Errors
/// [`ServeError`] when the configuration is refused or the server fails.
pub async fn serve(
    listener: TcpListener,
    config: &HttpOptions,
    proxy: &ProxyOptions,
    service: ServiceParts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let proxy =
        Arc::new(Proxy::new(proxy, service.generations.clone()).map_err(ServeError::Config)?);
    let state = AppState {
        driver: service.driver,
        token: config.token.clone(),
        limits: config.limits,
        metrics: service.metrics,
        proxy,
        public_metrics: config.public_metrics,
        // A peer answers a forwarded call as fast as a local one; a dead
        // peer must not hold the caller longer than a lease would.
        peers: reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(std::time::Duration::from_secs(2))
            .timeout(config.peer_timeout)
            .build()
            .map_err(|e| ServeError::Config(format!("cannot build the peer client: {e}")))?,
    };
    tracing::info!(listen = %listener.local_addr()?, "serving");
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
        admission: crate::admission::AdmissionLimits {
            max_connections: config.max_connections,
            max_per_client: config.max_connections_per_client,
            reserved: (config.max_connections / 8).max(8),
        },
        header_read_timeout: config.header_read_timeout,
    };
    let trusted = crate::http::trusted_on_reserve(&state);
    let body_within = config.body_read_timeout;
    let app = router(state).layer(axum::middleware::map_request(
        move |request: axum::extract::Request| async move {
            crate::http::body::with_total_deadline(request, body_within)
        },
    ));
    let served = crate::listen::serve(listener, app, limits, trusted, signalled.clone());
    let grace = config.shutdown_grace;
    tokio::select! {
        () = served => {}
        () = async {
            signalled.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            let cancelled = service.generations.abort_all();
            tracing::warn!(
                grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
                cancelled,
                "shutdown grace period over: cancelling requests still in flight"
            );
        }
    }
    Ok(())
}
