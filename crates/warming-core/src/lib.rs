//! `warming-core`: the sans-IO state machine that keeps LLM prompt caches warm.
//!
//! Providers cache a prompt's prefix for a few minutes. While a user is idle,
//! [`Warmer`] schedules replays of the conversation's prefix (warms) so the
//! cache is still hot at the next turn, and keeps the figures that show how
//! well it worked. It never reads a clock, sleeps or does I/O: the caller
//! feeds inputs carrying `now`, drains [`Effect`]s and wakes it at
//! [`Warmer::poll_timeout`]. See [`Warmer`] for the contract.
//!
//! # Driving the Warmer
//! One loop owns the `Warmer`. After every input (each carrying `now`) it
//! drains [`Warmer::poll_effect`] and carries each effect out: sends
//! [`Effect::Warm`] and reports the answer with
//! [`Warmer::warm_completed`] / [`Warmer::warm_failed`]; stores the
//! `Persist*` writes and reports each with [`Warmer::persisted`] (an
//! embedder without storage reports `true` at once); stores or drops the
//! `Save*`/`RecordWarm` effects and the records `warm_completed` and
//! `warm_failed` return; pushes [`Effect::Notify`] to its UIs. Then
//! it sleeps until [`Warmer::poll_timeout`] or the next input, and calls
//! [`Warmer::handle_timeout`]. `examples/sync_loop.rs` (a virtual clock)
//! and `examples/tokio_loop.rs` (a tokio task) do exactly this in under
//! 100 lines each.
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
mod ledger;
mod lifecycle;
mod list_prices;
mod model_prefix;
mod policy;
mod settings;
mod state;
mod template;
mod time;
mod usage;

pub use cache_minimum::{minimum_cacheable_tokens, MINIMUM_CACHEABLE_TOKENS};
pub use effect::{
    Effect, PersistId, Refreshes, WarmKind, WarmOutcome, WarmRecord, WarmRequest, WarmToken,
    WarmTrigger,
};
pub use engine::{
    Config, ConfigBuilder, ConfigError, ListFilter, MoneyToday, Restored, WarmFailure,
    WarmNowError, WarmReply, WarmStats, Warmer,
};
pub use id::{ConversationId, InvalidConversationId, MAX_CONVERSATION_ID_LEN};
pub use ledger::Ledger;
pub use lifecycle::{EventDisposition, RuntimeEvent, RuntimeEventKind, SessionState};
pub use list_prices::{economics_for, ModelPrices, PriceSource};
pub use policy::{decide, Economics, GapView, Policy, ReturnPrior, StopReason};
pub use settings::{
    IntervalBound, IntervalClamped, IntervalLimits, PolicyChange, Settings, SettingsChange,
    DEFAULT_INTERVAL_MS, LONG_TTL_INTERVAL_MS,
};
pub use state::{ConversationState, TurnReads};
pub use template::{
    json_depth, rough_tokens, strip_credentials, PromptParts, Template, TemplateSummary,
    MAX_TEMPLATE_DEPTH,
};
pub use time::Timestamp;
pub use usage::Usage;
