//! Policies, the idle cap and the guards that stop warming, with their reasons.

use crate::prelude::*;

#[test]
fn a_ping_limit_stops_warming_with_a_reason_until_the_next_turn() {
    use warming_core::Policy;
    let mut h = Harness::new();
    h.set(
        "c",
        SettingsChange {
            enabled: Some(true),
            interval_ms: None,
            policy: warming_core::PolicyChange::Set(Policy::Pings(2)),
        },
    );
    h.settle("c", "sys");
    for _ in 0..2 {
        let token = warms(&h.run_to_deadline())[0].token;
        h.warm_completed(h.now, &id("c"), token, HIT).unwrap();
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
            Out::Write(Write::Record { record: r, .. }) => Some(r),
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
    let adaptive = Config::builder()
        .policy(warming_core::Policy::Adaptive)
        .build()
        .expect("a valid config");
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
        Out::Write(Write::Rhythm { depth, gaps, .. }) => Some((*depth, gaps.clone())),
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
        h.warm_completed(h.now, &id("c"), warm, Usage::anthropic(3, 5_000, 0));
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
    h.warm_completed(h.now, &id("c"), token, Usage::anthropic(3, 5_000, 0));
    h.drain();
    assert_eq!(h.state("c").stopped_reason, None);
    let effects = h.run_to_deadline();
    assert_eq!(warms(&effects).len(), 1);
}

#[test]
fn the_idle_cap_can_be_turned_off_and_stops_retries_too() {
    let mut h = Harness::with_config(
        Config::builder()
            .max_idle(None)
            .build()
            .expect("a valid config"),
    );
    h.enable("c");
    h.settle("c", "sys");
    for _ in 0..20 {
        let effects = h.run_to_deadline();
        let token = warms(&effects)[0].token;
        h.warm_completed(h.now, &id("c"), token, Usage::anthropic(3, 5_000, 0));
    }
    assert!(h.state("c").next_warm_at.is_some());

    // Failing warms retry, but not past the cap.
    let mut h = Harness::with_config(
        Config::builder()
            .max_idle(Some(std::time::Duration::from_millis(60_000)))
            .build()
            .expect("a valid config"),
    );
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
        retry_after: None,
        refused: false,
    };
    h.warm_failed(h.now, &id("c"), token, failure);
    let retry = h.run_to_deadline();
    assert_eq!(warms(&retry).len(), 1, "a retry inside the cap is sent");
    let token = warms(&retry)[0].token;
    let failure = WarmFailure {
        message: "upstream 500".into(),
        retry_after: Some(Duration::from_millis(40_000)),
        refused: false,
    };
    h.warm_failed(h.now, &id("c"), token, failure);
    let late = h.run_to_deadline();
    assert!(warms(&late).is_empty());
    assert!(h.state("c").stopped_reason.unwrap().contains("idle for 1m"));
}

#[test]
fn re_enabling_restarts_warming_after_the_idle_cap() {
    let mut h = Harness::with_config(
        Config::builder()
            .max_idle(Some(std::time::Duration::from_millis(600_000)))
            .build()
            .expect("a valid config"),
    );
    h.enable("c");
    h.settle("c", "sys");
    while h.state("c").stopped_reason.is_none() {
        let effects = h.run_to_deadline();
        if let Some(warm) = warms(&effects).first() {
            let token = warm.token;
            h.warm_completed(h.now, &id("c"), token, Usage::anthropic(3, 5_000, 0));
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
    h.warm_completed(h.now, &id("c"), token, Usage::anthropic(3, 5_000, 0));
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
fn a_refused_warm_stops_warming_instead_of_retrying() {
    let mut h = Harness::new();
    h.enable("r");
    h.settle("r", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    let failure = WarmFailure {
        message: "upstream 400: thinking: max_tokens must exceed budget_tokens".into(),
        retry_after: None,
        refused: true,
    };
    h.warm_failed(h.now, &id("r"), token, failure);
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
    h.warm_completed(h.now, &id("plain"), token, Usage::anthropic(40, 0, 0));
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
fn a_returning_turn_reports_its_gap_its_warms_and_the_miss_they_avoided() {
    let mut h = Harness::new();
    h.enable("g");
    h.settle("g", "sys");
    for _ in 0..2 {
        let token = warms(&h.run_to_deadline())[0].token;
        h.warm_completed(h.now, &id("g"), token, Usage::anthropic(3, 7_000, 0));
    }
    h.drain();
    h.advance(30_000);
    h.warmer.turn_started(h.now, &id("g"));
    let returned = |effects: Vec<Out>| {
        effects.into_iter().find_map(|e| match e {
            Out::Event(Event::TurnReturned {
                idle_ms,
                warms,
                miss_avoided_tokens,
                ..
            }) => Some((idle_ms, warms, miss_avoided_tokens)),
            _ => None,
        })
    };
    // 510 s away, past the 5-minute TTL, and the last warm read 7k tokens:
    // the turn reads them instead of re-writing them.
    assert_eq!(
        returned(h.drain()),
        Some((2 * 240_000 + 30_000, 2, Some(7_000)))
    );
    // Back within the TTL after one hit warm: the cache would have lived
    // anyway, so warming avoided nothing.
    h.settle("g", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    h.warm_completed(h.now, &id("g"), token, Usage::anthropic(3, 7_000, 0));
    h.advance(1_000);
    h.warmer.turn_started(h.now, &id("g"));
    assert_eq!(returned(h.drain()), Some((241_000, 1, None)));
    // A gap without any warm reports none either.
    h.settle("g", "sys");
    h.advance(1_000);
    h.warmer.turn_started(h.now, &id("g"));
    assert_eq!(returned(h.drain()), Some((1_000, 0, None)));
}

#[test]
fn a_prefix_whose_miss_is_too_cheap_to_insure_is_not_warmed_and_says_why() {
    // A Sonnet prompt of about 6 000 cacheable tokens: a hit saves
    // ($3.75 - $0.30) per million, about $0.02.
    let template = |model: &str| {
        Arc::new(warming_core::Template::new(
            serde_json::json!({"model": model, "max_tokens": 100,
                "system": [{"type": "text", "text": "Answer with care. ".repeat(1_400),
                            "cache_control": {"type": "ephemeral"}}],
                "messages": [{"role": "user", "content": "hi"}]}),
            None,
            None,
        ))
    };
    // The providers' published prices, as the service hands them over.
    let list = vec![
        (
            "claude-sonnet-4-5".to_owned(),
            warming_core::ModelPrices::anthropic(3.0, 15.0),
        ),
        (
            "claude-opus-4-1".to_owned(),
            warming_core::ModelPrices::anthropic(15.0, 75.0),
        ),
    ];
    let config = |min_saving| {
        Config::builder()
            .policy(warming_core::Policy::Fixed)
            .min_saving(min_saving)
            .list_prices(list.clone())
            .build()
            .expect("a valid config")
    };
    // At $0.05 a hit it is not worth it: said at once, with the figures.
    let mut h = Harness::with_config(config(0.05));
    h.enable("cheap");
    h.warmer.turn_settled(
        h.now,
        &id("cheap"),
        Some(template("claude-sonnet-4-5")),
        None,
    );
    assert_eq!(h.state("cheap").next_warm_at, None);
    assert!(warms(&h.drain()).is_empty());
    let s = h.state("cheap");
    assert!(
        matches!(s.stopped, Some(warming_core::StopReason::SmallSaving { saving, min_saving })
            if saving > 0.01 && saving < 0.03 && min_saving == 0.05),
        "{s:?}"
    );
    assert!(s.stopped_reason.unwrap().contains("--min-saving"));
    // The same prompt on Opus 4.1 ($18.75 - $1.50 per million) is worth it.
    h.enable("dear");
    h.warmer
        .turn_settled(h.now, &id("dear"), Some(template("claude-opus-4-1")), None);
    assert!(h.state("dear").next_warm_at.is_some());
    // Without a minimum (the default) any prefix is warmed.
    let mut h = Harness::with_config(config(0.0));
    h.enable("cheap");
    h.warmer.turn_settled(
        h.now,
        &id("cheap"),
        Some(template("claude-sonnet-4-5")),
        None,
    );
    assert!(h.state("cheap").next_warm_at.is_some());
}

/// Runs to the next deadline and answers each warm sent there with a hit
/// that read `read(conversation)` tokens; returns how many were sent.
fn answer_due_warms(h: &mut Harness, read: impl Fn(&str) -> u64) -> usize {
    let effects = h.run_to_deadline();
    let sent = warms(&effects);
    for warm in &sent {
        let usage = Usage::anthropic(0, read(warm.conversation.as_str()), 0);
        h.warm_completed(h.now, &warm.conversation, warm.token, usage);
    }
    sent.len()
}

#[test]
fn the_daily_spend_cap_stops_timed_warms_until_the_day_turns() {
    const DAY_MS: u64 = 86_400_000;
    // Only the cap stops warming here, however long the day.
    let mut h = Harness::with_config(
        Config::builder()
            .policy(warming_core::Policy::Fixed)
            .max_spend_per_day(0.50)
            .max_idle(None)
            .build()
            .expect("a valid config"),
    );
    h.enable("a");
    h.enable("b");
    h.settle("a", "sys");
    h.settle("b", "sys");
    // Two warms that each read 1M tokens at the estimated $3/M input
    // price: $0.30 each, $0.60 in all, over the $0.50 cap.
    let mut sent = 0;
    while sent < 2 {
        sent += answer_due_warms(&mut h, |_| 1_000_000);
    }
    // The next due warms are not sent, and both say why.
    while h.state("a").stopped.is_none() || h.state("b").stopped.is_none() {
        assert!(warms(&h.run_to_deadline()).is_empty());
    }
    for conversation in ["a", "b"] {
        let s = h.state(conversation);
        assert_eq!(s.next_warm_at, None, "{s:?}");
        assert_eq!(
            s.stopped,
            Some(warming_core::StopReason::SpendCap { max_per_day: 0.5 })
        );
        assert!(s.stopped_reason.unwrap().contains("--max-spend-per-day"));
    }
    // A person asking for a warm is told the same, and nothing is sent.
    let refused = h.warmer.warm_now(h.now, &id("a"));
    assert!(
        matches!(
            refused,
            Err(WarmNowError::SpendCap(
                warming_core::StopReason::SpendCap { .. }
            ))
        ),
        "{refused:?}"
    );
    assert!(refused
        .unwrap_err()
        .to_string()
        .contains("resumes at 00:00 UTC"));
    assert!(warms(&h.drain()).is_empty());
    assert!(h.state("a").stopped.is_some());
    // The engine wakes when the day turns (UTC), and warming resumes.
    let tomorrow = (h.now.as_millis() / DAY_MS + 1) * DAY_MS;
    assert_eq!(
        h.warmer.poll_timeout(),
        Some(Timestamp::from_millis(tomorrow))
    );
    h.now = Timestamp::from_millis(tomorrow);
    h.warmer.handle_timeout(h.now);
    for conversation in ["a", "b"] {
        let s = h.state(conversation);
        assert_eq!(s.stopped, None, "{s:?}");
        // Yesterday's spend is not shown as today's.
        assert_eq!(s.ledger.day, tomorrow / DAY_MS);
        assert_eq!(s.ledger.spent_today_dollars, 0.0, "{:?}", s.ledger);
        assert!(s.ledger.spent_dollars > 0.0);
    }
    let effects = h.drain();
    let fired = warms(&effects).len()
        + notifications(&effects)
            .iter()
            .filter(|s| s.next_warm_at.is_some())
            .count();
    assert!(fired >= 2, "{effects:?}");
}

#[test]
fn the_per_conversation_cap_stops_only_the_conversation_that_reached_it() {
    const DAY_MS: u64 = 86_400_000;
    let mut h = Harness::with_config(
        Config::builder()
            .policy(warming_core::Policy::Fixed)
            .max_spend_per_conversation_day(0.50)
            .max_idle(None)
            .build()
            .expect("a valid config"),
    );
    h.enable("big");
    h.enable("small");
    h.settle("big", "sys");
    h.settle("small", "sys");
    // "big" reads 1M tokens a warm ($0.30 at the estimated price),
    // "small" 1k: "big"'s second warm would take it past its $0.50, so it
    // is not sent; "small" goes on.
    let mut rounds = 0;
    while h.state("big").stopped.is_none() {
        answer_due_warms(&mut h, |conversation| {
            if conversation == "big" {
                1_000_000
            } else {
                1_000
            }
        });
        rounds += 1;
        assert!(rounds < 20, "the cap never stopped big");
    }
    assert_eq!(
        h.state("big").stopped,
        Some(warming_core::StopReason::ConversationSpendCap { max_per_day: 0.5 })
    );
    let big = h.state("big");
    assert!(big.warm_count == 1, "{big:?}");
    assert!(big.ledger.spent_today_dollars <= 0.5, "{big:?}");
    assert_eq!(h.state("small").stopped, None);
    assert!(h.state("small").next_warm_at.is_some());
    // The day turns: "big" is warmed again.
    let tomorrow = (h.now.as_millis() / DAY_MS + 1) * DAY_MS;
    h.now = Timestamp::from_millis(tomorrow);
    h.warmer.handle_timeout(h.now);
    assert_eq!(h.state("big").stopped, None);
}

#[test]
fn the_ledger_counts_what_warms_spent_and_what_returning_turns_saved() {
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    let mut h = Harness::new();
    h.enable("l");
    h.settle("l", "sys");
    for _ in 0..2 {
        let token = warms(&h.run_to_deadline())[0].token;
        h.advance(400);
        h.warm_completed(h.now, &id("l"), token, Usage::anthropic(3, 7_000, 0));
    }
    // An unknown model is priced at the default $3/M input: each warm read
    // 7 000 tokens at 0.1x and sent 3 uncached, $0.002109.
    let ledger = h.state("l").ledger;
    assert!(close(ledger.spent_dollars, 2.0 * 0.002_109), "{ledger:?}");
    assert!(close(ledger.warm_seconds, 0.8), "{ledger:?}");
    assert_eq!((ledger.misses_avoided, ledger.saved_dollars), (0, 0.0));
    // Back after the TTL on a warm hit: 7 000 tokens read at 0.1x instead
    // of re-written at 1.25x, and 1.4 s of prefill at 5 000 tokens/s.
    h.drain();
    h.advance(30_000);
    h.warmer.turn_started(h.now, &id("l"));
    let s = h.state("l");
    assert_eq!(s.ledger.misses_avoided, 1);
    assert!(close(s.ledger.saved_dollars, 0.024_15), "{:?}", s.ledger);
    assert!(close(s.ledger.saved_prefill_seconds, 1.4), "{:?}", s.ledger);
    assert!(close(s.net_dollars, 0.024_15 - 2.0 * 0.002_109), "{s:?}");
    // The same, as today's figures of the conversation and of the server.
    assert!(close(s.ledger.spent_today_dollars, 2.0 * 0.002_109));
    assert!(close(s.ledger.saved_today_dollars, 0.024_15));
    let today = h.warmer.money_today();
    assert!(close(today.spent_dollars, 2.0 * 0.002_109) && close(today.saved_dollars, 0.024_15));
    assert!(close(today.net_dollars(), 0.024_15 - 2.0 * 0.002_109));
    // Back within the TTL: the cache would have lived anyway, so the warm
    // is spent and nothing more is saved.
    h.settle("l", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    h.warm_completed(h.now, &id("l"), token, Usage::anthropic(3, 7_000, 0));
    h.advance(1_000);
    h.warmer.turn_started(h.now, &id("l"));
    let s = h.state("l");
    assert_eq!(s.ledger.misses_avoided, 1);
    assert!(
        close(s.ledger.spent_dollars, 3.0 * 0.002_109),
        "{:?}",
        s.ledger
    );
    // A failed warm costs nothing.
    h.settle("l", "sys");
    let token = warms(&h.run_to_deadline())[0].token;
    let failure = WarmFailure {
        message: "upstream 529: overloaded".into(),
        retry_after: None,
        refused: false,
    };
    h.warm_failed(h.now, &id("l"), token, failure);
    assert!(close(h.state("l").ledger.spent_dollars, 3.0 * 0.002_109));
}

#[test]
fn a_restart_keeps_what_was_spent_today_so_the_caps_still_hold() {
    let config = || {
        Config::builder()
            .policy(warming_core::Policy::Fixed)
            .max_spend_per_day(0.25)
            .max_idle(None)
            .build()
            .expect("a valid config")
    };
    let mut before = Harness::with_config(config());
    before.enable("a");
    before.settle("a", "sys");
    // A warm of 1M tokens at the estimated $3/M: $0.30 (its size was not
    // known before it answered), over the cap: no other is sent.
    let mut sent = 0;
    while sent < 1 {
        sent += answer_due_warms(&mut before, |_| 1_000_000);
    }
    let stored = before.state("a").ledger;
    assert!(
        (stored.spent_today_dollars - 0.30).abs() < 1e-9,
        "{stored:?}"
    );

    // The same day, a new engine restores the conversation as stored.
    let mut after = Harness::with_config(config());
    after.now = before.now;
    let restored = Restored {
        conversation: id("a"),
        settings: Some(Settings {
            enabled: true,
            interval_ms: 240_000,
            interval_chosen: true,
            ..Settings::defaults(&IntervalLimits::default())
        }),
        template: Some((*template("sys")).clone()),
        stats: WarmStats {
            ledger: stored,
            ..WarmStats::default()
        },
        ..Restored::new(id("a"))
    };
    after.warmer.restore(after.now, [restored]);
    // Its next timed warm is not sent: today's spend is over the cap.
    assert!(warms(&after.run_to_deadline()).is_empty());
    let s = after.state("a");
    assert_eq!(
        s.stopped,
        Some(warming_core::StopReason::SpendCap { max_per_day: 0.25 }),
        "{s:?}"
    );
}

#[test]
fn a_warm_that_would_cross_a_cap_is_not_sent() {
    let mut h = Harness::with_config(
        Config::builder()
            .policy(warming_core::Policy::Fixed)
            .max_spend_per_conversation_day(0.001)
            .max_idle(None)
            .build()
            .expect("a valid config"),
    );
    h.enable("c");
    h.settle("c", "sys");
    // Warms of 100 tokens read at the estimated $0.30/M: $0.00003 each;
    // the cap stops them before the one that would cross $0.001.
    let mut rounds = 0;
    while h.state("c").stopped.is_none() {
        answer_due_warms(&mut h, |_| 100);
        rounds += 1;
        assert!(rounds < 100, "the cap never stopped it");
    }
    let s = h.state("c");
    assert!(s.ledger.spent_today_dollars <= 0.001, "{s:?}");
    assert!(s.ledger.spent_today_dollars > 0.001 - 0.000_031, "{s:?}");
    let reason = s.stopped_reason.unwrap();
    assert!(reason.contains("resumes at 00:00 UTC"), "{reason}");
    assert!(!reason.contains("re-enabling"), "{reason}");
}

#[test]
fn a_self_hosted_engines_money_is_its_time_and_a_listed_models_its_list_price() {
    let mut engine = Harness::with_config(
        Config::builder()
            .self_hosted(true)
            .build()
            .expect("a valid config"),
    );
    engine.settle("e", "sys");
    assert_eq!(engine.state("e").priced, warming_core::PriceSource::Engine);
    let mut paid = Harness::with_config(
        Config::builder()
            .policy(warming_core::Policy::Fixed)
            .list_prices(vec![(
                "claude-sonnet-4-5".to_owned(),
                warming_core::ModelPrices::anthropic(3.0, 15.0),
            )])
            .build()
            .expect("a valid config"),
    );
    paid.settle("unknown", "sys");
    assert_eq!(
        paid.state("unknown").priced,
        warming_core::PriceSource::Estimate
    );
    let sonnet = Arc::new(warming_core::Template::new(
        serde_json::json!({"model": "claude-sonnet-4-5", "messages": []}),
        None,
        None,
    ));
    paid.warmer
        .turn_settled(paid.now, &id("sonnet"), Some(sonnet), None);
    assert_eq!(paid.state("sonnet").priced, warming_core::PriceSource::List);
}
