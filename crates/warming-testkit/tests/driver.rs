//! The service's driver against the in-memory store and the scripted
//! provider, on tokio's paused clock: no sockets, no files, no sleeps that
//! hope. Time moves only when a test waits on it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use warming_core::{
    Config, ConversationId, IntervalLimits, SettingsChange, Template, Timestamp, WarmFailure,
    Warmer,
};
use warming_service::generations::Generations;
use warming_service::metrics::Metrics;
use warming_service::{DriverHandle, DriverOptions, ServiceError, Store, TokioClock, Write};
use warming_testkit::{MemoryStore, Scripted, ScriptedProvider};

const START: u64 = 1_800_000_000_000;

fn id(raw: &str) -> ConversationId {
    ConversationId::new(raw).unwrap()
}

fn template() -> Option<Arc<Template>> {
    Some(Arc::new(Template::new(
        json!({"model": "claude-test", "system": "s", "messages": [{"role": "user", "content": "hi"}]}),
        None,
        None,
    )))
}

struct Service {
    driver: DriverHandle,
    store: MemoryStore,
    provider: ScriptedProvider,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Service {
    fn start() -> Self {
        Self::start_on(MemoryStore::new(), false, Timestamp::from_millis(START))
    }

    /// A service on `store`, which another may share (instances of a
    /// cluster on one database load what they do not hold in memory).
    fn start_on(store: MemoryStore, clustered: bool, now: Timestamp) -> Self {
        let provider = ScriptedProvider::hits(5_000);
        let stop = CancellationToken::new();
        // As `warming serve` runs it: template bodies live in the store.
        let config = Config::builder()
            .detach_templates(true)
            .build()
            .expect("a valid config");
        let (driver, task) = warming_service::spawn(
            Warmer::new(config),
            Arc::new(store.clone()),
            Arc::new(provider.clone()),
            Arc::new(TokioClock::starting_at(now)),
            Arc::new(Generations::default()),
            Arc::new(Metrics::new(Default::default(), Default::default())),
            DriverOptions {
                warm_concurrency: 8,
                evict_after: Duration::from_secs(600),
                limits: IntervalLimits::default(),
                clustered,
                release_explicit_caches: false,
                engine: None,
            },
            stop.clone(),
        );
        Self {
            driver,
            store,
            provider,
            stop,
            task,
        }
    }

    async fn enable(&self, raw: &str, interval_ms: f64) {
        let change = SettingsChange {
            enabled: Some(true),
            interval_ms: Some(interval_ms),
            ..SettingsChange::default()
        };
        self.driver.update(id(raw), change).await.unwrap();
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn an_enabled_conversation_is_warmed_every_interval_on_the_virtual_clock() {
    let service = Service::start();
    service.enable("c", 60_000.0).await;
    service
        .driver
        .turn_settled(id("c"), template(), None)
        .await
        .unwrap();
    // Ten virtual minutes pass in no real time: ten warms, one a minute.
    tokio::time::sleep(Duration::from_millis(600_500)).await;
    assert_eq!(service.provider.sent().len(), 10);
    let state = service.driver.get(id("c")).await.unwrap();
    assert_eq!(state.warm_count, 10);
    let now = service.driver.now();
    assert!(state.next_warm_at.unwrap() > now);
    let history = service.driver.history(id("c"), 3).await.unwrap();
    assert_eq!(history.len(), 3);
    service.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_write_the_store_refuses_is_an_error_and_changes_nothing() {
    let service = Service::start();
    service.enable("c", 60_000.0).await;
    service.store.fail_next(1);
    let change = SettingsChange {
        interval_ms: Some(30_000.0),
        ..SettingsChange::default()
    };
    let refused = service.driver.update(id("c"), change).await;
    assert!(
        matches!(refused, Err(ServiceError::Storage { .. })),
        "{refused:?}"
    );
    assert_eq!(
        service.driver.get(id("c")).await.unwrap().interval_ms,
        60_000
    );
    // A settle whose writes are refused is not acknowledged either.
    service.store.fail_next(1);
    let settled = service.driver.turn_settled(id("c"), template(), None).await;
    assert!(
        matches!(settled, Err(ServiceError::Storage { .. })),
        "{settled:?}"
    );
    service.stop().await;
}

#[tokio::test(start_paused = true)]
async fn warms_are_built_from_the_stored_body_of_the_last_template_stored() {
    let service = Service::start();
    service.enable("c", 60_000.0).await;
    let request = |text: &str| {
        Some(Arc::new(Template::new(
            json!({"model": "claude-test", "system": "s", "messages": [{"role": "user", "content": text}]}),
            None,
            None,
        )))
    };
    let first = request("first");
    service
        .driver
        .turn_settled(id("c"), first.clone(), None)
        .await
        .unwrap();
    // A next settle whose writes fail (its rhythm and its template): memory
    // goes back to the first, which the store still holds.
    service.store.fail_next(2);
    let refused = service
        .driver
        .turn_settled(id("c"), request("second"), None)
        .await;
    assert!(matches!(refused, Err(ServiceError::Storage { .. })));
    tokio::time::sleep(Duration::from_millis(60_500)).await;
    let sent = service.provider.sent();
    assert_eq!(sent.len(), 1);
    // The warm carries the stored body byte for byte, not a detached stub.
    assert_eq!(
        sent[0].template.request_json(),
        first.as_deref().unwrap().request_json()
    );
    service.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_warm_whose_template_is_not_stored_fails_with_a_reason() {
    let service = Service::start();
    service.enable("c", 60_000.0).await;
    service
        .driver
        .turn_settled(id("c"), template(), None)
        .await
        .unwrap();
    // The stored template is gone (the database was edited by hand).
    service.store.forget_templates();
    tokio::time::sleep(Duration::from_millis(60_500)).await;
    assert!(service.provider.sent().is_empty());
    let state = service.driver.get(id("c")).await.unwrap();
    assert_eq!(
        state.last_error.as_deref(),
        Some("the warm template is not in storage")
    );
    service.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_provider_is_retried_and_a_refusing_one_stops_warming() {
    let service = Service::start();
    let failure = |refused| {
        Scripted::Fail(WarmFailure {
            message: "upstream 529 overloaded".into(),
            retry_after: None,
            refused,
        })
    };
    service.provider.then([failure(false), failure(true)]);
    service.enable("c", 60_000.0).await;
    service
        .driver
        .turn_settled(id("c"), template(), None)
        .await
        .unwrap();
    // The first fails at 60 s and is retried 5 s later; that one is refused.
    tokio::time::sleep(Duration::from_millis(66_000)).await;
    assert_eq!(service.provider.sent().len(), 2);
    let state = service.driver.get(id("c")).await.unwrap();
    assert_eq!(state.next_warm_at, None);
    assert!(state.stopped_reason.unwrap().contains("refused"));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        service.provider.sent().len(),
        2,
        "a refused warm was retried"
    );
    service.stop().await;
}

#[tokio::test(start_paused = true)]
async fn close_aborts_a_hanging_warm_and_stops_warming() {
    let service = Service::start();
    service.provider.then([Scripted::Hang]);
    service.enable("c", 10_000.0).await;
    service
        .driver
        .turn_settled(id("c"), template(), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    assert_eq!(service.provider.sent().len(), 1);
    let closed = service.driver.close(id("c")).await.unwrap();
    assert!(!closed.enabled);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(service.provider.sent().len(), 1);
    assert!(service
        .store
        .writes()
        .iter()
        .any(|w| matches!(w, Write::Settings { settings, .. } if !settings.enabled)));
    service.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_conversation_left_alone_leaves_memory_and_comes_back_on_its_next_call() {
    let service = Service::start();
    service.enable("kept", 60_000.0).await;
    let change = SettingsChange {
        enabled: Some(false),
        interval_ms: Some(90_000.0),
        ..SettingsChange::default()
    };
    service.driver.update(id("idle"), change).await.unwrap();
    service
        .driver
        .turn_settled(id("idle"), template(), None)
        .await
        .unwrap();
    let listed = |service: &Service| {
        let driver = service.driver.clone();
        async move {
            let (page, _) = driver.list(0, 100, Default::default()).await.unwrap();
            page.into_iter()
                .map(|s| s.conversation_id.as_str().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(&service).await, ["kept", "idle"]);
    // Eleven quiet minutes: the one with warming off left memory.
    tokio::time::sleep(Duration::from_secs(660)).await;
    assert_eq!(listed(&service).await, ["kept"]);
    // Its next call brings it back as it was stored.
    let state = service.driver.get(id("idle")).await.unwrap();
    assert!(state.known && !state.enabled);
    assert_eq!(state.interval_ms, 90_000);
    let warmed = service.driver.warm_now(id("idle")).await;
    assert!(warmed.is_ok(), "its template came back too: {warmed:?}");
    service.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_adopted_conversation_keeps_its_stored_schedule_and_is_adopted_once() {
    let store = MemoryStore::new();
    let first = Service::start_on(store.clone(), true, Timestamp::from_millis(START));
    first.enable("c", 60_000.0).await;
    first
        .driver
        .turn_settled(id("c"), template(), None)
        .await
        .unwrap();
    let due = first
        .driver
        .get(id("c"))
        .await
        .unwrap()
        .next_warm_at
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20_000)).await;
    let now = first.driver.now();
    first.stop().await;

    // Its holder is gone: another instance adopts what the store holds.
    let second = Service::start_on(store.clone(), true, now);
    let stored = store.load_all(&IntervalLimits::default()).unwrap();
    assert_eq!(second.driver.adopt(stored.clone()).await.unwrap(), 1);
    assert_eq!(
        second.driver.adopt(stored).await.unwrap(),
        0,
        "already held"
    );
    let state = second.driver.get(id("c")).await.unwrap();
    assert!(state.enabled);
    assert_eq!(
        state.next_warm_at,
        Some(due),
        "the stored schedule, not a fresh one"
    );
    tokio::time::sleep(Duration::from_millis(40_500)).await;
    assert_eq!(second.provider.sent().len(), 1, "warmed when it was due");
    second.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_cluster_member_loads_a_conversation_it_does_not_hold_before_acting_on_it() {
    let store = MemoryStore::new();
    let start = Timestamp::from_millis(START);
    let first = Service::start_on(store.clone(), true, start);
    first.enable("c", 60_000.0).await;
    first.stop().await;
    let second = Service::start_on(store.clone(), true, start);
    // A call reaches the new holder before any adoption round: it acts on
    // the stored conversation, not on a blank one.
    let state = second.driver.turn_started(id("c")).await.unwrap();
    assert!(state.known && state.enabled && state.active, "{state:?}");
    assert_eq!(state.interval_ms, 60_000);
    second.stop().await;
    // Without the option (one instance), memory is the whole truth.
    let alone = Service::start_on(store, false, start);
    assert!(!alone.driver.get(id("c")).await.unwrap().known);
    alone.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_read_stalls_only_its_own_conversation() {
    let store = MemoryStore::new();
    let service = Service::start_on(store.clone(), true, Timestamp::from_millis(START));
    service.enable("fast", 60_000.0).await;
    // The store stops answering reads: a call for a conversation this
    // member has not got in memory waits for its read...
    store.hold_reads();
    let slow = {
        let driver = service.driver.clone();
        tokio::spawn(async move { driver.turn_started(id("slow")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!slow.is_finished(), "the read was not waited for");
    // ...while calls for the conversations in memory are answered.
    for _ in 0..3 {
        let answered = tokio::time::timeout(
            Duration::from_secs(2),
            service.driver.turn_started(id("fast")),
        )
        .await
        .expect("a call for another conversation waited for the stalled read")
        .unwrap();
        assert!(answered.active);
        service
            .driver
            .turn_settled(id("fast"), None, None)
            .await
            .unwrap();
    }
    // The read comes back: the waiting call runs, in order.
    store.release_reads();
    let state = tokio::time::timeout(Duration::from_secs(2), slow)
        .await
        .expect("the waiting call ran once the read came back")
        .unwrap()
        .unwrap();
    assert!(state.known && state.active, "{state:?}");
    service.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_cluster_member_hands_out_what_it_learned_once_and_goes_on_from_the_merged_prior() {
    let service = Service::start_on(MemoryStore::new(), true, Timestamp::from_millis(START));
    let settle = |raw: &'static str| {
        let driver = service.driver.clone();
        async move {
            driver
                .turn_settled(id(raw), template(), None)
                .await
                .unwrap()
        }
    };
    settle("a").await;
    // A settled turn counts once its first TTL is over.
    tokio::time::sleep(Duration::from_secs(400)).await;
    let learned = service.driver.prior_learned().await.unwrap();
    assert_eq!(learned.turns.iter().sum::<u64>(), 1);
    // Learned while the merge runs: not in the total, so kept for the next.
    settle("b").await;
    let mut total = learned.clone();
    total.turns[0] += 10;
    tokio::time::sleep(Duration::from_secs(400)).await;
    service.driver.prior_merged(total).await;
    let next = service.driver.prior_learned().await.unwrap();
    assert_eq!(next.turns.iter().sum::<u64>(), 1, "b's turn, once");
    assert_eq!(
        service
            .driver
            .prior_learned()
            .await
            .unwrap()
            .turns
            .iter()
            .sum::<u64>(),
        1,
        "not merged yet: handed out again"
    );
    service.stop().await;
}
