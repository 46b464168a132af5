//! What every handler shares, and the lifecycle API's body limit.

use std::sync::Arc;

use warming_core::IntervalLimits;
use warming_service::DriverHandle;

use warming_service::Secret;

/// Largest request body the lifecycle API accepts: 4 MiB. The proxy has
/// its own limits, its upstreams' (`ProxyOptions::max_body_bytes`).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The driver owning the core.
    pub driver: DriverHandle,
    /// The bearer token `/v1` requires, if any.
    pub token: Option<Secret>,
    /// Interval bounds, for the surface spec.
    pub limits: IntervalLimits,
    /// What `/metrics` exports.
    pub metrics: Arc<warming_service::metrics::Metrics>,
    /// Proxy mode.
    pub proxy: Arc<crate::proxy::Proxy>,
    /// Serve `/metrics` and the dashboard without the token.
    pub public_metrics: bool,
    /// Client for forwarding calls to the instance holding a conversation.
    pub peers: reqwest::Client,
}
