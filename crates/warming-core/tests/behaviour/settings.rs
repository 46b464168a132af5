//! Settings: persisted before they take effect; close (behaviours 8-10).

use crate::prelude::*;

// Behaviour 8
#[test]
fn enabling_persists_first_and_changes_memory_only_when_confirmed() {
    let mut h = Harness::new();
    h.settle("c", "sys");
    h.drain();
    let op = h.warmer.update_settings(
        h.now,
        &id("c"),
        SettingsChange {
            enabled: Some(true),
            ..Default::default()
        },
    );
    let effects = h.drain();
    assert_eq!(
        effects,
        [Out::Write(Write::Settings {
            ack: op,
            conversation: id("c"),
            settings: Settings {
                enabled: true,
                ..Settings::defaults(&IntervalLimits::default())
            }
        })]
    );
    assert!(!h.state("c").enabled);
    h.warmer.persisted(h.now, op, true);
    let s = h.state("c");
    assert!(s.enabled);
    assert!(s.next_warm_at.unwrap() > h.now);
    assert_eq!(notifications(&h.drain()).len(), 1);
}

#[test]
fn a_failed_settings_write_leaves_everything_as_it_was() {
    let mut h = Harness::new();
    h.settle("c", "sys");
    h.drain();
    let before = h.state("c");
    let op = h.warmer.update_settings(
        h.now,
        &id("c"),
        SettingsChange {
            enabled: Some(true),
            interval_ms: Some(20_000.0),
            ..Default::default()
        },
    );
    h.drain();
    h.warmer.persisted(h.now, op, false);
    assert_eq!(h.state("c"), before);
    assert!(h.drain().is_empty());
    assert_eq!(h.warmer.poll_timeout(), None);
    // The next change starts from what is stored, not from the failed one.
    let op = h.warmer.update_settings(
        h.now,
        &id("c"),
        SettingsChange {
            enabled: Some(true),
            ..Default::default()
        },
    );
    let effects = h.drain();
    assert!(matches!(
        effects[0],
        Out::Write(Write::Settings {
            settings: Settings {
                interval_ms: 240_000,
                ..
            },
            ..
        })
    ));
    h.warmer.persisted(h.now, op, true);
}

#[test]
fn disabling_cancels_and_re_enabling_restores_the_persisted_interval() {
    let mut h = Harness::new();
    h.set(
        "c",
        SettingsChange {
            enabled: Some(true),
            interval_ms: Some(60_000.0),
            ..Default::default()
        },
    );
    h.settle("c", "sys");
    h.set(
        "c",
        SettingsChange {
            enabled: Some(false),
            ..Default::default()
        },
    );
    assert_eq!(h.state("c").next_warm_at, None);
    assert_eq!(h.warmer.poll_timeout(), None);
    h.advance(1_000);
    h.enable("c");
    let s = h.state("c");
    assert_eq!(s.interval_ms, 60_000);
    assert_eq!(s.next_warm_at, Some(at(60_000)));
}

#[test]
fn enabling_while_active_arms_nothing_until_the_turn_settles() {
    let mut h = Harness::new();
    h.settle("c", "sys");
    h.warmer.turn_started(h.now, &id("c"));
    h.enable("c");
    assert_eq!(h.state("c").next_warm_at, None);
    h.settle("c", "sys");
    assert!(h.state("c").next_warm_at.is_some());
}

#[test]
fn two_quick_changes_do_not_undo_each_other() {
    let mut h = Harness::new();
    let a = h.warmer.update_settings(
        h.now,
        &id("c"),
        SettingsChange {
            enabled: Some(true),
            ..Default::default()
        },
    );
    let b = h.warmer.update_settings(
        h.now,
        &id("c"),
        SettingsChange {
            interval_ms: Some(20_000.0),
            ..Default::default()
        },
    );
    h.warmer.persisted(h.now, a, true);
    h.warmer.persisted(h.now, b, true);
    let s = h.state("c");
    assert!(s.enabled);
    assert_eq!(s.interval_ms, 20_000);
}

// Behaviour 9
#[test]
fn interval_changes_are_clamped_persisted_and_rearm_an_armed_timer() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    h.advance(5_000);
    for (asked, stored) in [
        (f64::NAN, 10_000),
        (0.0, 10_000),
        (-1.0, 10_000),
        (12_345.6, 12_346),
        (1e15, 3_540_000),
    ] {
        h.set(
            "c",
            SettingsChange {
                interval_ms: Some(asked),
                ..Default::default()
            },
        );
        let s = h.state("c");
        assert_eq!(s.interval_ms, stored, "{asked}");
        assert_eq!(s.next_warm_at, Some(at(stored)), "{asked}");
    }
}

#[test]
fn interval_limits_are_configurable() {
    let mut h = Harness::with_config(
        Config::builder()
            .limits(IntervalLimits::new(1_000, 60_000))
            .build()
            .expect("a valid config"),
    );
    h.set(
        "c",
        SettingsChange {
            interval_ms: Some(500.0),
            ..Default::default()
        },
    );
    assert_eq!(h.state("c").interval_ms, 1_000);
    // The default interval is clamped too.
    assert_eq!(h.state("d").interval_ms, 60_000);
}

// Behaviour 10
#[test]
fn close_disables_at_once_aborts_and_persists_off_with_the_interval_kept() {
    let mut h = Harness::new();
    h.set(
        "c",
        SettingsChange {
            enabled: Some(true),
            interval_ms: Some(30_000.0),
            ..Default::default()
        },
    );
    h.settle("c", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    let op = h.warmer.close(h.now, &id("c"));
    let effects = h.drain();
    assert!(effects.contains(&Out::Warm(WarmAction::Abort {
        conversation: id("c"),
        token
    })));
    assert!(effects.contains(&Out::Warm(WarmAction::AbortGeneration {
        conversation: id("c")
    })));
    assert!(effects.contains(&Out::Write(Write::Settings {
        ack: op,
        conversation: id("c"),
        settings: Settings {
            enabled: false,
            interval_ms: 30_000,
            interval_chosen: true,
            ..Settings::defaults(&IntervalLimits::default())
        },
    })));
    let pushed = notifications(&effects);
    assert!(!pushed[0].enabled);
    assert_eq!(pushed[0].next_warm_at, None);
    // Disabled in memory before the write is confirmed...
    assert!(!h.state("c").enabled);
    // ...and a settle racing the close cannot re-arm.
    h.settle("c", "late");
    assert_eq!(h.warmer.poll_timeout(), None);
    assert_eq!(h.warm_completed(h.now, &id("c"), token, HIT), None);
    h.warmer.persisted(h.now, op, true);
    assert!(!h.state("c").enabled);
}

#[test]
fn an_older_enable_confirmed_after_a_close_does_not_resurrect_warming() {
    let mut h = Harness::new();
    h.settle("c", "sys");
    let enable = h.warmer.update_settings(
        h.now,
        &id("c"),
        SettingsChange {
            enabled: Some(true),
            ..Default::default()
        },
    );
    let close = h.warmer.close(h.now, &id("c"));
    h.warmer.persisted(h.now, enable, true);
    h.warmer.persisted(h.now, close, true);
    assert!(!h.state("c").enabled);
    assert_eq!(h.warmer.poll_timeout(), None);
}

#[test]
fn a_close_the_store_refused_leaves_the_stored_settings_but_no_timer() {
    let mut h = Harness::new();
    h.set(
        "c",
        SettingsChange {
            enabled: Some(true),
            interval_ms: Some(30_000.0),
            ..Default::default()
        },
    );
    h.settle("c", "sys");
    let close = h.warmer.close(h.now, &id("c"));
    h.drain();
    h.warmer.persisted(h.now, close, false);
    let effects = h.drain();
    let state = h.state("c");
    // Memory says what the store says: on, at 30 s...
    assert!(state.enabled);
    assert_eq!(state.interval_ms, 30_000);
    // ...but nothing is warmed, and the state says why.
    assert_eq!(state.next_warm_at, None);
    assert_eq!(h.warmer.poll_timeout(), None);
    assert_eq!(
        state.stopped,
        Some(warming_core::StopReason::CloseNotStored)
    );
    assert!(notifications(&effects)
        .last()
        .is_some_and(|s| s.stopped == Some(warming_core::StopReason::CloseNotStored)));
    h.advance(120_000);
    h.warmer.handle_timeout(h.now);
    assert!(warms(&h.drain()).is_empty(), "a warm after a refused close");
    // The next turn is the person back: warming goes on.
    h.warmer.turn_started(h.now, &id("c"));
    h.settle("c", "sys");
    assert!(h.state("c").next_warm_at.is_some());
}

#[test]
fn a_turn_started_for_a_new_conversation_is_written_before_it_is_answered() {
    let mut h = Harness::new();
    h.warmer.turn_started(h.now, &id("new"));
    assert!(h.drain().contains(&Out::Write(Write::Schedule {
        conversation: id("new"),
        next_warm_at: None,
    })));
    // A known one's turn writes nothing: there is nothing new to keep.
    h.settle("new", "sys");
    h.drain();
    h.warmer.turn_started(h.now, &id("new"));
    assert!(!h
        .drain()
        .iter()
        .any(|e| matches!(e, Out::Write(Write::Schedule { .. }))));
}

#[test]
fn an_interval_change_while_a_warm_is_in_flight_sends_no_second_warm() {
    let mut h = Harness::new();
    h.set(
        "c",
        SettingsChange {
            enabled: Some(true),
            interval_ms: Some(30_000.0),
            ..Default::default()
        },
    );
    h.settle("c", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    let sent_at = h.now;
    // The warm is slow (a paused instance holds it): by now a 20 s
    // interval from it is past.
    h.advance(25_000);
    h.set(
        "c",
        SettingsChange {
            interval_ms: Some(20_000.0),
            ..Default::default()
        },
    );
    assert!(
        warms(&h.drain()).is_empty(),
        "a second warm beside the first"
    );
    assert_eq!(h.state("c").next_warm_at, None, "one is in flight");
    // It answers more than the new interval after it was sent: it
    // refreshed the cache about now, so the next is an interval from now.
    h.warm_completed(h.now, &id("c"), token, HIT);
    assert!(h.now >= sent_at.plus_millis(20_000));
    assert!(warms(&h.drain()).is_empty(), "a second warm at once");
    assert_eq!(h.state("c").next_warm_at, Some(h.now.plus_millis(20_000)));
}
