//! Provider runtime events and the lifecycle guard that filters them.
//!
//! An agent host streams events from possibly overlapping turns, and late or
//! duplicated ones are common. The guard decides which events may move a
//! conversation between active and idle, so a stray completion of an old
//! turn cannot re-arm warming while a newer turn is generating.

use std::sync::Arc;

use crate::{ConversationId, Template};

/// The lifecycle meaning of a runtime event.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEventKind {
    /// `turn.started`.
    TurnStarted,
    /// `turn.completed`, with the turn's request when the host included one.
    TurnCompleted {
        /// A new warm template, if the event carried the request.
        template: Option<Arc<Template>>,
    },
    /// `session.exited`: the provider session ended.
    SessionExited,
    /// Any other type (`thread.token-usage.updated`, unknown ones): accepted
    /// and ignored.
    Other,
}

/// One provider runtime event, already parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeEvent {
    /// The conversation (the event's `threadId`).
    pub conversation: ConversationId,
    /// What happened.
    pub kind: RuntimeEventKind,
    /// The provider's turn id, if the event has one.
    pub turn_id: Option<String>,
}

/// Whether an event changed the conversation's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventDisposition {
    /// The event moved the lifecycle.
    Applied,
    /// The guard (or an unknown type) left the lifecycle alone.
    Ignored,
}

/// What an accepted event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LifecycleStep {
    /// Start a turn, tracking this turn id.
    Start,
    /// End the active turn.
    Settle,
    /// Leave the lifecycle alone.
    Ignore,
}

/// The guard: `active_turn` is the turn id currently tracked, if any.
pub(crate) fn guard(
    active_turn: Option<&str>,
    kind: &RuntimeEventKind,
    turn_id: Option<&str>,
) -> LifecycleStep {
    let conflicts = matches!((active_turn, turn_id), (Some(a), Some(t)) if a != t);
    match kind {
        RuntimeEventKind::TurnStarted if conflicts => LifecycleStep::Ignore,
        RuntimeEventKind::TurnStarted => LifecycleStep::Start,
        RuntimeEventKind::TurnCompleted { .. } => match (active_turn, turn_id) {
            // Only the active turn may close the lifecycle.
            (Some(active), Some(turn)) if active == turn => LifecycleStep::Settle,
            (Some(_), _) => LifecycleStep::Ignore,
            // Nothing tracked: a completion scoped to this conversation is trusted.
            (None, _) => LifecycleStep::Settle,
        },
        RuntimeEventKind::SessionExited => LifecycleStep::Settle,
        RuntimeEventKind::Other => LifecycleStep::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPLETED: RuntimeEventKind = RuntimeEventKind::TurnCompleted { template: None };

    #[test]
    fn a_start_conflicting_with_the_active_turn_is_ignored() {
        let kind = RuntimeEventKind::TurnStarted;
        assert_eq!(guard(Some("t1"), &kind, Some("t2")), LifecycleStep::Ignore);
        assert_eq!(guard(Some("t1"), &kind, Some("t1")), LifecycleStep::Start);
        assert_eq!(guard(None, &kind, Some("t2")), LifecycleStep::Start);
        assert_eq!(guard(Some("t1"), &kind, None), LifecycleStep::Start);
    }

    #[test]
    fn only_the_active_turn_completes() {
        assert_eq!(
            guard(Some("t1"), &COMPLETED, Some("t1")),
            LifecycleStep::Settle
        );
        assert_eq!(
            guard(Some("t1"), &COMPLETED, Some("t0")),
            LifecycleStep::Ignore
        );
        assert_eq!(guard(Some("t1"), &COMPLETED, None), LifecycleStep::Ignore);
        assert_eq!(guard(None, &COMPLETED, None), LifecycleStep::Settle);
        assert_eq!(guard(None, &COMPLETED, Some("t9")), LifecycleStep::Settle);
    }

    #[test]
    fn session_exit_always_ends_the_turn_and_unknown_types_do_nothing() {
        let exited = RuntimeEventKind::SessionExited;
        assert_eq!(guard(Some("t1"), &exited, None), LifecycleStep::Settle);
        assert_eq!(
            guard(Some("t1"), &RuntimeEventKind::Other, Some("t1")),
            LifecycleStep::Ignore
        );
    }
}
