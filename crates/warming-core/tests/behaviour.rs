//! One test (or a few) per numbered behaviour of the core, on a virtual clock.

mod support;

use std::sync::Arc;

use support::{id, notifications, template, warms, Harness, T0};
use warming_core::{
    Config, ConversationId, Effect, EventDisposition, IntervalLimits, Restored, RuntimeEvent,
    RuntimeEventKind, Settings, SettingsChange, Timestamp, Usage, WarmFailure, WarmNowError,
    WarmOutcome, WarmStats, WarmTrigger,
};

const HIT: Usage = Usage::anthropic(3, 5_000, 0);
const MISS: Usage = Usage::anthropic(3, 0, 5_000);

fn at(offset_ms: u64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

// 1
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

// 2
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
    assert!(effects.contains(&Effect::AbortWarm {
        conversation: id("c"),
        token
    }));
    let pushed = notifications(&effects);
    assert_eq!(pushed.len(), 1);
    assert!(pushed[0].active);
    assert_eq!(pushed[0].next_warm_at, None);

    // The late completion of the superseded warm changes nothing.
    h.advance(100);
    assert_eq!(h.warmer.warm_completed(h.now, &id("c"), token, HIT), None);
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

// 3
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
        .any(|e| matches!(e, Effect::SaveTemplate { .. })));
}

#[test]
fn a_new_template_replaces_the_old_one() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "first");
    h.advance(10);
    h.settle("c", "second");
    let effects = h.run_to_deadline();
    assert_eq!(warms(&effects)[0].template.request()["system"], "second");
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

// 4
#[test]
fn a_due_deadline_emits_a_warm_with_a_fresh_token_template_and_backend() {
    let mut h = Harness::new();
    h.enable("c");
    let op = h
        .warmer
        .backend_resolved(h.now, &id("c"), "replica-7")
        .unwrap();
    h.warmer.persisted(h.now, op, true);
    h.settle("c", "sys");
    let first = h.run_to_deadline();
    let w1 = warms(&first)[0].clone();
    assert_eq!(w1.trigger, WarmTrigger::Scheduled);
    assert_eq!(w1.preferred_backend.as_deref(), Some("replica-7"));
    assert_eq!(w1.template.request()["system"], "sys");
    assert_eq!(h.now, at(240_000));

    h.warmer.warm_completed(h.now, &id("c"), w1.token, HIT);
    let second = h.run_to_deadline();
    assert!(warms(&second)[0].token > w1.token);
}

#[test]
fn an_early_or_repeated_wakeup_fires_nothing() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    h.drain();
    h.advance(239_999);
    h.warmer.handle_timeout(h.now);
    h.warmer.handle_timeout(h.now);
    assert!(h.drain().is_empty());
    h.advance(1);
    h.warmer.handle_timeout(h.now);
    h.warmer.handle_timeout(h.now);
    assert_eq!(warms(&h.drain()).len(), 1);
}

// 5
#[test]
fn a_completed_warm_updates_stats_rearms_from_its_start_and_then_notifies() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    let sent = h.now;
    h.advance(1_500);
    let record = h
        .warmer
        .warm_completed(h.now, &id("c"), token, HIT)
        .unwrap();
    assert_eq!(record.outcome, WarmOutcome::Hit);
    assert_eq!(record.latency_ms(), 1_500);
    let effects = h.drain();
    let pushed = notifications(&effects);
    assert_eq!(pushed.len(), 1);
    let s = pushed[0];
    assert_eq!(s.last_pct, Some(5_000.0 / 5_003.0 * 100.0));
    assert_eq!(s.last_expected_pct, Some(100.0));
    assert_eq!(s.last_warm_at, Some(h.now));
    assert_eq!(s.warm_count, 1);
    // The TTL restarted when the warm was sent, so the next one counts from there.
    assert_eq!(s.next_warm_at, Some(sent.plus_millis(240_000)));
    assert!(s.next_warm_at > s.last_warm_at);
    // The record is the caller's, returned, not queued a second time.
    assert!(!effects.iter().any(|e| matches!(e, Effect::RecordWarm(_))));
}

#[test]
fn a_warm_that_wrote_instead_of_read_is_marked_expired() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    let record = h
        .warmer
        .warm_completed(h.now, &id("c"), token, MISS)
        .unwrap();
    assert!(record.expired);
    assert_eq!(record.outcome, WarmOutcome::Expired);
    assert_eq!(h.state("c").last_pct, Some(0.0));
}

#[test]
fn a_completion_after_the_conversation_turned_active_changes_nothing() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    h.warmer.turn_started(h.now, &id("c"));
    h.drain();
    let before = h.state("c");
    assert_eq!(h.warmer.warm_completed(h.now, &id("c"), token, HIT), None);
    assert_eq!(h.state("c"), before);
}

#[test]
fn a_completion_with_an_unknown_token_or_conversation_changes_nothing() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    assert_eq!(
        h.warmer.warm_completed(h.now, &id("other"), token, HIT),
        None
    );
    h.warmer
        .warm_completed(h.now, &id("c"), token, HIT)
        .unwrap();
    // Reporting the same token twice counts once.
    assert_eq!(h.warmer.warm_completed(h.now, &id("c"), token, HIT), None);
    assert_eq!(h.state("c").warm_count, 1);
}

// 6
#[test]
fn a_failed_warm_is_retried_with_growing_backoff_capped_by_the_interval() {
    let mut h = Harness::new();
    h.enable("c");
    h.set(
        "c",
        SettingsChange {
            interval_ms: Some(30_000.0),
            ..Default::default()
        },
    );
    h.settle("c", "sys");
    let mut token = warms(&h.run_to_deadline())[0].token;
    let mut delays = Vec::new();
    for _ in 0..4 {
        let failure = WarmFailure {
            message: "upstream 529 overloaded".into(),
            retry_after_ms: None,
            refused: false,
        };
        h.warmer
            .warm_failed(h.now, &id("c"), token, failure)
            .unwrap();
        let pushed = h.drain();
        let s = notifications(&pushed)[0];
        assert_eq!(s.last_error.as_deref(), Some("upstream 529 overloaded"));
        let failed_at = h.now;
        let effects = h.run_to_deadline();
        delays.push(h.now.millis_since(failed_at));
        let retry = warms(&effects)[0];
        assert_eq!(retry.trigger, WarmTrigger::Retry);
        token = retry.token;
    }
    assert_eq!(delays, [5_000, 10_000, 20_000, 30_000]);

    // Recovery: a success clears the error and returns to the interval.
    h.warmer
        .warm_completed(h.now, &id("c"), token, HIT)
        .unwrap();
    let s = h.state("c");
    assert_eq!(s.last_error, None);
    assert_eq!(s.next_warm_at, Some(h.now.plus_millis(30_000)));
}

#[test]
fn retry_after_is_honoured_but_never_past_the_interval() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    let failure = WarmFailure {
        message: "429".into(),
        retry_after_ms: Some(60_000),
        refused: false,
    };
    h.warmer
        .warm_failed(h.now, &id("c"), token, failure)
        .unwrap();
    assert_eq!(h.state("c").next_warm_at, Some(h.now.plus_millis(60_000)));
    let token = warms(&h.run_to_deadline())[0].token;
    let failure = WarmFailure {
        message: "429".into(),
        retry_after_ms: Some(3_600_000),
        refused: false,
    };
    h.warmer
        .warm_failed(h.now, &id("c"), token, failure)
        .unwrap();
    assert_eq!(h.state("c").next_warm_at, Some(h.now.plus_millis(240_000)));
}

// 7
#[test]
fn a_manual_warm_restarts_the_cycle_from_now_and_notifies() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    h.advance(100_000);
    h.drain();
    let token = h.warmer.warm_now(h.now, &id("c")).unwrap();
    let effects = h.drain();
    assert_eq!(warms(&effects)[0].trigger, WarmTrigger::Manual);
    let sent = h.now;
    h.advance(800);
    h.warmer
        .warm_completed(h.now, &id("c"), token, HIT)
        .unwrap();
    let pushed = h.drain();
    let s = notifications(&pushed)[0];
    assert_eq!(s.warm_count, 1);
    assert_eq!(s.next_warm_at, Some(sent.plus_millis(240_000)));
    // The old deadline (at 240 s after the turn) no longer fires.
    assert_eq!(h.warmer.poll_timeout(), Some(sent.plus_millis(240_000)));
}

#[test]
fn a_manual_warm_is_refused_while_active_or_without_a_template() {
    let mut h = Harness::new();
    assert_eq!(
        h.warmer.warm_now(h.now, &id("c")),
        Err(WarmNowError::NoTemplate)
    );
    h.warmer.turn_started(h.now, &id("c"));
    assert_eq!(
        h.warmer.warm_now(h.now, &id("c")),
        Err(WarmNowError::Active)
    );
    h.warmer.turn_settled(h.now, &id("c"), None, None);
    assert_eq!(
        h.warmer.warm_now(h.now, &id("c")),
        Err(WarmNowError::NoTemplate)
    );
    h.drain();
    h.settle("c", "s");
    assert!(h.warmer.warm_now(h.now, &id("c")).is_ok());
}

#[test]
fn a_manual_warm_while_disabled_warms_once_and_arms_nothing() {
    let mut h = Harness::new();
    h.settle("c", "sys");
    let token = h.warmer.warm_now(h.now, &id("c")).unwrap();
    h.warmer
        .warm_completed(h.now, &id("c"), token, HIT)
        .unwrap();
    let s = h.state("c");
    assert_eq!(s.warm_count, 1);
    assert_eq!(s.next_warm_at, None);
    assert_eq!(h.warmer.poll_timeout(), None);
}

// 8
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
        [Effect::PersistSettings {
            op,
            conversation: id("c"),
            settings: Settings {
                enabled: true,
                ..Settings::defaults(&IntervalLimits::default())
            }
        }]
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
            policy: None,
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
        Effect::PersistSettings {
            settings: Settings {
                interval_ms: 240_000,
                ..
            },
            ..
        }
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
            policy: None,
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

// 9
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
    let mut h = Harness::with_config(Config {
        limits: IntervalLimits::new(1_000, 60_000),
        ..Config::default()
    });
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

// 10
#[test]
fn close_disables_at_once_aborts_and_persists_off_with_the_interval_kept() {
    let mut h = Harness::new();
    h.set(
        "c",
        SettingsChange {
            enabled: Some(true),
            interval_ms: Some(30_000.0),
            policy: None,
        },
    );
    h.settle("c", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    let op = h.warmer.close(h.now, &id("c"));
    let effects = h.drain();
    assert!(effects.contains(&Effect::AbortWarm {
        conversation: id("c"),
        token
    }));
    assert!(effects.contains(&Effect::AbortGeneration {
        conversation: id("c")
    }));
    assert!(effects.contains(&Effect::PersistSettings {
        op,
        conversation: id("c"),
        settings: Settings {
            enabled: false,
            interval_ms: 30_000,
            interval_chosen: true,
            ..Settings::defaults(&IntervalLimits::default())
        },
    }));
    let pushed = notifications(&effects);
    assert!(!pushed[0].enabled);
    assert_eq!(pushed[0].next_warm_at, None);
    // Disabled in memory before the write is confirmed...
    assert!(!h.state("c").enabled);
    // ...and a settle racing the close cannot re-arm.
    h.settle("c", "late");
    assert_eq!(h.warmer.poll_timeout(), None);
    assert_eq!(h.warmer.warm_completed(h.now, &id("c"), token, HIT), None);
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

// 11
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

// 13 (percent figures are unit-tested in usage.rs; here through the engine)
#[test]
fn openai_usage_gives_the_same_figures_through_the_engine() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    let record = h
        .warmer
        .warm_completed(h.now, &id("c"), token, Usage::openai(2_048, 1_024))
        .unwrap();
    assert_eq!(record.pct, Some(50.0));
    assert_eq!(h.state("c").last_pct, Some(50.0));
}

// 14
#[test]
fn a_backend_is_adopted_only_after_its_write_and_retried_after_a_failure() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    let op = h.warmer.backend_resolved(h.now, &id("c"), "b1").unwrap();
    assert_eq!(h.state("c").backend, None);
    h.warmer.persisted(h.now, op, false);
    assert_eq!(h.state("c").backend, None);
    // The same id again is retried, because memory never advanced.
    let op = h.warmer.backend_resolved(h.now, &id("c"), "b1").unwrap();
    h.warmer.persisted(h.now, op, true);
    assert_eq!(h.state("c").backend.as_deref(), Some("b1"));
    assert_eq!(h.warmer.backend_resolved(h.now, &id("c"), "b1"), None);
    let w = warms(&h.run_to_deadline())[0].clone();
    assert_eq!(w.preferred_backend, Some(Arc::from("b1")));
}

// 15
fn event(kind: RuntimeEventKind, turn: Option<&str>) -> RuntimeEvent {
    RuntimeEvent {
        conversation: id("t"),
        kind,
        turn_id: turn.map(String::from),
    }
}

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

// 16
fn restored(raw: &str, enabled: bool, next: Option<Timestamp>) -> Restored {
    Restored {
        conversation: ConversationId::new(raw).unwrap(),
        settings: Some(Settings {
            enabled,
            interval_ms: 60_000,
            interval_chosen: true,
            ..Settings::defaults(&IntervalLimits::default())
        }),
        template: Some((*template("restored")).clone()),
        next_warm_at: next,
        backend: Some("b9".into()),
        stats: WarmStats {
            warm_count: 7,
            last_pct: Some(99.0),
            ..WarmStats::default()
        },
        depth: 4,
        gaps: vec![400_000, 410_000],
        idle_since: None,
    }
}

#[test]
fn restore_resumes_enabled_conversations_once_each() {
    let mut h = Harness::new();
    h.warmer.restore(
        h.now,
        [
            restored("future", true, Some(at(30_000))),
            restored("missed", true, Some(Timestamp::from_millis(T0 - 3_600_000))),
            restored("unscheduled", true, None),
            restored("off", false, Some(at(10))),
        ],
    );
    assert_eq!(h.state("future").next_warm_at, Some(at(30_000)));
    assert_eq!(h.state("missed").next_warm_at, Some(at(1_000)));
    assert_eq!(h.state("unscheduled").next_warm_at, Some(at(1_000)));
    assert_eq!(h.state("off").next_warm_at, None);
    assert_eq!(h.state("future").warm_count, 7);
    assert_eq!(h.state("future").backend.as_deref(), Some("b9"));

    // The conversation that missed an hour of warms warms once, not 60 times.
    let effects = h.run_to_deadline();
    let fired: Vec<_> = warms(&effects)
        .iter()
        .map(|w| w.conversation.to_string())
        .collect();
    assert_eq!(fired, ["missed", "unscheduled"]);
    assert_eq!(warms(&effects)[0].preferred_backend.as_deref(), Some("b9"));
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

// Policies (issue: cost-aware warming)
#[test]
fn a_ping_limit_stops_warming_with_a_reason_until_the_next_turn() {
    use warming_core::Policy;
    let mut h = Harness::new();
    h.set(
        "c",
        SettingsChange {
            enabled: Some(true),
            interval_ms: None,
            policy: Some(Some(Policy::Pings(2))),
        },
    );
    h.settle("c", "sys");
    for _ in 0..2 {
        let token = warms(&h.run_to_deadline())[0].token;
        h.warmer
            .warm_completed(h.now, &id("c"), token, HIT)
            .unwrap();
        h.drain();
    }
    let effects = h.run_to_deadline();
    assert!(warms(&effects).is_empty(), "a third warm was sent");
    let pushed = notifications(&effects);
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].next_warm_at, None);
    assert_eq!(pushed[0].policy, warming_core::Policy::Pings(2));
    assert!(pushed[0]
        .stopped_reason
        .as_deref()
        .unwrap()
        .contains("2 warms"));
    // History says so too.
    let stop = effects
        .iter()
        .find_map(|e| match e {
            Effect::RecordWarm(r) => Some(r),
            _ => None,
        })
        .expect("the stop is recorded");
    assert_eq!(stop.outcome, warming_core::WarmOutcome::Stopped);
    assert!(stop.error.as_deref().unwrap().contains("2 warms"));
    assert_eq!(h.warmer.poll_timeout(), None);

    // The user comes back: a new gap, a new allowance.
    h.warmer.turn_started(h.now, &id("c"));
    h.settle("c", "sys");
    let s = h.state("c");
    assert_eq!(s.stopped_reason, None);
    assert!(s.next_warm_at.is_some());
}

#[test]
fn adaptive_stops_for_users_who_do_not_come_back_and_learns_from_returns() {
    let adaptive = Config {
        policy: warming_core::Policy::Adaptive,
        ..Config::default()
    };
    let mut h = Harness::with_config(adaptive.clone());
    // Fifty conversations that each had one turn and never came back.
    for i in 0..50 {
        let c = format!("gone-{i}");
        h.settle(&c, "sys");
    }
    // Turns seconds old are not yet evidence that their users left: they
    // count once their first TTL is over.
    assert_eq!(h.warmer.prior().turns[0], 0);
    h.advance(300_000);
    h.warmer.handle_timeout(h.now);
    assert_eq!(h.warmer.prior().turns[0], 50);
    h.enable("c");
    h.settle("c", "sys");
    let effects = h.run_to_deadline();
    assert!(warms(&effects).is_empty());
    let reason = h.state("c").stopped_reason.unwrap();
    assert!(reason.contains("unlikely"), "{reason}");

    // Re-enabling lifts the stop (the user asked for it).
    h.set(
        "c",
        SettingsChange {
            enabled: Some(false),
            ..Default::default()
        },
    );
    h.enable("c");
    assert_eq!(h.state("c").stopped_reason, None);

    // Users who come back a few minutes after each turn teach the prior.
    let mut h = Harness::with_config(adaptive);
    h.enable("loyal");
    for _ in 0..30 {
        h.settle("loyal", "sys");
        h.advance(400_000);
        h.warmer.turn_started(h.now, &id("loyal"));
    }
    h.settle("loyal", "sys");
    assert_eq!(h.warmer.prior().returns.iter().sum::<u64>(), 30);
    let effects = h.run_to_deadline();
    assert_eq!(
        warms(&effects).len(),
        1,
        "{:?}",
        h.state("loyal").stopped_reason
    );
}

#[test]
fn a_restored_conversation_keeps_its_rhythm_for_the_policies() {
    let mut h = Harness::new();
    h.warmer.restore(h.now, [restored("r", true, None)]);
    h.warmer.turn_started(h.now, &id("r"));
    h.advance(1_000);
    h.settle("r", "sys");
    let effects = h.drain();
    let rhythm = effects.iter().find_map(|e| match e {
        Effect::SaveRhythm { depth, gaps, .. } => Some((*depth, gaps.clone())),
        _ => None,
    });
    // The restored depth counts on, and the restored gaps stay (the restart
    // had no gap open, so none is learned from it).
    assert_eq!(rhythm, Some((5, vec![400_000, 410_000])));
}

/// Fifty one-turn conversations whose users never came back, counted: the
/// evidence that made `adaptive` refuse to warm an opted-in conversation.
fn harness_with_users_who_left() -> Harness {
    let mut h = Harness::with_config(Config::default());
    for i in 0..50 {
        h.settle(&format!("gone-{i}"), "sys");
    }
    h.advance(300_000);
    h.warmer.handle_timeout(h.now);
    assert_eq!(h.warmer.prior().turns[0], 50);
    h
}

#[test]
fn a_conversation_a_person_enabled_warms_every_interval_until_the_idle_cap() {
    let mut h = harness_with_users_who_left();
    h.enable("c");
    h.settle("c", "sys");
    assert_eq!(h.state("c").policy, warming_core::Policy::Fixed);
    let settled_at = h.now;
    // 4-minute interval, 1-hour cap: warms at 4, 8, ... 56 minutes.
    let mut sent = 0;
    loop {
        let effects = h.run_to_deadline();
        let Some(warm) = warms(&effects).first().map(|w| w.token) else {
            break;
        };
        sent += 1;
        h.warmer
            .warm_completed(h.now, &id("c"), warm, Usage::anthropic(3, 5_000, 0));
        let s = h.state("c");
        assert!(s.next_warm_at.unwrap() > h.now, "{s:?}");
    }
    assert_eq!(sent, 14);
    assert_eq!(h.now.millis_since(settled_at), 3_600_000);
    let s = h.state("c");
    assert_eq!(s.next_warm_at, None);
    assert_eq!(
        s.stopped,
        Some(warming_core::StopReason::IdleCap {
            max_idle_ms: 3_600_000
        })
    );
    let reason = s.stopped_reason.unwrap();
    assert!(reason.contains("idle for 1h"), "{reason}");
    assert!(reason.contains("--max-idle"), "{reason}");
    assert!(
        reason.contains("next turn, a manual warm or re-enabling"),
        "{reason}"
    );

    // A manual warm starts warming again, with the idle count reset.
    let token = h.warmer.warm_now(h.now, &id("c")).unwrap();
    h.warmer
        .warm_completed(h.now, &id("c"), token, Usage::anthropic(3, 5_000, 0));
    h.drain();
    assert_eq!(h.state("c").stopped_reason, None);
    let effects = h.run_to_deadline();
    assert_eq!(warms(&effects).len(), 1);
}

#[test]
fn the_idle_cap_can_be_turned_off_and_stops_retries_too() {
    let mut h = Harness::with_config(Config {
        max_idle_ms: 0,
        ..Config::default()
    });
    h.enable("c");
    h.settle("c", "sys");
    for _ in 0..20 {
        let effects = h.run_to_deadline();
        let token = warms(&effects)[0].token;
        h.warmer
            .warm_completed(h.now, &id("c"), token, Usage::anthropic(3, 5_000, 0));
    }
    assert!(h.state("c").next_warm_at.is_some());

    // Failing warms retry, but not past the cap.
    let mut h = Harness::with_config(Config {
        max_idle_ms: 60_000,
        ..Config::default()
    });
    h.set(
        "c",
        SettingsChange {
            enabled: Some(true),
            interval_ms: Some(50_000.0),
            ..Default::default()
        },
    );
    h.settle("c", "sys");
    let effects = h.run_to_deadline();
    let token = warms(&effects)[0].token;
    let failure = WarmFailure {
        message: "upstream 500".into(),
        retry_after_ms: None,
        refused: false,
    };
    h.warmer.warm_failed(h.now, &id("c"), token, failure);
    let retry = h.run_to_deadline();
    assert_eq!(warms(&retry).len(), 1, "a retry inside the cap is sent");
    let token = warms(&retry)[0].token;
    let failure = WarmFailure {
        message: "upstream 500".into(),
        retry_after_ms: Some(40_000),
        refused: false,
    };
    h.warmer.warm_failed(h.now, &id("c"), token, failure);
    let late = h.run_to_deadline();
    assert!(warms(&late).is_empty());
    assert!(h.state("c").stopped_reason.unwrap().contains("idle for 1m"));
}

#[test]
fn re_enabling_restarts_warming_after_the_idle_cap() {
    let mut h = Harness::with_config(Config {
        max_idle_ms: 600_000,
        ..Config::default()
    });
    h.enable("c");
    h.settle("c", "sys");
    while h.state("c").stopped_reason.is_none() {
        let effects = h.run_to_deadline();
        if let Some(warm) = warms(&effects).first() {
            let token = warm.token;
            h.warmer
                .warm_completed(h.now, &id("c"), token, Usage::anthropic(3, 5_000, 0));
        }
    }
    h.set(
        "c",
        SettingsChange {
            enabled: Some(false),
            ..Default::default()
        },
    );
    h.enable("c");
    let s = h.state("c");
    assert_eq!(s.stopped_reason, None);
    // Its last warm was an interval ago: re-enabled, it warms at once.
    let effects = h.drain();
    assert_eq!(warms(&effects).len(), 1);
    let token = warms(&effects)[0].token;
    h.warmer
        .warm_completed(h.now, &id("c"), token, Usage::anthropic(3, 5_000, 0));
    assert!(h.state("c").next_warm_at.unwrap() > h.now);
}

#[test]
fn enrolled_conversations_follow_the_enrolled_policy_and_a_persons_choice_wins() {
    let mut h = harness_with_users_who_left();
    // Nobody decided about "auto": enrolment turns it on, under adaptive.
    let op = h.warmer.enroll(h.now, &id("auto"), None).unwrap();
    assert!(
        !h.state("auto").enabled,
        "applied before the write committed"
    );
    h.warmer.persisted(h.now, op, true);
    let s = h.state("auto");
    assert!(s.enabled);
    assert_eq!(s.policy, warming_core::Policy::Adaptive);
    assert_eq!(h.warmer.enroll(h.now, &id("auto"), None), None);
    h.settle("auto", "sys");
    assert!(warms(&h.run_to_deadline()).is_empty());
    assert!(h.state("auto").stopped_reason.unwrap().contains("adaptive"));

    // A person who turned warming off is not overruled by enrolment.
    h.set(
        "off",
        SettingsChange {
            enabled: Some(false),
            ..Default::default()
        },
    );
    assert_eq!(h.warmer.enroll(h.now, &id("off"), None), None);
    assert!(!h.state("off").enabled);

    // A person who turns an enrolled conversation on owns it: fixed. The
    // cache may be cold by now: it is warmed at once.
    h.enable("auto");
    assert_eq!(warms(&h.drain()).len(), 1);
    let s = h.state("auto");
    assert_eq!(s.policy, warming_core::Policy::Fixed);
    assert_eq!(s.stopped_reason, None);
    h.settle("auto", "sys");
    assert_eq!(warms(&h.run_to_deadline()).len(), 1);

    // A failed enrolment write leaves the conversation as it was, and a
    // later enrolment may try again.
    let op = h
        .warmer
        .enroll(h.now, &id("flaky"), Some(30_000.0))
        .unwrap();
    h.warmer.persisted(h.now, op, false);
    assert!(!h.state("flaky").enabled);
    let op = h.warmer.enroll(h.now, &id("flaky"), Some(30_000.0));
    assert!(op.is_some(), "a failed enrolment blocks the next one");
}

#[test]
fn a_one_hour_cache_conversation_warms_just_inside_the_hour() {
    let mut h = Harness::new();
    h.enable("long");
    let long = Arc::new(warming_core::Template::new(
        serde_json::json!({"model": "m", "system": [{"type": "text", "text": "s",
            "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}),
        None,
        None,
    ));
    h.warmer
        .turn_settled(h.now, &id("long"), Some(long.clone()), None);
    let s = h.state("long");
    assert_eq!(s.interval_ms, 3_300_000);
    assert_eq!(s.next_warm_at, Some(h.now.plus_millis(3_300_000)));
    // A chosen interval is kept.
    h.set(
        "long",
        SettingsChange {
            interval_ms: Some(600_000.0),
            ..Default::default()
        },
    );
    assert_eq!(h.state("long").interval_ms, 600_000);
}

#[test]
fn an_id_never_seen_reads_as_unknown_and_is_not_created() {
    let mut h = Harness::new();
    let s = h.state("nobody");
    assert!(!s.known);
    assert!(!s.enabled);
    assert_eq!(h.warmer.conversations().count(), 0);
    h.enable("someone");
    assert!(h.state("someone").known);
}

#[test]
fn a_deleted_conversation_is_forgotten_once_the_delete_commits() {
    let mut h = Harness::new();
    h.enable("d");
    h.settle("d", "sys");
    h.drain();
    assert_eq!(h.warmer.delete(h.now, &id("never")), None);

    // A failed delete changes nothing.
    let op = h.warmer.delete(h.now, &id("d")).unwrap();
    assert!(matches!(h.drain()[..], [Effect::PersistDelete { .. }]));
    h.warmer.persisted(h.now, op, false);
    assert!(h.state("d").known);
    assert!(h.state("d").next_warm_at.is_some());

    let op = h.warmer.delete(h.now, &id("d")).unwrap();
    h.drain();
    h.warmer.persisted(h.now, op, true);
    let effects = h.drain();
    // Nothing is written for it after its rows are gone.
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::SaveSchedule { .. })),
        "{effects:?}"
    );
    assert!(effects.contains(&Effect::AbortGeneration {
        conversation: id("d")
    }));
    let pushed = notifications(&effects);
    assert!(!pushed[0].known);
    assert_eq!(pushed[0].next_warm_at, None);
    assert!(!h.state("d").known);
    assert_eq!(h.warmer.conversations().count(), 0);
    assert_eq!(h.warmer.poll_timeout(), None);
    // The id can come back as a new conversation.
    h.settle("d", "sys");
    assert!(h.state("d").known);
    assert!(!h.state("d").enabled);
}

#[test]
fn history_names_the_backend_that_answered_the_warm() {
    let mut h = Harness::new();
    h.enable("b");
    h.settle("b", "sys");
    let effects = h.run_to_deadline();
    let token = warms(&effects)[0].token;
    let record = h
        .warmer
        .warm_answered(
            h.now,
            &id("b"),
            token,
            warming_core::WarmReply {
                usage: Usage::anthropic(3, 5_000, 0),
                backend: Some("replica-7"),
                kind: Some(warming_core::WarmKind::PrefixOnly),
            },
        )
        .unwrap();
    assert_eq!(record.kind, Some(warming_core::WarmKind::PrefixOnly));
    assert_eq!(record.backend.as_deref(), Some("replica-7"));
    let persist = h.drain().into_iter().find_map(|e| match e {
        Effect::PersistBackend { op, backend, .. } => Some((op, backend)),
        _ => None,
    });
    let (op, backend) = persist.expect("the new backend is persisted");
    assert_eq!(&*backend, "replica-7");
    h.warmer.persisted(h.now, op, true);
    assert_eq!(h.state("b").backend.as_deref(), Some("replica-7"));
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
    h.warmer
        .warm_completed(h.now, &id("long"), token, Usage::anthropic(3, 5_000, 0));
    let next = h.state("long").next_warm_at.unwrap();
    assert_eq!(next, h.now.plus_millis(60_000 - 500));
}

#[test]
fn a_refused_warm_stops_warming_instead_of_retrying() {
    let mut h = Harness::new();
    h.enable("r");
    h.settle("r", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    let failure = WarmFailure {
        message: "upstream 400: thinking: max_tokens must exceed budget_tokens".into(),
        retry_after_ms: None,
        refused: true,
    };
    h.warmer.warm_failed(h.now, &id("r"), token, failure);
    let s = h.state("r");
    assert_eq!(s.next_warm_at, None);
    assert!(s.last_error.unwrap().contains("budget_tokens"));
    assert!(s.stopped_reason.unwrap().contains("refused"));
    assert_eq!(h.warmer.poll_timeout(), None);
    // A new turn brings a new template: warming goes on.
    h.warmer.turn_started(h.now, &id("r"));
    h.settle("r", "sys");
    assert!(h.state("r").next_warm_at.is_some());
}

#[test]
fn a_prefix_the_provider_will_not_cache_is_not_warmed() {
    let mut h = Harness::new();
    h.enable("short");
    let short = Arc::new(warming_core::Template::new(
        serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 100,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}]}),
        None,
        None,
    ));
    h.warmer
        .turn_settled(h.now, &id("short"), Some(short), None);
    // Said at once: no countdown that would end in nothing.
    assert_eq!(h.state("short").next_warm_at, None);
    assert!(warms(&h.drain()).is_empty());
    let reason = h.state("short").stopped_reason.unwrap();
    assert!(
        reason.contains("minimum cacheable length (1024)"),
        "{reason}"
    );

    // A warm that read and wrote nothing (the provider cached nothing)
    // stops the next ones too.
    let mut h = Harness::new();
    h.enable("plain");
    h.settle("plain", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    h.warmer
        .warm_completed(h.now, &id("plain"), token, Usage::anthropic(40, 0, 0));
    let s = h.state("plain");
    assert_eq!(s.next_warm_at, None);
    assert!(s.stopped_reason.unwrap().contains("cached nothing"));
}

#[test]
fn a_warm_that_must_think_costs_its_output_for_the_policies() {
    let e = warming_core::Economics::default();
    let prior = warming_core::ReturnPrior::default();
    let view = |warm_output_tokens| warming_core::GapView {
        idle_ms: 240_000,
        warms_in_gap: 2,
        interval_ms: 240_000,
        prefix_tokens: 10_000,
        depth: 3,
        own_gaps: &[],
        warm_output_tokens,
    };
    // Breakeven: three cheap warms fit in one miss; three that each think
    // 1 025 tokens at 5x the input price do not.
    let policy = warming_core::Policy::Breakeven;
    assert!(warming_core::decide(policy, &e, &prior, &view(0)).is_ok());
    assert!(warming_core::decide(policy, &e, &prior, &view(1_025)).is_err());
}

#[test]
fn a_returning_turn_reports_its_gap_warms_and_the_last_hit() {
    let mut h = Harness::new();
    h.enable("g");
    h.settle("g", "sys");
    for _ in 0..2 {
        let token = warms(&h.run_to_deadline())[0].token;
        h.warmer
            .warm_completed(h.now, &id("g"), token, Usage::anthropic(3, 7_000, 0));
    }
    h.drain();
    h.advance(30_000);
    h.warmer.turn_started(h.now, &id("g"));
    let returned = h.drain().into_iter().find_map(|e| match e {
        Effect::TurnReturned {
            idle_ms,
            warms,
            last_hit_read,
            ..
        } => Some((idle_ms, warms, last_hit_read)),
        _ => None,
    });
    assert_eq!(returned, Some((2 * 240_000 + 30_000, 2, Some(7_000))));
    // A gap without a hit reports none.
    h.settle("g", "sys");
    h.advance(1_000);
    h.warmer.turn_started(h.now, &id("g"));
    assert!(h.drain().iter().any(|e| matches!(
        e,
        Effect::TurnReturned {
            last_hit_read: None,
            warms: 0,
            ..
        }
    )));
}

#[test]
fn idle_disabled_conversations_leave_memory_and_come_back_restored() {
    let mut h = Harness::new();
    h.settle("off", "sys");
    h.enable("on");
    h.settle("on", "sys");
    h.drain();
    // Not idle long enough yet.
    assert!(h.warmer.evict_idle(h.now, 600_000).is_empty());
    h.advance(600_000);
    // Warming on: kept. Warming off and idle: evicted.
    let evicted = h.warmer.evict_idle(h.now, 600_000);
    assert_eq!(evicted, [id("off")]);
    assert!(!h.state("off").known);
    assert!(h.state("on").known);
    assert_eq!(h.warmer.conversations().count(), 1);
    // Its slot is reused by the next new conversation...
    h.settle("new", "sys");
    assert_eq!(h.warmer.conversations().count(), 2);
    // ...and it comes back from storage as it was.
    h.warmer.restore(h.now, [restored("off", false, None)]);
    let s = h.state("off");
    assert!(s.known && !s.enabled);
    assert_eq!(s.warm_count, 7);
}

#[test]
fn states_and_records_read_back_from_their_json() {
    let mut h = Harness::new();
    h.enable("j");
    h.settle("j", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    let record = h
        .warmer
        .warm_completed(h.now, &id("j"), token, Usage::anthropic(3, 5_000, 0))
        .unwrap();
    let state = h.state("j");
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(json["policy"], "fixed");
    let back: warming_core::ConversationState = serde_json::from_value(json).unwrap();
    assert_eq!(back, state);
    let back: warming_core::WarmRecord =
        serde_json::from_value(serde_json::to_value(&record).unwrap()).unwrap();
    assert_eq!(back, record);
    let bad = serde_json::json!("no spaces allowed");
    assert!(serde_json::from_value::<ConversationId>(bad).is_err());
}
