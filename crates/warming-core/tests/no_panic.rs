//! Property test: no configuration the builder accepts and no sequence of
//! inputs, at any times (far apart, repeated, going backwards, near the
//! ends of time), panics the engine; a configuration it cannot use is
//! refused by the builder, not discovered later.
//!
//! CI runs 500 cases; `WARMING_PROPTEST_CASES=N` for more.

mod support;

use std::sync::Arc;

use proptest::prelude::*;
use support::template;
use warming_core::{
    Config, ConversationId, Economics, IntervalLimits, Policy, PolicyChange, RuntimeEvent,
    RuntimeEventKind, SettingsChange, Timestamp, Usage, WarmAction, WarmFailure, Warmer,
};

/// Any float, the awkward ones often.
fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0),
        Just(0.0),
        Just(f64::MAX),
        -1e6..1e6f64,
        any::<f64>(),
    ]
}

/// Any whole number, the ends often.
fn any_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(u64::MAX),
        0..10_000_000u64,
        any::<u64>()
    ]
}

fn any_policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        Just(Policy::Fixed),
        Just(Policy::Breakeven),
        Just(Policy::Adaptive),
        any::<u32>().prop_map(Policy::Pings),
    ]
}

fn any_config() -> impl Strategy<Value = Result<Config, warming_core::ConfigError>> {
    (
        (any_u64(), any_u64(), any_u64(), any_u64(), any_u64()),
        (any_policy(), any_policy(), any::<bool>(), any::<bool>()),
        (any_f64(), any_f64(), any_f64()),
        (
            any_f64(),
            any_f64(),
            any_f64(),
            any_u64(),
            any_f64(),
            any_f64(),
            any_u64(),
        ),
    )
        .prop_map(
            |(
                (min, max, retry, restore, idle),
                (policy, enrolled, self_hosted, detach),
                (saving, day, conversation_day),
                (price, write, read, ttl, prefill, lambda, prefix),
            )| {
                let economics = Economics {
                    input_price: price,
                    write_multiplier: write,
                    read_multiplier: read,
                    ttl_ms: ttl,
                    prefill_tokens_per_sec: prefill,
                    lambda_per_sec: lambda,
                    default_prefix_tokens: prefix,
                    ..Economics::default()
                };
                Config::builder()
                    .limits(IntervalLimits::new(min, max))
                    .retry_base(std::time::Duration::from_millis(retry))
                    .restore_delay(std::time::Duration::from_millis(restore))
                    .max_idle(Some(std::time::Duration::from_millis(idle)))
                    .policy(policy)
                    .enrolled_policy(enrolled)
                    .self_hosted(self_hosted)
                    .detach_templates(detach)
                    .min_saving(saving)
                    .max_spend_per_day(day)
                    .max_spend_per_conversation_day(conversation_day)
                    .economics(economics)
                    .build()
            },
        )
}

#[derive(Debug, Clone)]
enum Op {
    At(u64),
    Settle(u8),
    Start(u8),
    Update(u8, Option<bool>, Option<f64>, u8),
    Timeout,
    Answer(u8, bool, u64, u64, u64),
    Fail(u8, Option<u64>, bool),
    WarmNow(u8),
    Persisted(u8, bool),
    Close(u8),
    Delete(u8),
    Enroll(u8, Option<f64>),
    Event(u8, u8),
    Release(u8),
    Evict(u64),
}

fn any_op() -> impl Strategy<Value = Op> {
    let c = 0..3u8;
    prop_oneof![
        3 => any_u64().prop_map(Op::At),
        2 => c.clone().prop_map(Op::Settle),
        1 => c.clone().prop_map(Op::Start),
        2 => (c.clone(), proptest::option::of(any::<bool>()), proptest::option::of(any_f64()), 0..4u8)
            .prop_map(|(c, e, i, p)| Op::Update(c, e, i, p)),
        3 => Just(Op::Timeout),
        3 => (0..8u8, any::<bool>(), any_u64(), any_u64(), any_u64())
            .prop_map(|(i, hit, a, b, o)| Op::Answer(i, hit, a, b, o)),
        1 => (0..8u8, proptest::option::of(any_u64()), any::<bool>())
            .prop_map(|(i, r, refused)| Op::Fail(i, r, refused)),
        1 => c.clone().prop_map(Op::WarmNow),
        2 => (0..8u8, any::<bool>()).prop_map(|(i, ok)| Op::Persisted(i, ok)),
        1 => c.clone().prop_map(Op::Close),
        1 => c.clone().prop_map(Op::Delete),
        1 => (c.clone(), proptest::option::of(any_f64())).prop_map(|(c, i)| Op::Enroll(c, i)),
        1 => (c.clone(), 0..4u8).prop_map(|(c, k)| Op::Event(c, k)),
        1 => c.clone().prop_map(Op::Release),
        1 => any_u64().prop_map(Op::Evict),
    ]
}

fn conversation(c: u8) -> ConversationId {
    ConversationId::new(&format!("c{c}")).unwrap()
}

fn run(config: Config, ops: Vec<Op>) {
    let mut warmer = Warmer::new(config);
    let mut now = Timestamp::from_millis(1_700_000_000_000);
    let mut warms = Vec::new();
    let mut writes = Vec::new();
    for op in ops {
        match op {
            Op::At(t) => now = Timestamp::from_millis(t),
            Op::Settle(c) => {
                warmer.turn_settled(now, &conversation(c), Some(template("t")), None);
            }
            Op::Start(c) => warmer.turn_started(now, &conversation(c)),
            Op::Update(c, enabled, interval_ms, p) => {
                let policy = match p {
                    0 => PolicyChange::Keep,
                    1 => PolicyChange::ServerDefault,
                    2 => PolicyChange::Set(Policy::Pings(0)),
                    _ => PolicyChange::Set(Policy::Adaptive),
                };
                let change = SettingsChange {
                    enabled,
                    interval_ms,
                    policy,
                };
                writes.push(warmer.update_settings(now, &conversation(c), change));
            }
            Op::Timeout => warmer.handle_timeout(now),
            Op::Answer(i, hit, a, b, o) => {
                if let Some((id, token)) = warms.get(usize::from(i)).cloned() {
                    let usage = Usage {
                        input_tokens: a,
                        cache_read_tokens: if hit { b } else { 0 },
                        cache_write_tokens: if hit { 0 } else { b },
                        output_tokens: o,
                    };
                    let _ = warmer.warm_completed(now, &id, token, usage);
                }
            }
            Op::Fail(i, retry_after_ms, refused) => {
                if let Some((id, token)) = warms.get(usize::from(i)).cloned() {
                    let failure = WarmFailure {
                        message: "no".into(),
                        retry_after: retry_after_ms.map(std::time::Duration::from_millis),
                        refused,
                    };
                    let _ = warmer.warm_failed(now, &id, token, failure);
                }
            }
            Op::WarmNow(c) => {
                let _ = warmer.warm_now(now, &conversation(c));
            }
            Op::Persisted(i, ok) => {
                if let Some(op) = writes.get(usize::from(i)).copied() {
                    warmer.persisted(now, op, ok);
                }
            }
            Op::Close(c) => writes.push(warmer.close(now, &conversation(c))),
            Op::Delete(c) => writes.extend(warmer.delete(now, &conversation(c))),
            Op::Enroll(c, interval) => {
                writes.extend(warmer.enroll(now, &conversation(c), interval))
            }
            Op::Event(c, k) => {
                let kind = match k {
                    0 => RuntimeEventKind::TurnStarted,
                    1 => RuntimeEventKind::TurnCompleted {
                        template: Some(Arc::new(warming_core::Template::new(
                            serde_json::json!({"model": "claude-x", "system": "s"}),
                            None,
                            None,
                        ))),
                        failure: None,
                    },
                    2 => RuntimeEventKind::SessionExited,
                    _ => RuntimeEventKind::Other,
                };
                let _ = warmer.runtime_event(
                    now,
                    RuntimeEvent {
                        conversation: conversation(c),
                        kind,
                        turn_id: None,
                    },
                );
            }
            Op::Release(c) => {
                warmer.release(now, &conversation(c));
            }
            Op::Evict(idle) => {
                let _ = warmer.evict_idle(now, std::time::Duration::from_millis(idle));
            }
        }
        while warmer.poll_write().is_some() {}
        while let Some(action) = warmer.poll_warm() {
            if let WarmAction::Send(warm) = action {
                warms.push((warm.conversation, warm.token));
            }
        }
        while warmer.poll_event().is_some() {}
        let _ = warmer.poll_timeout();
        for c in 0..3 {
            let _ = warmer.state(&conversation(c));
        }
        let _ = warmer.money_today();
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("WARMING_PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(500),
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_config_and_no_input_panics_the_engine(
        config in any_config(),
        ops in proptest::collection::vec(any_op(), 0..60),
    ) {
        // A refused configuration is the builder's answer, not a panic.
        if let Ok(config) = config {
            run(config, ops);
        }
    }
}
