//! `warming-service`: the service around [`warming_core::Warmer`].
//!
//! One task, the driver, owns the engine: it takes commands from a
//! [`DriverHandle`], sleeps until the engine's next deadline, and carries
//! out its effects through the ports: a [`Store`] for durable writes and
//! history, a [`Provider`] for warms, a [`Clock`] for the time. Adapters
//! implement the ports (`warming-storage`: SQLite; `warming-transport`: the
//! provider clients) or drive the handle (`warming-transport`: HTTP, the
//! WebSocket surface, the proxy); the binary wires them.
//!
//! # Layout
//! - `ports`: the traits and the types that cross them; `engine_port`: the
//!   deployment's own engine (residency, save, restore).
//! - `write`: the durable changes a store applies.
//! - `driver`: the task and its handle.
//! - `generations`: proxied generations and their in-memory credentials.
//! - `health`: whether the database answers and warms are paused.
//! - `metrics`: what `/metrics` exports.
//! - `stored`: the stored settings' JSON, shared by the stores.
//! - `pricing`: the providers' list prices, handed to the engine.

mod cause;
mod driver;
mod duration;
mod engine_port;
mod error;
pub mod generations;
pub mod health;
pub mod metrics;
pub mod ports;
pub mod pricing;
pub mod provider_usage;
pub mod stored;
mod upstreams;
mod write;

pub use cause::Cause;
pub use driver::{
    hold_leases, spawn, DriverHandle, DriverOptions, LeaseLost, ProxiedTurn, PRIOR_KEY,
};
pub use duration::{format_duration, parse_duration};
pub use engine_port::{Engine, EngineError, RequestPin, Residency};
pub use error::{root_cause, ServiceError};
pub use ports::{
    Ack, BoxFuture, Clock, Cluster, Credentials, Provider, ProviderKind, Route, Secret, Store,
    StoreError, SystemClock, TokioClock, WarmAnswer,
};
pub use upstreams::{Upstream, Upstreams};
pub use write::Write;
