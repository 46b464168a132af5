//! The keep-alive plan: no replay where the provider keeps the prefix
//! itself, and the longer retention asked for where it costs less.

use serde_json::json;
use warming_core::{KeepAlive, ModelPrices, Template};

use super::prelude::*;

/// An engine that knows a Claude model (1-hour cache, 2x writes) and a GPT
/// one with OpenAI's 24-hour retention, as the service's price table does.
fn priced(upgrade: bool) -> Harness {
    Harness::with_config(
        Config::builder()
            .policy(warming_core::Policy::Fixed)
            .list_prices(vec![
                ("claude-sonnet-4".into(), ModelPrices::anthropic(3.0, 15.0)),
                (
                    "gpt-5".into(),
                    ModelPrices::openai(1.25, 0.125, 10.0).with_long_ttl_secs(86_400),
                ),
            ])
            .upgrade_cache(upgrade)
            .build()
            .unwrap(),
    )
}

fn openai(retention: Option<&str>) -> Arc<Template> {
    let mut body = json!({"model": "gpt-5.1",
        "messages": [{"role": "system", "content": "s ".repeat(3_000)}, {"role": "user", "content": "hi"}]});
    if let Some(r) = retention {
        body["prompt_cache_retention"] = json!(r);
    }
    Arc::new(Template::new(body, None, None))
}

fn claude(ttl: Option<&str>) -> Arc<Template> {
    let mut control = json!({"type": "ephemeral"});
    if let Some(ttl) = ttl {
        control["ttl"] = json!(ttl);
    }
    Arc::new(Template::new(
        json!({"model": "claude-sonnet-4-5", "system": [{"type": "text",
            "text": "s ".repeat(3_000), "cache_control": control}],
            "messages": [{"role": "user", "content": "hi"}]}),
        None,
        None,
    ))
}

#[test]
fn a_conversation_asking_for_24_hour_retention_is_never_replayed_and_says_why() {
    let mut h = priced(false);
    h.enable("o");
    h.warmer
        .turn_settled(h.now, &id("o"), Some(openai(Some("24h"))), Some(h.now));
    let s = h.state("o");
    assert_eq!(s.plan.keep_alive, KeepAlive::None, "{}", s.plan.why);
    assert!(s.plan.why.to_string().contains("24 h"), "{}", s.plan.why);
    assert_eq!(s.next_warm_at, None, "no replay is scheduled");
    assert_eq!(h.warmer.poll_timeout(), None);
    // Back after 20 minutes: the replays it did not need are counted.
    h.advance(1_200_000);
    h.warmer.turn_started(h.now, &id("o"));
    assert_eq!(h.state("o").ledger.replays_avoided, 5);
    // The same conversation without it is replayed, and the plan says the
    // retention would be cheaper if the operator allowed asking for it.
    let mut h = priced(false);
    h.enable("p");
    h.warmer
        .turn_settled(h.now, &id("p"), Some(openai(None)), Some(h.now));
    let s = h.state("p");
    assert_eq!(s.plan.keep_alive, KeepAlive::Replay);
    assert!(s.plan.why.to_string().contains("--upgrade-cache auto"));
    assert!(s.next_warm_at.is_some());
}

#[test]
fn long_gaps_move_a_claude_conversation_to_the_one_hour_cache_and_replays_stop() {
    let mut h = priced(true);
    h.enable("c");
    let mut upgraded_at = None;
    // Turns 40 minutes apart: each gap costs 10 replays of the prefix.
    for turn in 0..6 {
        if turn > 0 {
            h.advance(2_400_000);
            h.warmer.turn_started(h.now, &id("c"));
        }
        let plan = h.state("c").plan;
        let ttl = if plan.keep_alive == KeepAlive::Upgrade {
            // As the proxy does: the request asks for the 1-hour cache.
            assert!(h.warmer.request_upgraded(h.now, &id("c")));
            upgraded_at.get_or_insert(turn);
            Some("1h")
        } else if upgraded_at.is_some() {
            Some("1h")
        } else {
            None
        };
        h.warmer
            .turn_settled(h.now, &id("c"), Some(claude(ttl)), Some(h.now));
        h.record_turn(h.now, &id("c"), h.now, Usage::anthropic(3, 5_000, 400));
        let _ = h.drain();
    }
    let moved = upgraded_at.expect("the conversation moved to the 1-hour cache");
    assert!(
        moved >= 2,
        "judged on two gaps at least, moved at turn {moved}"
    );
    let s = h.state("c");
    assert_eq!(s.plan.keep_alive, KeepAlive::None, "{}", s.plan.why);
    assert_eq!(s.next_warm_at, None, "no replays on the 1-hour cache");
    assert!(s.upgraded_at.is_some());
    // Its turns' writes paid the 1-hour premium (0.75x input on 400 tokens
    // each at $3/M), and that is in what warming spent.
    let premium = s.ledger.retention_premium_dollars;
    assert!(premium > 0.0 && premium < 0.01, "{premium}");
    assert!(s.ledger.spent_dollars >= premium);
}

#[test]
fn the_upgrade_is_in_history_with_its_reason() {
    let mut h = priced(true);
    h.enable("u");
    h.warmer
        .turn_settled(h.now, &id("u"), Some(openai(None)), Some(h.now));
    let _ = h.drain();
    assert_eq!(h.state("u").plan.keep_alive, KeepAlive::Upgrade);
    h.advance(1_000);
    h.warmer.turn_started(h.now, &id("u"));
    assert!(h.warmer.request_upgraded(h.now, &id("u")));
    let out = h.drain();
    let upgraded = out.iter().find_map(|o| match o {
        Out::Write(Write::Record { record, .. }) if record.outcome == WarmOutcome::Upgraded => {
            Some(record)
        }
        _ => None,
    });
    let record = upgraded.expect("an `upgraded` record in history");
    assert!(record
        .error
        .as_deref()
        .unwrap()
        .contains("longer retention"));
    // A conversation never seen has nothing to upgrade.
    assert!(!h.warmer.request_upgraded(h.now, &id("nobody")));
}
