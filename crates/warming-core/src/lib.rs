//! `warming-core`: the sans-IO state machine that keeps LLM prompt caches warm.
//!
//! Providers cache a prompt's prefix for a few minutes. While a user is idle,
//! [`Warmer`] schedules replays of the conversation's prefix (warms) so the
//! cache is still hot at the next turn, and keeps the figures that show how
//! well it worked. It never reads a clock, sleeps or does I/O: the caller
//! feeds inputs carrying `now`, drains [`Effect`]s and wakes it at
//! [`Warmer::poll_timeout`]. See [`Warmer`] for the contract.
//!
//! # Layout
//! - [`engine`](Warmer): the state machine and its deadline index.
//! - `settings`: settings, interval clamping and the stored settings codec.
//! - `usage`: token usage and cache percentages.
//! - `template`: the request a warm replays, scrubbed of credentials.
//! - `lifecycle`: provider runtime events and the lifecycle guard.
//! - `policy`: when to stop warming a conversation that may not come back.
//! - `effect`, `state`: what comes out of the engine.

mod cache_minimum;
mod effect;
mod engine;
mod id;
mod lifecycle;
mod policy;
mod settings;
mod state;
mod template;
mod time;
mod usage;

pub use cache_minimum::{minimum_cacheable_tokens, MINIMUM_CACHEABLE_TOKENS};
pub use effect::{
    Effect, PersistId, WarmKind, WarmOutcome, WarmRecord, WarmRequest, WarmToken, WarmTrigger,
};
pub use engine::{
    Config, ListFilter, Restored, WarmFailure, WarmNowError, WarmReply, WarmStats, Warmer,
};
pub use id::{ConversationId, InvalidConversationId, MAX_CONVERSATION_ID_LEN};
pub use lifecycle::{EventDisposition, RuntimeEvent, RuntimeEventKind, SessionState};
pub use policy::{decide, Economics, GapView, Policy, ReturnPrior, StopReason};
pub use settings::{IntervalLimits, Settings, SettingsChange, DEFAULT_INTERVAL_MS};
pub use state::ConversationState;
pub use template::{strip_credentials, Template};
pub use time::Timestamp;
pub use usage::Usage;
