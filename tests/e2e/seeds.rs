//! Conformance with the seeds' behaviours that the other suites do not
//! cover: events of unknown threads, failed turns and session states, the
//! settled turn's model, waiting inside a turn, and no past `nextWarmAt`.

use serde_json::{json, Value};
use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, eventually, now_ms, Service};

fn event(kind: &str, thread: &str, turn: Option<&str>, payload: Option<Value>) -> Value {
    let mut e = json!({"type": kind, "threadId": thread, "createdAt": "2026-11-24T10:00:00Z"});
    if let Some(turn) = turn {
        e["turnId"] = json!(turn);
    }
    if let Some(payload) = payload {
        e["payload"] = payload;
    }
    e
}

#[tokio::test]
async fn events_of_unknown_threads_are_ignored_and_failures_show_as_last_error() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;

    let (status, answer) = service
        .call(
            "POST",
            "/v1/events",
            Some(event("turn.started", "ghost", Some("1"), None)),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({"applied": 0, "ignored": 1}));
    assert_eq!(service.state("ghost").await["known"], false);

    service.turn_settled("s", &anthropic_request("s")).await;
    let post = |events: Value| {
        let service = &service;
        async move {
            let (status, answer) = service.call("POST", "/v1/events", Some(events)).await;
            assert_eq!(status, 200, "{answer}");
            answer
        }
    };
    // A failed turn: its errorMessage, or "Turn failed".
    post(json!([
        event("turn.started", "s", Some("1"), None),
        event(
            "turn.completed",
            "s",
            Some("1"),
            Some(json!({"state": "failed", "errorMessage": "context too long"}))
        ),
    ]))
    .await;
    let state = service.state("s").await;
    assert_eq!(
        (state["active"].clone(), state["lastError"].clone()),
        (json!(false), json!("context too long"))
    );
    post(json!([
        event("turn.started", "s", Some("2"), None),
        event(
            "turn.completed",
            "s",
            Some("2"),
            Some(json!({"state": "failed"}))
        ),
    ]))
    .await;
    assert_eq!(service.state("s").await["lastError"], "Turn failed");

    // Session states: running starts a turn, error ends it with its reason
    // (or "Provider session error"), ready clears it.
    let state_changed = |state: &str, reason: Option<&str>| {
        let mut payload = json!({"state": state});
        if let Some(reason) = reason {
            payload["reason"] = json!(reason);
        }
        event("session.state.changed", "s", None, Some(payload))
    };
    post(state_changed("running", None)).await;
    assert_eq!(service.state("s").await["active"], true);
    post(state_changed("error", None)).await;
    let state = service.state("s").await;
    assert_eq!(
        (state["active"].clone(), state["lastError"].clone()),
        (json!(false), json!("Provider session error"))
    );
    post(state_changed("running", None)).await;
    post(state_changed("error", Some("overloaded"))).await;
    assert_eq!(service.state("s").await["lastError"], "overloaded");
    post(state_changed("ready", None)).await;
    assert_eq!(service.state("s").await["lastError"], Value::Null);
    // A state that is not one of the seven is refused.
    let (status, _) = service
        .call("POST", "/v1/events", Some(state_changed("dreaming", None)))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_turn_waiting_on_a_tool_is_warmed_like_an_idle_one() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.turn_settled("w", &anthropic_request("w")).await;
    service.enable("w", 300).await;
    service.turn_started("w").await;
    assert_eq!(service.state("w").await["nextWarmAt"], Value::Null);

    // Over HTTP...
    let (status, state) = service
        .call("POST", "/v1/conversations/w/waiting", None)
        .await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["active"], false);
    let before = standin.warms().len();
    eventually(5, "a warm while the turn waits", || async {
        (standin.warms().len() > before).then_some(())
    })
    .await;
    // ...and as runtime events: the tool finishing resumes the turn.
    service.turn_started("w").await;
    let (_, answer) = service
        .call(
            "POST",
            "/v1/events",
            Some(event("tool.started", "w", None, None)),
        )
        .await;
    assert_eq!(answer["applied"], 1);
    assert_eq!(service.state("w").await["active"], false);
    service
        .call(
            "POST",
            "/v1/events",
            Some(event("tool.finished", "w", None, None)),
        )
        .await;
    let state = service.state("w").await;
    assert_eq!(
        (state["active"].clone(), state["nextWarmAt"].clone()),
        (json!(true), Value::Null)
    );

    // Without a running turn there is nothing to wait in: a 409 saying so.
    let (status, answer) = service
        .call("POST", "/v1/conversations/idle/waiting", None)
        .await;
    assert_eq!(status, 409, "{answer}");
}

#[tokio::test]
async fn the_settled_turns_model_is_the_one_warmed() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let (status, _) = service
        .call(
            "POST",
            "/v1/conversations/m/turn-settled",
            Some(json!({"model": "claude-haiku-4-5", "request": anthropic_request("m")})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, record) = service.call("POST", "/v1/conversations/m/warm", None).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(
        standin.warms()[0].model.as_deref(),
        Some("claude-haiku-4-5")
    );
}

#[tokio::test]
async fn a_turn_longer_than_the_interval_never_pushes_a_past_next_warm() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service
        .turn_settled("long", &anthropic_request("long"))
        .await;
    service.enable("long", 300).await;
    let mut surface = service.surface().await;
    surface.subscribe("long").await;
    service.turn_started("long").await;
    // The turn runs three intervals.
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let settled = service
        .turn_settled("long", &anthropic_request("long"))
        .await;
    let received = now_ms();
    assert!(
        settled["nextWarmAt"]
            .as_u64()
            .is_none_or(|at| at > received),
        "{settled}"
    );
    for _ in 0..4 {
        let update = surface.until(5, |m| m["type"] == "update").await;
        let at = update["state"]["nextWarmAt"].as_u64();
        let now = now_ms();
        assert!(
            at.is_none_or(|at| at > now),
            "pushed nextWarmAt {at:?} at {now}"
        );
    }
}
