//! Provider runtime events through the lifecycle guard (behaviour 15).

use crate::prelude::*;

#[test]
fn runtime_events_go_through_the_lifecycle_guard() {
    let mut h = Harness::new();
    h.enable("t");
    let started = |turn| event(RuntimeEventKind::TurnStarted, turn);
    let completed = |turn| {
        event(
            RuntimeEventKind::TurnCompleted {
                template: Some(template("rt")),
                failure: None,
            },
            turn,
        )
    };

    assert_eq!(
        h.warmer.runtime_event(h.now, started(Some("1"))),
        EventDisposition::Applied
    );
    assert!(h.state("t").active);
    assert_eq!(
        h.warmer.runtime_event(h.now, started(Some("2"))),
        EventDisposition::Ignored
    );
    assert_eq!(
        h.warmer.runtime_event(h.now, completed(Some("2"))),
        EventDisposition::Ignored
    );
    assert_eq!(
        h.warmer.runtime_event(h.now, completed(None)),
        EventDisposition::Ignored
    );
    assert!(h.state("t").active);
    assert_eq!(
        h.warmer.runtime_event(h.now, completed(Some("1"))),
        EventDisposition::Applied
    );
    let s = h.state("t");
    assert!(!s.active);
    assert!(s.next_warm_at.is_some());

    let usage = event(RuntimeEventKind::Other, Some("1"));
    assert_eq!(
        h.warmer.runtime_event(h.now, usage),
        EventDisposition::Ignored
    );

    h.warmer.runtime_event(h.now, started(Some("3")));
    let exited = event(RuntimeEventKind::SessionExited, None);
    assert_eq!(
        h.warmer.runtime_event(h.now, exited),
        EventDisposition::Applied
    );
    assert!(!h.state("t").active);
}

#[test]
fn ignored_events_do_not_create_conversations() {
    let mut h = Harness::new();
    h.warmer
        .runtime_event(h.now, event(RuntimeEventKind::Other, None));
    assert!(!h.warmer.knows(&id("t")));
}

#[test]
fn events_of_a_conversation_never_seen_are_ignored_and_create_nothing() {
    let mut h = Harness::new();
    let started = RuntimeEvent {
        conversation: id("stranger"),
        kind: RuntimeEventKind::TurnStarted,
        turn_id: Some("1".into()),
    };
    assert_eq!(
        h.warmer.runtime_event(h.now, started),
        EventDisposition::Ignored
    );
    assert!(!h.state("stranger").known);
    assert_eq!(h.warmer.conversations().count(), 0);
}

#[test]
fn failed_turns_and_sessions_set_last_error_and_ready_clears_it() {
    let mut h = Harness::new();
    h.enable("t");
    let send = |h: &mut Harness, kind| h.warmer.runtime_event(h.now, event(kind, Some("1")));
    send(&mut h, RuntimeEventKind::TurnStarted);
    send(
        &mut h,
        RuntimeEventKind::TurnCompleted {
            template: Some(template("rt")),
            failure: Some("Turn failed".into()),
        },
    );
    let s = h.state("t");
    assert!(!s.active);
    assert_eq!(s.last_error.as_deref(), Some("Turn failed"));

    // `running` starts a turn; `error` ends it with its reason.
    let state = |s| RuntimeEventKind::SessionState(s);
    assert_eq!(
        send(&mut h, state(warming_core::SessionState::Running)),
        EventDisposition::Applied
    );
    assert!(h.state("t").active);
    send(
        &mut h,
        state(warming_core::SessionState::Error("rate limited".into())),
    );
    let s = h.state("t");
    assert!(!s.active);
    assert_eq!(s.last_error.as_deref(), Some("rate limited"));

    // `waiting` inside a turn is warmed like idle; `ready` clears the error.
    send(&mut h, state(warming_core::SessionState::Running));
    send(&mut h, state(warming_core::SessionState::Waiting));
    let s = h.state("t");
    assert!(!s.active && s.next_warm_at.is_some());
    assert_eq!(s.last_error.as_deref(), Some("rate limited"));
    send(&mut h, state(warming_core::SessionState::Ready));
    assert_eq!(h.state("t").last_error, None);
}
