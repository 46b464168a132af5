//! `warming-transport`: the service around `warming-core`.
//!
//! # Layout
//! - `server`: the HTTP server and its bounded graceful shutdown ([`serve`]).
//! - `listen`: accepting connections with hyper's limits and timeouts.
//! - `http`: the HTTP API, its JSON errors and auth.
//! - `surface`: the WebSocket surface.
//! - `proxy`: proxy mode, SDK base URL to provider, with lifecycle and usage.
//! - `provider`: Anthropic / OpenAI / webhook warm clients (the service's
//!   `Provider` port), usage parsing.
//! - `config`: the validated service configuration.
//! - `client`: a client of a running server (the CLI's), human durations.

pub mod admission;
pub mod client;
pub mod config;
pub mod http;
mod listen;
pub use listen::bind;
mod peer;
pub mod provider;
pub mod proxy;
mod server;
pub mod surface;

pub use config::ServerConfig;
pub use server::{serve, ServeError, ServiceParts};
pub use warming_service::{ProviderKind, Secret};
