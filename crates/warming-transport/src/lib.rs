//! `warming-transport`: the service around `warming-core`.
//!
//! # Layout
//! - `server`: wiring and graceful shutdown ([`run`]).
//! - `listen`: accepting connections with hyper's limits and timeouts.
//! - `driver`: the task that owns the core and carries out its effects.
//! - `http`: the HTTP API, its JSON errors and auth.
//! - `surface`: the WebSocket surface.
//! - `proxy`: proxy mode, SDK base URL to provider, with lifecycle and usage.
//! - `provider`: Anthropic / OpenAI / webhook warm clients, usage parsing.
//! - `metrics`: Prometheus metrics.
//! - `generations`: proxied generations and their in-memory credentials.
//! - `config`: the validated service configuration.
//! - `client`: a client of a running server (the CLI's), human durations.

pub mod client;
pub mod config;
mod driver;
pub mod generations;
pub mod http;
mod listen;
pub mod metrics;
pub mod provider;
pub mod proxy;
mod server;
pub mod surface;

pub use config::{ProviderKind, Secret, ServerConfig};
pub use driver::{now, DriverHandle, ProxiedTurn};
pub use server::{run, ServeError};
