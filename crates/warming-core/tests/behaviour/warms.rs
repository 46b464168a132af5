//! Warms fire, complete, fail and retry; manual warms; backends (behaviours 4-7, 13, 14).

use crate::prelude::*;

// Behaviour 4
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
    assert_eq!(w1.template.request().unwrap()["system"], "sys");
    assert_eq!(h.now, at(240_000));

    h.warm_completed(h.now, &id("c"), w1.token, HIT);
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

// Behaviour 5
#[test]
fn a_completed_warm_updates_stats_rearms_from_its_start_and_then_notifies() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    let sent = h.now;
    h.advance(1_500);
    let record = h.warm_completed(h.now, &id("c"), token, HIT).unwrap();
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
    // The record comes out once, as a write naming the warm it answers.
    let records: Vec<_> = effects
        .iter()
        .filter(|e| matches!(e, Out::Write(Write::Record { .. })))
        .collect();
    assert_eq!(
        records,
        [&Out::Write(Write::Record {
            record,
            answers: Some(token)
        })]
    );
}

#[test]
fn a_warm_that_wrote_instead_of_read_is_marked_expired() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    // The first write of a conversation lost nothing: `cold`.
    let token = warms(&h.run_to_deadline())[0].token;
    let record = h.warm_completed(h.now, &id("c"), token, MISS).unwrap();
    assert!(!record.expired);
    assert_eq!(record.outcome, WarmOutcome::Cold);
    assert_eq!(h.state("c").last_pct, Some(0.0));
    // A later one that writes again: the cache had expired.
    let token = warms(&h.run_to_deadline())[0].token;
    let record = h.warm_completed(h.now, &id("c"), token, MISS).unwrap();
    assert!(record.expired);
    assert_eq!(record.outcome, WarmOutcome::Expired);
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
    assert_eq!(h.warm_completed(h.now, &id("c"), token, HIT), None);
    assert_eq!(h.state("c"), before);
}

#[test]
fn a_completion_with_an_unknown_token_or_conversation_changes_nothing() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    assert_eq!(h.warm_completed(h.now, &id("other"), token, HIT), None);
    h.warm_completed(h.now, &id("c"), token, HIT).unwrap();
    // Reporting the same token twice counts once.
    assert_eq!(h.warm_completed(h.now, &id("c"), token, HIT), None);
    assert_eq!(h.state("c").warm_count, 1);
}

// Behaviour 6
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
            retry_after: None,
            refused: false,
        };
        h.warm_failed(h.now, &id("c"), token, failure).unwrap();
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
    h.warm_completed(h.now, &id("c"), token, HIT).unwrap();
    let s = h.state("c");
    assert_eq!(s.last_error, None);
    assert_eq!(s.next_warm_at, Some(h.now.plus_millis(30_000)));
}

#[test]
fn retry_after_is_honoured_even_past_the_interval() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    let failure = WarmFailure {
        message: "429".into(),
        retry_after: Some(Duration::from_millis(60_000)),
        refused: false,
    };
    h.warm_failed(h.now, &id("c"), token, failure).unwrap();
    assert_eq!(h.state("c").next_warm_at, Some(h.now.plus_millis(60_000)));
    let token = warms(&h.run_to_deadline())[0].token;
    let failure = WarmFailure {
        message: "429".into(),
        retry_after: Some(Duration::from_millis(3_600_000)),
        refused: false,
    };
    h.warm_failed(h.now, &id("c"), token, failure).unwrap();
    // Sooner would only be refused again.
    assert_eq!(
        h.state("c").next_warm_at,
        Some(h.now.plus_millis(3_600_000))
    );
}

// Behaviour 7
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
    h.warm_completed(h.now, &id("c"), token, HIT).unwrap();
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
    h.warm_completed(h.now, &id("c"), token, HIT).unwrap();
    let s = h.state("c");
    assert_eq!(s.warm_count, 1);
    assert_eq!(s.next_warm_at, None);
    assert_eq!(h.warmer.poll_timeout(), None);
}

// Behaviour 13 (percent figures are unit-tested in usage.rs; here through the engine)
#[test]
fn openai_usage_gives_the_same_figures_through_the_engine() {
    let mut h = Harness::new();
    h.enable("c");
    h.settle("c", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    let record = h
        .warm_completed(h.now, &id("c"), token, Usage::openai(2_048, 1_024))
        .unwrap();
    assert_eq!(record.pct, Some(50.0));
    assert_eq!(h.state("c").last_pct, Some(50.0));
}

// Behaviour 14
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

#[test]
fn history_names_the_backend_that_answered_the_warm() {
    let mut h = Harness::new();
    h.enable("b");
    h.settle("b", "sys");
    let effects = h.run_to_deadline();
    let token = warms(&effects)[0].token;
    let record = h
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
        Out::Write(Write::Backend { ack, backend, .. }) => Some((ack, backend)),
        _ => None,
    });
    let (op, backend) = persist.expect("the new backend is persisted");
    assert_eq!(&*backend, "replica-7");
    h.warmer.persisted(h.now, op, true);
    assert_eq!(h.state("b").backend.as_deref(), Some("replica-7"));
}

#[test]
fn a_warm_answered_an_interval_late_is_followed_an_interval_after_its_answer() {
    let mut h = Harness::new();
    h.set(
        "w",
        SettingsChange {
            enabled: Some(true),
            interval_ms: Some(30_000.0),
            ..Default::default()
        },
    );
    h.settle("w", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    // Held (its sender paused) for longer than an interval, then answered.
    h.advance(45_000);
    h.warm_completed(h.now, &id("w"), token, HIT);
    assert!(warms(&h.drain()).is_empty(), "a second warm at once");
    assert_eq!(h.state("w").next_warm_at, Some(h.now.plus_millis(30_000)));
}

#[test]
fn warms_of_a_gap_no_return_repaid_are_counted_and_those_that_avoided_a_miss_are_not() {
    let mut h = Harness::new();
    h.set(
        "c",
        SettingsChange {
            enabled: Some(true),
            interval_ms: Some(60_000.0),
            ..Default::default()
        },
    );
    h.settle("c", "t");
    // Two warms a minute apart, then back within the TTL of the settle:
    // the cache would have been there anyway, so neither bought anything.
    for _ in 0..2 {
        let out = h.run_to_deadline();
        let warm = warms(&out)[0].clone();
        h.warm_completed(h.now, &id("c"), warm.token, HIT).unwrap();
    }
    h.warmer.turn_started(h.now, &id("c"));
    assert_eq!(h.state("c").ledger.unrepaid_warms, 2);
    assert_eq!(h.state("c").ledger.misses_avoided, 0);
    // A gap past the TTL that ends on a warm hit avoided a miss: repaid.
    h.settle("c", "t2");
    let settled = h.now;
    let ttl = warming_core::Economics::default().ttl_ms;
    while h.now.millis_since(settled) <= ttl {
        let out = h.run_to_deadline();
        let warm = warms(&out)[0].clone();
        h.warm_completed(h.now, &id("c"), warm.token, HIT).unwrap();
    }
    h.advance(1_000);
    h.warmer.turn_started(h.now, &id("c"));
    let ledger = h.state("c").ledger;
    assert_eq!(ledger.misses_avoided, 1, "{ledger:?}");
    assert_eq!(ledger.unrepaid_warms, 2, "{ledger:?}");
}
