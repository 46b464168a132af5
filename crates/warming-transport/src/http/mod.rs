//! The HTTP API: routes, JSON errors, auth.

pub(crate) mod auth;
pub(crate) use auth::trusted_on_reserve;
pub(crate) mod body;
mod error;
mod events;
pub mod forward;
pub mod openapi;
mod routes;
mod state;

use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post, put};
use axum::Router;

pub use body::JsonBody;
pub use error::ApiError;
pub use state::{AppState, MAX_BODY_BYTES};

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    // Calls about one conversation go to the instance holding it.
    let conversation = Router::new()
        .route(
            "/conversations/{id}",
            get(routes::get_state).delete(routes::delete),
        )
        .route("/conversations/{id}/history", get(routes::history))
        .route(
            "/conversations/{id}/turn-started",
            post(routes::turn_started),
        )
        .route(
            "/conversations/{id}/turn-settled",
            post(routes::turn_settled),
        )
        .route("/conversations/{id}/warm", post(routes::warm))
        .route("/conversations/{id}/waiting", post(routes::waiting))
        .route("/conversations/{id}/close", post(routes::close))
        .route("/conversations/{id}/settings", put(routes::settings))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            forward::to_holder,
        ));
    let v1 = Router::new()
        .route("/conversations", get(routes::list))
        .merge(conversation)
        .route("/events", post(events::ingest))
        .route("/openapi.json", get(routes::openapi))
        .route("/surface", get(crate::surface::upgrade))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let observed = Router::new()
        .route("/", get(routes::dashboard))
        .route("/metrics", get(routes::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token_unless_public,
        ));
    // The proxy reads bodies itself, up to its upstream's limit.
    let proxy = Router::new()
        .route("/proxy/{provider}/{*rest}", any(crate::proxy::forward))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_proxy_token,
        ));
    let api = Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .merge(observed)
        .nest("/v1", v1)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(body::refuse_declared_oversize));
    Router::new()
        .merge(api)
        .merge(proxy)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state)
}
