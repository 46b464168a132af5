//! `warming-core`: the sans-IO state machine that keeps LLM prompt caches warm.
//!
//! Providers cache a prompt's prefix for a few minutes. While a user is idle,
//! [`Warmer`] schedules replays of the conversation's prefix (warms) so the
//! cache is still hot at the next turn, and keeps the figures that show how
//! well it worked. It never reads a clock, sleeps or does I/O: the caller
//! feeds inputs carrying `now`, drains its outputs and wakes it at
//! [`Warmer::poll_timeout`]. See [`Warmer`] for the contract.
//!
//! # Driving the Warmer
//! One loop owns the `Warmer`. After every input (each carrying `now`) it
//! drains the outputs, one queue per consumer, in this order:
//! 1. [`Warmer::poll_write`]: each [`Write`] to the store. One with an
//!    [`ack`](Write::ack) is awaited: report it with [`Warmer::persisted`]
//!    (an embedder without storage reports `true` at once); the others are
//!    write-behind, history records ([`Write::Record`]) among them.
//! 2. [`Warmer::poll_warm`]: each [`WarmAction`]: send a warm and report
//!    its answer with [`Warmer::warm_answered`] or its failure with
//!    [`Warmer::warm_failed`]; abort a superseded warm or a closed
//!    conversation's generation.
//! 3. [`Warmer::poll_event`]: each [`Event`] for UIs and metrics.
//!
//! Then it sleeps until [`Warmer::poll_timeout`] or the next input, and
//! calls [`Warmer::handle_timeout`]. `examples/sync_loop.rs` (a virtual
//! clock) and `examples/tokio_loop.rs` (a tokio task) do exactly this,
//! naming every output.
//!
//! # Layout
//! - [`engine`](Warmer): the state machine and its deadline index.
//! - `settings`: settings, interval clamping and the stored settings codec.
//! - `usage`: token usage and cache percentages.
//! - `template`: the request a warm replays, scrubbed of credentials.
//! - `lifecycle`: provider runtime events and the lifecycle guard.
//! - `policy`: when to stop warming a conversation that may not come back.
//! - `output`: what comes out, by consumer; `warm`: warms and their
//!   records; `state`: a conversation as shown.

mod cache_minimum;
mod engine;
mod id;
mod ledger;
mod lifecycle;
mod list_prices;
mod model_prefix;
mod output;
mod policy;
mod settings;
mod state;
mod template;
mod time;
mod usage;
mod warm;

pub use cache_minimum::{minimum_cacheable_tokens, MINIMUM_CACHEABLE_TOKENS};
pub use engine::{
    Config, ConfigBuilder, ConfigError, ListFilter, MoneyToday, Restored, WarmFailure,
    WarmNowError, WarmReply, WarmStats, Warmer,
};
pub use id::{ConversationId, InvalidConversationId, MAX_CONVERSATION_ID_LEN};
pub use ledger::Ledger;
pub use lifecycle::{EventDisposition, RuntimeEvent, RuntimeEventKind, SessionState};
pub use list_prices::{economics_for, ModelPrices, PriceSource};
pub use output::{Event, WarmAction, Write};
pub use policy::{
    choose_plan, decide, Economics, EngineSupport, GapView, KeepAlive, Plan, PlanInputs,
    PlanReason, Policy, ReturnPrior, StopReason,
};
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
pub use warm::{
    PersistId, Refreshes, WarmKind, WarmOutcome, WarmRecord, WarmRequest, WarmToken, WarmTrigger,
};
