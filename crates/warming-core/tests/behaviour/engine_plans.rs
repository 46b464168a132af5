//! The deployment's own engine keeping a prefix without a replay: a check
//! that finds it resident sends nothing, a save ends the gap's warms, and
//! the next turn counts what was not replayed.

use warming_core::{EngineSupport, KeepAlive, StopReason, WarmKind, WarmReply};

use super::prelude::*;

fn with_engine(support: EngineSupport) -> Harness {
    Harness::with_config(
        Config::builder()
            .policy(warming_core::Policy::Fixed)
            .self_hosted(true)
            .engine_support(support)
            .build()
            .unwrap(),
    )
}

/// What the engine answers for a prefix of 5 000 tokens it kept.
fn kept(kind: WarmKind) -> WarmReply<'static> {
    WarmReply {
        usage: Usage {
            cache_read_tokens: 5_000,
            ..Usage::default()
        },
        backend: None,
        kind: Some(kind),
    }
}

#[test]
fn a_resident_prefix_is_checked_not_replayed_and_the_next_warm_is_an_interval_on() {
    let mut h = with_engine(EngineSupport::Residency);
    h.enable("c");
    h.settle("c", "t");
    let plan = h.state("c").plan;
    assert_eq!(plan.keep_alive, KeepAlive::Resident, "{}", plan.why);
    assert!(plan.why.to_string().contains("resident"), "{}", plan.why);
    // A replay of the resident prefix first, to learn what one takes.
    let out = h.run_to_deadline();
    let warm = warms(&out)[0].clone();
    let replay_at = h.now;
    h.advance(400);
    let replay = h.warm_completed(h.now, &id("c"), warm.token, HIT).unwrap();
    assert_eq!(replay.outcome, WarmOutcome::Hit);
    let spent = h.state("c").ledger.warm_seconds;
    let out = h.run_to_deadline();
    assert_eq!(h.now, replay_at.plus_millis(h.state("c").interval_ms));
    let warm = warms(&out)[0].clone();
    h.advance(5);
    let checked = h
        .warm_answered(h.now, &id("c"), warm.token, kept(WarmKind::Checked))
        .unwrap();
    assert_eq!(checked.outcome, WarmOutcome::Resident);
    assert_eq!(checked.pct, Some(100.0));
    let s = h.state("c");
    assert_eq!(s.ledger.replays_avoided, 1);
    assert!(
        (s.ledger.engine_seconds_saved - 0.4).abs() < 1e-6,
        "{:?}",
        s.ledger
    );
    // The check's own few milliseconds are all it spent.
    assert!(s.ledger.warm_seconds - spent < 0.01, "{:?}", s.ledger);
    // Still warming: the next check is an interval after this one.
    assert_eq!(s.stopped, None);
    assert!(s.next_warm_at.is_some_and(|at| at > h.now), "{s:?}");
}

#[test]
fn a_saved_prefix_ends_the_gaps_warms_until_the_next_turn_which_counts_them() {
    let mut h = with_engine(EngineSupport::SaveRestore);
    h.enable("c");
    h.settle("c", "t");
    assert_eq!(h.state("c").plan.keep_alive, KeepAlive::Saved);
    let out = h.run_to_deadline();
    let warm = warms(&out)[0].clone();
    let saved = h
        .warm_answered(h.now, &id("c"), warm.token, kept(WarmKind::Saved))
        .unwrap();
    assert_eq!(saved.outcome, WarmOutcome::Saved);
    assert_eq!(saved.kind, Some(WarmKind::Saved));
    let s = h.state("c");
    assert_eq!(s.stopped, Some(StopReason::SavedOnEngine));
    assert!(s.stopped_reason.unwrap().contains("restores"));
    assert_eq!(
        s.next_warm_at, None,
        "nothing is sent while the user is away"
    );
    assert_eq!(h.warmer.poll_timeout(), None);
    // Back ten intervals later: the replays not sent are counted, and the
    // next gap is warmed (and saved) again.
    let interval = s.interval_ms;
    h.advance(10 * interval);
    h.warmer.turn_started(h.now, &id("c"));
    assert!(h.state("c").ledger.replays_avoided >= 9);
    h.settle("c", "t2");
    let s = h.state("c");
    assert_eq!(s.stopped, None);
    assert!(s.next_warm_at.is_some());
}
