//! `warming-sim`: a deterministic simulator of warming policies.
//!
//! It drives the real [`warming_core::Warmer`] with a virtual clock over a
//! trace of real conversations, against a provider model (a prefix cache
//! whose TTL restarts on every read, prices, prefill time), and compares
//! every policy with not warming, the provider's 1-hour cache and an offline
//! oracle that knows when each user returns.
//!
//! # Layout
//! - `trace`: Mooncake, RAGPulse and plain JSONL traces.
//! - `run`: one scenario over one trace.
//! - `report`: every scenario at every λ, tables and JSON.
//! - `svg`: the plots.

pub mod report;
pub mod run;
pub mod svg;
pub mod trace;

pub use report::{sweep, Report, Row};
pub use run::{simulate, Outcome, Scenario, SimConfig};
pub use trace::{Trace, TraceError, Turn};
