//! A deterministic simulation of the driver and the core together: random
//! sequences of calls, store failures, provider failures and hangs, and
//! jumps of tokio's paused clock, with the invariants checked after every
//! step. CI runs 200 sequences; `WARMING_DRIVER_CASES=100000` (with
//! `--release`) runs more.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use warming_core::{
    Config, ConversationId, IntervalLimits, SettingsChange, Template, Timestamp, Usage,
    WarmFailure, Warmer,
};
use warming_service::generations::Generations;
use warming_service::metrics::Metrics;
use warming_service::{DriverOptions, TokioClock, Write};
use warming_testkit::{MemoryStore, Scripted, ScriptedProvider};

const IDS: [&str; 2] = ["a", "b"];

#[derive(Debug, Clone)]
enum Op {
    Started(usize),
    Settled(usize),
    Enable(usize, bool, u64),
    Close(usize),
    WarmNow(usize),
    FailStore(usize),
    Script(u8),
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..IDS.len();
    prop_oneof![
        1 => c.clone().prop_map(Op::Started),
        2 => c.clone().prop_map(Op::Settled),
        2 => (c.clone(), any::<bool>(), 10_000..200_000u64).prop_map(|(c, e, i)| Op::Enable(c, e, i)),
        1 => c.clone().prop_map(Op::Close),
        1 => c.clone().prop_map(Op::WarmNow),
        1 => (0..2usize).prop_map(Op::FailStore),
        1 => (0..4u8).prop_map(Op::Script),
        3 => (0..400_000u64).prop_map(Op::Wait),
    ]
}

fn id(i: usize) -> ConversationId {
    ConversationId::new(IDS[i]).unwrap()
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (store, provider, stop) = (
            MemoryStore::new(),
            ScriptedProvider::hits(4_000),
            CancellationToken::new(),
        );
        let options = DriverOptions {
            warm_concurrency: 4,
            evict_after: Duration::from_secs(900),
            limits: IntervalLimits::default(),
            clustered: false,
            release_explicit_caches: false,
            engine: None,
        };
        let (driver, task) = warming_service::spawn(
            Warmer::new(Config::default()),
            Arc::new(store.clone()),
            Arc::new(provider.clone()),
            Arc::new(TokioClock::starting_at(Timestamp::from_millis(
                1_800_000_000_000,
            ))),
            Arc::new(Generations::default()),
            Arc::new(Metrics::new(Default::default(), Default::default())),
            options,
            stop.clone(),
        );
        let template = || {
            Some(Arc::new(Template::new(
                json!({"model": "m", "system": "s", "messages": []}),
                None,
                None,
            )))
        };
        // Acknowledged settings, per conversation: what the store must hold.
        let mut acked: HashMap<usize, (bool, u64)> = HashMap::new();
        for op in ops {
            let sent_before = provider.sent().len();
            match op {
                Op::Started(c) => drop(driver.turn_started(id(c)).await),
                Op::Settled(c) => drop(driver.turn_settled(id(c), template(), None).await),
                Op::Enable(c, enabled, ms) => {
                    let change = SettingsChange {
                        enabled: Some(enabled),
                        interval_ms: Some(ms as f64),
                        ..SettingsChange::default()
                    };
                    if driver.update(id(c), change).await.is_ok() {
                        acked.insert(c, (enabled, ms));
                    }
                }
                Op::Close(c) => {
                    if driver.close(id(c)).await.is_ok() {
                        acked.entry(c).and_modify(|a| a.0 = false);
                        // No timed warm for it until it is enabled again.
                        tokio::time::sleep(Duration::from_secs(400)).await;
                        let after: Vec<_> = provider.sent()[sent_before..]
                            .iter()
                            .filter(|w| w.conversation == id(c))
                            .map(|w| w.trigger)
                            .collect();
                        prop_assert!(
                            after
                                .iter()
                                .all(|t| *t == warming_core::WarmTrigger::Manual),
                            "warmed after close: {after:?}"
                        );
                    }
                }
                // A hanging provider never answers: the caller gives up (the
                // real client's warm timeout), the driver carries on.
                Op::WarmNow(c) => drop(
                    tokio::time::timeout(Duration::from_secs(30), driver.warm_now(id(c))).await,
                ),
                Op::FailStore(n) => store.fail_next(n),
                Op::Script(k) => provider.then([match k {
                    0 => Scripted::Hang,
                    1 => Scripted::Fail(WarmFailure {
                        message: "upstream 500".into(),
                        retry_after: None,
                        refused: false,
                    }),
                    2 => Scripted::Answer(Usage::anthropic(3, 0, 4_000)),
                    _ => Scripted::Answer(Usage::anthropic(3, 4_000, 0)),
                }]),
                Op::Wait(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            }
            let now = driver.now();
            for c in 0..IDS.len() {
                let state = driver.get(id(c)).await.unwrap();
                if let Some(next) = state.next_warm_at {
                    prop_assert!(next > now, "stale nextWarmAt {next} at {now}: {state:?}");
                    prop_assert!(
                        state.enabled && !state.active,
                        "armed while off or active: {state:?}"
                    );
                }
                // No acknowledged write is lost: the last stored settings
                // of the conversation are the last acknowledged ones.
                if let Some(&(enabled, ms)) = acked.get(&c) {
                    let stored = store.writes().into_iter().rev().find_map(|w| match w {
                        Write::Settings {
                            conversation,
                            settings,
                        } if conversation == id(c) => Some(settings),
                        _ => None,
                    });
                    let stored = stored.expect("an acknowledged write is stored");
                    prop_assert_eq!(
                        (stored.enabled, stored.interval_ms),
                        (enabled, ms.clamp(10_000, 3_540_000))
                    );
                }
            }
        }
        stop.cancel();
        task.await.unwrap();
        Ok(())
    })
}

#[test]
fn the_driver_keeps_the_invariants_under_faults() {
    let cases = std::env::var("WARMING_DRIVER_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 1..40), run)
        .unwrap();
}
