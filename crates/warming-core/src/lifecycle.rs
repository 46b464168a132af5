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
#[non_exhaustive]
pub enum RuntimeEventKind {
    /// `turn.started`.
    TurnStarted,
    /// `turn.completed`, with the turn's request when the host included one.
    TurnCompleted {
        /// A new warm template, if the event carried the request.
        template: Option<Arc<Template>>,
        /// Why the turn failed (`payload.state: "failed"`; the payload's
        /// `errorMessage`, else "Turn failed"), shown as `lastError`. `None`
        /// for a turn that completed, which clears `lastError`.
        failure: Option<Arc<str>>,
    },
    /// `session.exited`: the provider session ended.
    SessionExited,
    /// `session.state.changed`: the provider session's new state.
    SessionState(SessionState),
    /// Any other type (`thread.token-usage.updated`, unknown ones): accepted
    /// and ignored.
    Other,
}

/// The states of `session.state.changed`, and what each means here.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionState {
    /// Starting up: nothing changes.
    Starting,
    /// Generating: a turn is active (one is started if none is).
    Running,
    /// Waiting inside a turn on a tool or a person: warmed like idle.
    Waiting,
    /// Ready for input: the turn is over, `lastError` cleared.
    Ready,
    /// The turn was interrupted: it is over.
    Interrupted,
    /// The session stopped: the turn is over.
    Stopped,
    /// The session failed: the turn is over, with this `lastError`
    /// (the payload's `reason`, else "Provider session error").
    Error(Arc<str>),
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
#[non_exhaustive]
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
        RuntimeEventKind::SessionState(state) => match state {
            SessionState::Starting => LifecycleStep::Ignore,
            // Already running: nothing to start.
            SessionState::Running if active_turn.is_some() => LifecycleStep::Ignore,
            SessionState::Running => LifecycleStep::Start,
            SessionState::Waiting
            | SessionState::Ready
            | SessionState::Interrupted
            | SessionState::Stopped
            | SessionState::Error(_) => LifecycleStep::Settle,
        },
        RuntimeEventKind::Other => LifecycleStep::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPLETED: RuntimeEventKind = RuntimeEventKind::TurnCompleted {
        template: None,
        failure: None,
    };

    #[test]
    fn session_states_start_end_or_leave_the_turn() {
        let state = |s| RuntimeEventKind::SessionState(s);
        assert_eq!(
            guard(None, &state(SessionState::Running), None),
            LifecycleStep::Start
        );
        assert_eq!(
            guard(Some("t1"), &state(SessionState::Running), None),
            LifecycleStep::Ignore
        );
        assert_eq!(
            guard(None, &state(SessionState::Starting), None),
            LifecycleStep::Ignore
        );
        for end in [
            SessionState::Waiting,
            SessionState::Ready,
            SessionState::Interrupted,
            SessionState::Stopped,
            SessionState::Error("boom".into()),
        ] {
            assert_eq!(guard(Some("t1"), &state(end), None), LifecycleStep::Settle);
        }
    }

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
