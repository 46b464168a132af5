//! `warming-testkit`: a provider stand-in for tests and benchmarks.
//!
//! [`Standin`] speaks Anthropic Messages (`POST /v1/messages`) and OpenAI
//! Chat Completions (`POST /v1/chat/completions`), streamed or not. It keeps
//! a real prefix cache with a TTL that restarts on every read, and answers
//! each request with the usage its provider would report for what was really
//! cached. It names its backend in `x-backend-id`, and can be told to fail or
//! hang the next requests. Nothing is canned.
//!
//! For tests of the service without sockets or files, [`MemoryStore`] and
//! [`ScriptedProvider`] implement its ports in memory.
//!
//! # Layout
//! - `cache`: prompts cut into prefix segments, and the TTL cache.
//! - `rules`: what the real APIs refuse.
//! - `server`: the HTTP routes, answers and control endpoints.
//! - `memory`: the in-memory store and the scripted provider.
//! - `postgres`: a database of its own on the test PostgreSQL server.

pub mod cache;
mod gemini;
mod memory;
pub mod postgres;
pub mod rules;
mod server;
mod shared;

pub use memory::{MemoryStore, Scripted, ScriptedProvider};
pub use server::Standin;
pub use shared::{SeenRequest, StandinOptions};
