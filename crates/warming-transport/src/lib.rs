//! `warming-transport`: the service's inbound HTTP adapter: the API, the
//! WebSocket surface, the dashboard and the proxy, around the driver of
//! `warming-service`. The binary configures it ([`HttpOptions`],
//! [`proxy::ProxyOptions`]); the provider client (outbound) is
//! `warming-provider`.
//!
//! # Layout
//! - `server`: the HTTP server and its bounded graceful shutdown ([`serve`]).
//! - `listen`: accepting connections with hyper's limits and timeouts.
//! - `http`: the HTTP API, its JSON errors and auth.
//! - `surface`: the WebSocket surface.
//! - `proxy`: proxy mode, SDK base URL to provider, with lifecycle and usage.
//! - `state_json`: a conversation's state in the contract's JSON.
//! - `peer`: calls forwarded to the instance holding a conversation.

pub mod admission;
pub mod http;
mod listen;
mod query;
pub use listen::bind;
mod peer;
pub mod proxy;
mod server;
pub mod state_json;
pub mod surface;

pub use server::{serve, HttpOptions, ServeError, ServiceParts};
