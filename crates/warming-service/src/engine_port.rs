//! The engine port: what the deployment's own inference engine (llama.cpp's
//! server today; LMCache, vLLM or TensorRT-LLM adapters later) can tell and
//! do about a conversation's prefix besides serving requests. Every ability
//! is optional: where the engine cannot, warms replay as they would without
//! it.
//!
//! The driver asks [`Engine::residency`] before a timed warm and sends no
//! replay for a resident prefix; with [`Engine::save`] it saves a resident
//! prefix once per idle gap instead. The proxy calls [`Engine::restore`]
//! before it forwards a conversation's next turn, and both report each
//! request the engine served with [`Engine::observe`], so the adapter knows
//! where each conversation's prefix sits.

use serde_json::Value;
use warming_core::{ConversationId, EngineSupport, Usage};

use crate::BoxFuture;

/// Where a conversation's prefix is on the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    /// Still in the engine's memory: a request now reads this many tokens
    /// without computing them again.
    Resident {
        /// Tokens of the prefix held.
        tokens: u64,
    },
    /// Gone: evicted by other traffic, or the engine slept.
    Evicted,
    /// The engine cannot tell (the conversation's last request was not
    /// seen, or could have been served by more than one slot).
    Unknown,
}

/// Fields to add to a turn's request so the engine serves it where its
/// prefix was restored (llama.cpp: `{"id_slot": N}`).
pub type RequestPin = serde_json::Map<String, Value>;

/// Why the engine did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

/// The deployment's own engine, beyond serving requests. Implementations
/// keep what they learn (which slot holds which conversation, which files
/// are saved) in bounded memory of their own.
pub trait Engine: Send + Sync + 'static {
    /// The engine's name, for logs and the plan (`llama.cpp`).
    fn name(&self) -> &'static str;

    /// What it can do now, for every conversation's plan.
    fn support(&self) -> EngineSupport;

    /// A request of `conversation` that used `usage` finished on the
    /// engine: noted at once, in memory, so a warm that asks before
    /// [`observe`](Self::observe) is done still finds it.
    fn expect(&self, conversation: &ConversationId, usage: Usage);

    /// A request of `conversation` that used `usage` finished on the
    /// engine (a proxied turn, a replay): where its prefix now sits.
    fn observe<'a>(&'a self, conversation: &'a ConversationId, usage: Usage) -> BoxFuture<'a, ()>;

    /// Whether the prefix of `conversation`'s last request is still held.
    /// Must not wake a sleeping engine.
    fn residency<'a>(&'a self, conversation: &'a ConversationId) -> BoxFuture<'a, Residency>;

    /// Saves `conversation`'s resident prefix to the engine's disk.
    ///
    /// # Errors
    /// [`EngineError`] when it is not resident or the engine refused.
    fn save<'a>(
        &'a self,
        conversation: &'a ConversationId,
    ) -> BoxFuture<'a, Result<(), EngineError>>;

    /// Before `conversation`'s next turn is forwarded: restores its saved
    /// prefix if it is no longer resident, and answers what the request
    /// must carry to be served there; `None` when nothing was restored.
    ///
    /// # Errors
    /// [`EngineError`] when a saved prefix could not be restored (the turn
    /// is forwarded as it came, and computes its prefix again).
    fn restore<'a>(
        &'a self,
        conversation: &'a ConversationId,
    ) -> BoxFuture<'a, Result<Option<RequestPin>, EngineError>>;

    /// Forgets `conversation` (closed or deleted): its saved files go.
    fn forget<'a>(&'a self, conversation: &'a ConversationId) -> BoxFuture<'a, ()>;
}
