//! Property test: random sequences of every input, random clock advances,
//! failed writes and failed warms, with the invariants checked after every
//! step against a small reference model.
//!
//! CI runs 2 000 cases; set `WARMING_PROPTEST_CASES=1000000` to run a million
//! locally. A failure prints the shrunk sequence and proptest records its seed
//! under `proptest-regressions/`.

mod support;

use std::collections::HashMap;

use proptest::prelude::*;
use support::{id, template, Harness, Out};
use warming_core::{
    ConversationId, Event, IntervalLimits, PersistId, RuntimeEvent, RuntimeEventKind, Settings,
    SettingsChange, Usage, WarmAction, WarmFailure, WarmToken, WarmTrigger, Write,
};

const CONVERSATIONS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    TurnStarted(usize),
    TurnSettled(usize, bool),
    Advance(u64),
    RunToDeadline,
    Complete(usize, u8),
    Fail(usize, Option<u64>),
    WarmNow(usize),
    Update(usize, Option<bool>, Option<f64>),
    Persisted(bool),
    Close(usize),
    Backend(usize, u8),
    Event(usize, u8, Option<u8>),
    Delete(usize),
    Enroll(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let conv = 0..CONVERSATIONS.len();
    let interval = prop_oneof![
        Just(f64::NAN),
        Just(-1.0),
        Just(0.0),
        1_000.0..500_000.0f64,
        Just(1e13),
    ];
    prop_oneof![
        1 => conv.clone().prop_map(Op::TurnStarted),
        1 => (conv.clone(), any::<bool>()).prop_map(|(c, t)| Op::TurnSettled(c, t)),
        1 => (0..400_000u64).prop_map(Op::Advance),
        3 => Just(Op::RunToDeadline),
        3 => (0..8usize, 0..3u8).prop_map(|(i, u)| Op::Complete(i, u)),
        1 => (0..8usize, proptest::option::of(0..600_000u64)).prop_map(|(i, r)| Op::Fail(i, r)),
        1 => conv.clone().prop_map(Op::WarmNow),
        1 => (conv.clone(), proptest::option::of(any::<bool>()), proptest::option::of(interval))
            .prop_map(|(c, e, i)| Op::Update(c, e, i)),
        3 => any::<bool>().prop_map(Op::Persisted),
        1 => conv.clone().prop_map(Op::Close),
        1 => (conv.clone(), 0..3u8).prop_map(|(c, b)| Op::Backend(c, b)),
        1 => (conv.clone(), 0..4u8, proptest::option::of(0..3u8)).prop_map(|(c, k, t)| Op::Event(c, k, t)),
        1 => conv.clone().prop_map(Op::Delete),
        1 => conv.prop_map(Op::Enroll),
    ]
}

/// What the spec says memory must hold, kept independently of the engine.
#[derive(Default)]
struct Model {
    /// Writes issued and not yet reported, oldest first (storage is FIFO).
    pending: Vec<(PersistId, ConversationId, Option<Settings>, bool)>,
    /// Settings the engine must show: the last confirmed write, or a close.
    expected: HashMap<ConversationId, (u64, Settings)>,
    /// Conversations closed and not re-enabled since.
    closed: HashMap<ConversationId, bool>,
    /// The warm each conversation is waiting for.
    in_flight: HashMap<ConversationId, WarmToken>,
    /// Every token ever issued, for stale completions.
    tokens: Vec<(ConversationId, WarmToken)>,
    /// Pending writes that are deletes.
    deletes: std::collections::HashSet<PersistId>,
    /// Settings as last committed (storage is FIFO): what a refused close
    /// goes back to.
    stored: HashMap<ConversationId, Settings>,
    /// The newest settings write issued per conversation.
    last_issued: HashMap<ConversationId, PersistId>,
}

fn check_effects(h: &Harness, model: &mut Model, effects: Vec<Out>, close_op: Option<PersistId>) {
    for effect in effects {
        match effect {
            Out::Warm(WarmAction::Send(w)) => {
                let s = h.warmer.state(&w.conversation);
                assert!(!s.active, "warm while active: {w:?}");
                if w.trigger != WarmTrigger::Manual {
                    assert!(s.enabled, "timed warm while disabled: {w:?}");
                    assert!(
                        !model.closed.get(&w.conversation).copied().unwrap_or(false),
                        "timed warm after close: {w:?}"
                    );
                }
                model.in_flight.insert(w.conversation.clone(), w.token);
                model.tokens.push((w.conversation, w.token));
            }
            Out::Warm(WarmAction::Abort {
                conversation,
                token,
            }) if model.in_flight.get(&conversation) == Some(&token) => {
                model.in_flight.remove(&conversation);
            }
            Out::Write(Write::Settings {
                ack: op,
                conversation,
                settings,
            }) => {
                let eager = Some(op) == close_op;
                model.last_issued.insert(conversation.clone(), op);
                if eager {
                    model
                        .expected
                        .insert(conversation.clone(), (op.get(), settings));
                    model.closed.insert(conversation.clone(), true);
                }
                model
                    .pending
                    .push((op, conversation, Some(settings), eager));
            }
            Out::Write(Write::Backend {
                ack: op,
                conversation,
                ..
            }) => {
                model.pending.push((op, conversation, None, false));
            }
            Out::Write(Write::Delete {
                ack: op,
                conversation,
            }) => {
                model.deletes.insert(op);
                model.pending.push((op, conversation, None, false));
            }
            Out::Event(Event::TurnReturned {
                idle_ms,
                warms,
                miss_avoided_tokens: Some(_),
                ..
            }) => {
                // The one source of "misses avoided": only a gap that
                // outlived the TTL and had a warm in it counts.
                let ttl = h.warmer.config().economics().ttl_ms;
                assert!(idle_ms > ttl, "miss avoided after {idle_ms} ms");
                assert!(warms > 0, "miss avoided without a warm");
            }
            Out::Event(Event::Changed(s)) => {
                if let Some(next) = s.next_warm_at {
                    assert!(next > h.now, "stale nextWarmAt {next} at {}", h.now);
                }
            }
            _ => {}
        }
    }
}

fn check_state(h: &Harness, model: &Model) {
    let mut armed = 0;
    for raw in CONVERSATIONS {
        let s = h.state(raw);
        if let Some(next) = s.next_warm_at {
            armed += 1;
            assert!(next > h.now || h.warmer.poll_timeout() <= Some(h.now));
            assert!(
                s.enabled && !s.active,
                "armed while disabled or active: {s:?}"
            );
        }
        let (_, want) = model
            .expected
            .get(&id(raw))
            .copied()
            .unwrap_or((0, Settings::defaults(&IntervalLimits::default())));
        assert_eq!(
            (s.enabled, s.interval_ms),
            (want.enabled, want.interval_ms),
            "{raw}"
        );
    }
    assert_eq!(
        h.warmer.armed_count(),
        armed,
        "one deadline per conversation"
    );
}

fn run(ops: Vec<Op>, adaptive: bool) {
    let mut h = if adaptive {
        Harness::with_config(
            warming_core::Config::builder()
                .policy(warming_core::Policy::Adaptive)
                .build()
                .expect("a valid config"),
        )
    } else {
        Harness::new()
    };
    let mut model = Model::default();
    for op in ops {
        let now = h.now;
        let mut close_op = None;
        match op {
            Op::TurnStarted(c) => h.warmer.turn_started(now, &id(CONVERSATIONS[c])),
            Op::TurnSettled(c, with_template) => {
                let t = with_template.then(|| template(CONVERSATIONS[c]));
                h.warmer.turn_settled(now, &id(CONVERSATIONS[c]), t, None);
            }
            Op::Advance(ms) => {
                h.advance(ms);
                h.warmer.handle_timeout(h.now);
            }
            Op::RunToDeadline => {
                if let Some(due) = h.warmer.poll_timeout() {
                    h.now = h.now.max(due);
                    h.warmer.handle_timeout(h.now);
                }
            }
            Op::Complete(..) | Op::Fail(..) if model.tokens.is_empty() => {}
            Op::Complete(i, kind) => {
                let (conv, token) = model.tokens[i % model.tokens.len()].clone();
                let usage = match kind {
                    0 => Usage::anthropic(3, 4_000, 0),
                    1 => Usage::anthropic(3, 0, 4_000),
                    _ => Usage::openai(4_000, 2_048),
                };
                let current = model.in_flight.get(&conv) == Some(&token);
                let before = h.warmer.state(&conv);
                let record = h.warm_completed(now, &conv, token, usage);
                if current {
                    assert!(record.is_some());
                    model.in_flight.remove(&conv);
                } else {
                    assert!(record.is_none(), "stale completion accepted");
                    assert_eq!(
                        h.warmer.state(&conv),
                        before,
                        "stale completion changed state"
                    );
                    assert!(h.drain().is_empty(), "stale completion had outputs");
                }
            }
            Op::Fail(i, retry_after_ms) => {
                let (conv, token) = model.tokens[i % model.tokens.len()].clone();
                let current = model.in_flight.get(&conv) == Some(&token);
                let before = h.warmer.state(&conv);
                let failure = WarmFailure {
                    message: "upstream 500".into(),
                    retry_after: retry_after_ms.map(std::time::Duration::from_millis),
                    refused: false,
                };
                let record = h.warm_failed(now, &conv, token, failure);
                if current {
                    assert!(record.is_some());
                    model.in_flight.remove(&conv);
                } else {
                    assert!(record.is_none());
                    assert_eq!(h.warmer.state(&conv), before);
                }
            }
            Op::WarmNow(c) => {
                let _ = h.warmer.warm_now(now, &id(CONVERSATIONS[c]));
            }
            Op::Update(c, enabled, interval_ms) => {
                let change = SettingsChange {
                    enabled,
                    interval_ms,
                    ..Default::default()
                };
                let _ = h.warmer.update_settings(now, &id(CONVERSATIONS[c]), change);
            }
            Op::Persisted(_) if model.pending.is_empty() => {}
            Op::Persisted(ok) => {
                let (op, conv, settings, eager) = model.pending.remove(0);
                h.warmer.persisted(now, op, ok);
                if model.deletes.remove(&op) {
                    if ok {
                        // Forgotten: writes for it still queued land on the
                        // deleted record and change nothing.
                        model.expected.remove(&conv);
                        model.closed.remove(&conv);
                        model.stored.remove(&conv);
                        model.last_issued.remove(&conv);
                        model.in_flight.remove(&conv);
                        model.pending.retain(|(_, c, _, _)| *c != conv);
                        assert!(!h.warmer.state(&conv).known);
                    }
                    let effects = h.drain();
                    check_effects(&h, &mut model, effects, close_op);
                    check_state(&h, &model);
                    continue;
                }
                if let (true, Some(settings)) = (ok, settings) {
                    model.stored.insert(conv.clone(), settings);
                }
                if let (false, true) = (ok, eager) {
                    // A refused close: memory shows the stored settings
                    // again, with timed warms stopped until the next turn.
                    if model.last_issued.get(&conv) == Some(&op) {
                        let stored = model
                            .stored
                            .get(&conv)
                            .copied()
                            .unwrap_or_else(|| Settings::defaults(&IntervalLimits::default()));
                        model.expected.insert(conv.clone(), (op.get(), stored));
                        model.closed.insert(conv.clone(), false);
                    }
                }
                if let (true, Some(settings), false) = (ok, settings, eager) {
                    let newer = model
                        .expected
                        .get(&conv)
                        .is_none_or(|(seq, _)| op.get() > *seq);
                    if newer {
                        model.expected.insert(conv.clone(), (op.get(), settings));
                        if settings.enabled {
                            model.closed.insert(conv, false);
                        }
                    }
                }
            }
            Op::Close(c) => close_op = Some(h.warmer.close(now, &id(CONVERSATIONS[c]))),
            Op::Delete(c) => {
                let _ = h.warmer.delete(now, &id(CONVERSATIONS[c]));
            }
            Op::Enroll(c) => {
                let _ = h.warmer.enroll(now, &id(CONVERSATIONS[c]), None);
            }
            Op::Backend(c, b) => {
                let _ = h.warmer.backend_resolved(
                    now,
                    &id(CONVERSATIONS[c]),
                    ["x", "y", "z"][b as usize],
                );
            }
            Op::Event(c, kind, turn) => {
                let kind = match kind {
                    0 => RuntimeEventKind::TurnStarted,
                    1 => RuntimeEventKind::TurnCompleted {
                        template: Some(template("event")),
                        failure: None,
                    },
                    2 => RuntimeEventKind::SessionExited,
                    _ => RuntimeEventKind::Other,
                };
                let event = RuntimeEvent {
                    conversation: id(CONVERSATIONS[c]),
                    kind,
                    turn_id: turn.map(|t| t.to_string()),
                };
                let _ = h.warmer.runtime_event(now, event);
            }
        }
        let effects = h.drain();
        check_effects(&h, &mut model, effects, close_op);
        check_state(&h, &model);
    }
}

fn cases() -> u32 {
    std::env::var("WARMING_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn the_engine_keeps_its_invariants(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, false);
    }

    /// The same with the default `adaptive` policy, which stops warming on
    /// its own: the invariants hold whatever it decides.
    #[test]
    fn the_invariants_hold_under_the_adaptive_policy(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, true);
    }
}
