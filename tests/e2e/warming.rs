//! What the product is for: the cache is still hot at the next turn.

use std::time::Duration;

use serde_json::json;
use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, eventually, now_ms, provider_turn, Service};

/// The stand-in forgets a prefix 1 s after its last use.
const TTL: Duration = Duration::from_secs(1);

#[tokio::test]
async fn an_idle_conversation_keeps_its_cache_only_with_warming_on() {
    let standin = Standin::start(StandinOptions {
        ttl: TTL,
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;

    let warm_request = anthropic_request("kept-warm");
    let cold_request = anthropic_request("left-cold");
    for (id, request) in [("on", &warm_request), ("off", &cold_request)] {
        service.turn_started(id).await;
        let first = provider_turn(&standin.url(), request).await;
        assert_eq!(first["cache_read_input_tokens"], 0);
        service.turn_settled(id, request).await;
    }
    service.enable("on", 400).await;
    // Off with the same interval: seven warms would be due while the user
    // reads, so warming it would show.
    service.disable_with_interval("off", 400).await;

    // The user reads for 3x the TTL.
    tokio::time::sleep(TTL * 3).await;

    let warmed = provider_turn(&standin.url(), &warm_request).await;
    let cold = provider_turn(&standin.url(), &cold_request).await;
    assert!(
        warmed["cache_read_input_tokens"].as_u64().unwrap() > 0,
        "warming on missed: {warmed}"
    );
    assert_eq!(warmed["cache_creation_input_tokens"], 0);
    assert_eq!(
        cold["cache_read_input_tokens"], 0,
        "warming off hit: {cold}"
    );
    assert!(cold["cache_creation_input_tokens"].as_u64().unwrap() > 0);

    let state = service.state("on").await;
    assert!(state["warmCount"].as_u64().unwrap() >= 3, "{state}");
    // The system prompt (the cached prefix) is read; the user message after
    // the breakpoint is not cacheable.
    assert!(state["lastPct"].as_f64().unwrap() > 90.0, "{state}");
    assert_eq!(state["lastExpectedPct"], 100.0);
    assert_eq!(service.state("off").await["warmCount"], 0);
}

#[tokio::test]
async fn every_update_after_a_warm_carries_a_future_next_warm() {
    let standin = Standin::start(StandinOptions {
        ttl: TTL,
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let mut surface = service.surface().await;
    surface.subscribe("repeat").await;
    service
        .turn_settled("repeat", &anthropic_request("repeat"))
        .await;
    service.enable("repeat", 300).await;

    let mut warm_counts = Vec::new();
    while warm_counts.len() < 3 {
        let update = surface.until(10, |m| m["type"] == "update").await;
        let state = &update["state"];
        let Some(last) = state["lastWarmAt"].as_u64() else {
            continue;
        };
        if warm_counts.last() == state["warmCount"].as_u64().as_ref() {
            continue;
        }
        let next = state["nextWarmAt"]
            .as_u64()
            .expect("no nextWarmAt after a warm");
        assert!(next > last, "stale nextWarmAt {next} <= lastWarmAt {last}");
        assert!(next + 50 > now_ms(), "nextWarmAt {next} already past");
        assert_eq!(crate::support::timer(&update)["nextWarmAt"], next);
        warm_counts.push(state["warmCount"].as_u64().unwrap());
    }
    assert_eq!(warm_counts, [1, 2, 3]);
}

#[tokio::test]
async fn a_restart_resumes_warming_without_a_new_turn() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.turn_settled("r", &anthropic_request("r")).await;
    service.enable("r", 500).await;
    eventually(5, "a first warm", || async {
        (!standin.warms().is_empty()).then_some(())
    })
    .await;
    let status = service.terminate();
    assert!(status.success(), "SIGTERM exit: {status}");

    let before = standin.warms().len();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let state = service.state("r").await;
    assert_eq!(state["enabled"], true);
    assert!(state["warmCount"].as_u64().unwrap() >= 1);
    eventually(5, "a warm after the restart", || async {
        (standin.warms().len() > before).then_some(())
    })
    .await;
}

#[tokio::test]
async fn warms_are_routed_to_the_backend_that_holds_the_cache() {
    let standin = Standin::start(StandinOptions {
        backend_id: "replica-7".into(),
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.turn_settled("b", &anthropic_request("b")).await;
    service.enable("b", 300).await;
    eventually(5, "the backend to be recorded", || async {
        let state = service.state("b").await;
        (state["backend"] == "replica-7").then_some(state)
    })
    .await;
    // Recorded means stored: the history says which backend served it.
    let (_, history) = service
        .call("GET", "/v1/conversations/b/history?limit=1", None)
        .await;
    assert_eq!(
        history["history"][0]["backend"],
        json!("replica-7"),
        "{history}"
    );
    eventually(5, "a warm with the preferred-backend hint", || async {
        standin
            .warms()
            .iter()
            .any(|w| w.preferred_backend.as_deref() == Some("replica-7"))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_model_that_refuses_zero_tokens_is_warmed_with_one() {
    let standin = Standin::start(StandinOptions {
        reject_zero_max_tokens: true,
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.turn_settled("z", &anthropic_request("z")).await;
    for _ in 0..2 {
        let (status, record) = service.call("POST", "/v1/conversations/z/warm", None).await;
        assert_eq!(status, 200, "{record}");
    }
    let sent: Vec<_> = standin.requests().iter().map(|r| r.max_tokens).collect();
    // 0 refused once, then 1 straight away (remembered for the model).
    assert_eq!(sent, [Some(0), Some(1), Some(1)]);
}

#[tokio::test]
async fn a_policy_stops_warming_visibly_and_the_prior_survives_a_restart() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A 300 ms cache TTL: the prior counts a settled turn once its TTL is
    // over, and the warms below (every 250 ms) carry the clock past it.
    let config = dir.path().join("warming.toml");
    std::fs::write(&config, "cache-ttl-ms = 300\n").unwrap();
    let args = ["--policy", "adaptive", "--config", config.to_str().unwrap()];
    let service = Service::start(dir.path(), &standin.url(), &args).await;
    service.turn_settled("p", &anthropic_request("p")).await;
    let (status, body) = service
        .call(
            "PUT",
            "/v1/conversations/p/settings",
            Some(json!({"policy": "sometimes"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let (status, state) = service
        .call(
            "PUT",
            "/v1/conversations/p/settings",
            Some(json!({"enabled": true, "intervalMs": 250, "policy": "pings:2"})),
        )
        .await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["policy"], "pings:2");
    let stopped = eventually(5, "the policy to stop warming", || async {
        let s = service.state("p").await;
        s["stoppedReason"].is_string().then_some(s)
    })
    .await;
    assert_eq!(stopped["nextWarmAt"], json!(null));
    assert_eq!(stopped["warmCount"], 2);
    assert_eq!(standin.warms().len(), 2);

    // Back to the server's policy (adaptive) with an explicit null.
    let (_, state) = service
        .call(
            "PUT",
            "/v1/conversations/p/settings",
            Some(json!({"policy": null})),
        )
        .await;
    assert_eq!(state["policy"], "adaptive");

    assert!(service.terminate().success());
    let storage = warming_storage::Storage::open(
        &dir.path().join("warming.db"),
        warming_storage::StorageOptions::default(),
    )
    .unwrap();
    let prior = storage
        .meta("return_prior")
        .unwrap()
        .expect("the prior was saved");
    let prior = warming_core::ReturnPrior::from_json(&prior);
    assert_eq!(prior.turns.iter().sum::<u64>(), 1);
}
