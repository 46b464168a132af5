//! Turns start and settle: what arms, pauses and cancels warming (behaviours 1-3, 11).

use crate::prelude::*;

// Behaviour 1
#[test]
fn a_conversation_never_seen_is_off_idle_and_unscheduled() {
    let h = Harness::new();
    let s = h.state("new");
    assert!(!s.enabled);
    assert_eq!(s.interval_ms, 240_000);
    assert!(!s.active);
    assert_eq!(
        (s.last_pct, s.last_expected_pct, s.last_warm_at),
        (None, None, None)
    );
    assert_eq!(s.next_warm_at, None);
    assert_eq!(s.warm_count, 0);
}

#[test]
fn a_settled_turn_does_not_warm_until_the_user_opts_in() {
    let mut h = Harness::new();
    h.settle("c", "sys");
    assert_eq!(h.warmer.poll_timeout(), None);
    h.advance(3_600_000);
    h.warmer.handle_timeout(h.now);
    assert!(warms(&h.drain()).is_empty());
}

// Behaviour 2
#[test]
fn turn_started_pauses_cancels_and_invalidates_the_warm_in_flight() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    let effects = h.run_to_deadline();
    let token = warms(&effects)[0].token;

    h.advance(100);
    h.warmer.turn_started(h.now, &id("c"));
    let effects = h.drain();
    assert!(effects.contains(&Out::Warm(WarmAction::Abort {
        conversation: id("c"),
        token
    })));
    let pushed = notifications(&effects);
    assert_eq!(pushed.len(), 1);
    assert!(pushed[0].active);
    assert_eq!(pushed[0].next_warm_at, None);

    // The late completion of the superseded warm changes nothing.
    h.advance(100);
    assert_eq!(h.warm_completed(h.now, &id("c"), token, HIT), None);
    assert!(h.drain().is_empty());
    assert_eq!(h.state("c").warm_count, 0);
    assert_eq!(h.warmer.poll_timeout(), None);
}

#[test]
fn turn_started_cancels_the_pending_warm() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    assert!(h.warmer.poll_timeout().is_some());
    h.warmer.turn_started(h.now, &id("c"));
    assert_eq!(h.warmer.poll_timeout(), None);
    assert_eq!(h.state("c").next_warm_at, None);
}

// Behaviour 3
#[test]
fn turn_settled_arms_first_and_then_notifies_a_future_next_warm() {
    let mut h = Harness::new();
    h.enable("c");
    h.drain();
    h.warmer.turn_started(h.now, &id("c"));
    h.drain();
    h.advance(2_000);
    h.settle("c", "sys");
    let effects = h.drain();
    let pushed = notifications(&effects);
    assert_eq!(pushed.len(), 1);
    // Armed from the start of the turn's request, not from its end.
    assert_eq!(pushed[0].next_warm_at, Some(at(240_000)));
    assert!(!pushed[0].active);
    assert!(effects
        .iter()
        .any(|e| matches!(e, Out::Write(Write::Template { .. }))));
}

#[test]
fn a_new_template_replaces_the_old_one() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "first");
    h.advance(10);
    h.settle("c", "second");
    let effects = h.run_to_deadline();
    assert_eq!(
        warms(&effects)[0].template.request().unwrap()["system"],
        "second"
    );
}

#[test]
fn an_explicit_request_start_anchors_the_schedule() {
    let mut h = Harness::new();
    h.enable("c");
    h.advance(60_000);
    h.warmer
        .turn_settled(h.now, &id("c"), Some(template("s")), Some(at(10_000)));
    assert_eq!(h.state("c").next_warm_at, Some(at(250_000)));
}

#[test]
fn a_turn_longer_than_the_interval_warms_right_after_it() {
    let mut h = Harness::new();
    h.enable("c");
    h.warmer.turn_started(h.now, &id("c"));
    h.advance(600_000);
    h.settle("c", "s");
    // Sent at once: nothing is pushed with a time already past.
    assert_eq!(h.state("c").next_warm_at, None);
    assert_eq!(warms(&h.drain()).len(), 1);
}

// Behaviour 11
#[test]
fn shutdown_cancels_every_timer() {
    let mut h = Harness::new();
    for c in ["a", "b", "c"] {
        h.enable(c);
        h.settle(c, "sys");
    }
    assert_eq!(h.warmer.armed_count(), 3);
    h.warmer.shutdown();
    assert_eq!(h.warmer.poll_timeout(), None);
    assert_eq!(h.warmer.armed_count(), 0);
    h.advance(1_000_000);
    h.warmer.handle_timeout(h.now);
    assert!(warms(&h.drain()).is_empty());
}

#[test]
fn time_never_runs_backwards_inside_the_engine() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    let next = h.state("c").next_warm_at.unwrap();
    // An input stamped in the past is treated as happening now.
    h.warmer.turn_started(Timestamp::from_millis(0), &id("c"));
    h.warmer
        .turn_settled(Timestamp::from_millis(0), &id("c"), None, None);
    assert_eq!(h.state("c").next_warm_at, Some(next));
}

#[test]
fn a_turn_longer_than_the_interval_warms_at_once_and_never_shows_a_past_next_warm() {
    let mut h = Harness::new();
    h.set(
        "long",
        SettingsChange {
            enabled: Some(true),
            interval_ms: Some(60_000.0),
            ..Default::default()
        },
    );
    h.settle("long", "sys");
    h.drain();
    h.warmer.turn_started(h.now, &id("long"));
    h.advance(90_000);
    h.warmer
        .turn_settled(h.now, &id("long"), Some(template("sys")), None);
    let effects = h.drain();
    // Due a minute after the turn's start, half a minute ago: sent now.
    assert_eq!(warms(&effects).len(), 1);
    for pushed in notifications(&effects) {
        assert!(
            pushed.next_warm_at.is_none_or(|at| at > h.now),
            "{pushed:?}"
        );
    }
    let token = warms(&effects)[0].token;
    h.advance(500);
    h.warm_completed(h.now, &id("long"), token, Usage::anthropic(3, 5_000, 0));
    let next = h.state("long").next_warm_at.unwrap();
    assert_eq!(next, h.now.plus_millis(60_000 - 500));
}
