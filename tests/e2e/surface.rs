//! The WebSocket surface: spec, echo, updates and invocations.

use serde_json::json;
use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, eventually, now_ms, timer, Service};

#[tokio::test]
async fn the_first_message_echoes_the_conversation_and_carries_the_spec() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let mut surface = service.surface().await;
    let first = surface.subscribe("s1").await;
    assert_eq!(first["type"], "surface");
    assert_eq!(first["surfaceId"], "cache-warming");
    assert_eq!(first["conversationId"], "s1");
    assert_eq!(
        first["spec"],
        json!({"fields": [
            {"kind": "toggle", "id": "enabled", "label": "Cache warming", "value": false},
            {"kind": "number", "id": "interval", "label": "Interval", "unit": "s", "value": 240, "min": 0.2},
            {"kind": "stat", "id": "last-cache-pct", "label": "Last Cache %", "value": null},
            {"kind": "stat", "id": "cache-retention", "label": "Cache retention", "value": null},
            {"kind": "action", "id": "warm-now", "label": "Warm now"},
            {"kind": "custom", "rendererId": "cache-warming-timer", "payload": {"nextWarmAt": null, "lastWarmAt": null}},
        ]})
    );
}

#[tokio::test]
async fn invocations_toggle_set_the_interval_and_warm() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.turn_settled("s", &anthropic_request("s")).await;
    let mut surface = service.surface().await;
    surface.subscribe("s").await;
    let invoke = |action: &str, payload: Option<serde_json::Value>| {
        let mut m = json!({"type": "invoke", "surfaceId": "cache-warming", "conversationId": "s", "action": action});
        if let Some(p) = payload {
            m["payload"] = p;
        }
        m
    };

    // toggle without payload flips (off -> on)...
    surface.send(invoke("toggle", None)).await;
    let on = surface.until(5, |m| m["type"] == "update").await;
    assert_eq!(on["spec"]["fields"][0]["value"], true);
    assert!(timer(&on)["nextWarmAt"].as_u64().unwrap() > now_ms() - 5);
    // ...with an explicit boolean it sets, idempotently.
    surface.send(invoke("toggle", Some(json!(true)))).await;
    let still_on = surface.until(5, |m| m["type"] == "update").await;
    assert_eq!(still_on["spec"]["fields"][0]["value"], true);

    // set-interval takes seconds.
    surface.send(invoke("set-interval", Some(json!(20)))).await;
    let interval = surface.until(5, |m| m["type"] == "update").await;
    assert_eq!(interval["spec"]["fields"][1]["value"], 20);
    assert_eq!(service.state("s").await["intervalMs"], 20_000);
    let next = timer(&interval)["nextWarmAt"].as_u64().unwrap();
    assert!(next > now_ms() && next <= now_ms() + 20_000);

    // warm-now pushes an update with the warm's figures.
    surface.send(invoke("warm-now", None)).await;
    let warmed = surface
        .until(5, |m| m["type"] == "update" && m["state"]["warmCount"] == 1)
        .await;
    assert!(warmed["spec"]["fields"][2]["value"].is_number());
    assert!(timer(&warmed)["lastWarmAt"].is_number());

    surface.send(invoke("toggle", Some(json!(false)))).await;
    let off = surface
        .until(5, |m| {
            m["type"] == "update" && m["state"]["enabled"] == false
        })
        .await;
    assert_eq!(off["spec"]["fields"][0]["value"], false);
    assert_eq!(timer(&off)["nextWarmAt"], json!(null));
}

#[tokio::test]
async fn lifecycle_changes_are_pushed_with_the_right_countdown() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.turn_settled("p", &anthropic_request("p")).await;
    service.enable("p", 60_000).await;
    let mut surface = service.surface().await;
    surface.subscribe("p").await;

    service.turn_started("p").await;
    let paused = surface.until(5, |m| m["type"] == "update").await;
    assert_eq!(paused["conversationId"], "p");
    assert_eq!(timer(&paused)["nextWarmAt"], json!(null));

    service.turn_settled("p", &anthropic_request("p")).await;
    let rearmed = surface.until(5, |m| m["type"] == "update").await;
    assert!(timer(&rearmed)["nextWarmAt"].as_u64().unwrap() > now_ms());

    let (status, _) = service
        .call("POST", "/v1/conversations/p/close", None)
        .await;
    assert_eq!(status, 200);
    let closed = surface.until(5, |m| m["type"] == "update").await;
    assert_eq!(closed["spec"]["fields"][0]["value"], false);
    assert_eq!(timer(&closed)["nextWarmAt"], json!(null));
}

#[tokio::test]
async fn bad_messages_get_errors_and_the_socket_stays_open() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let mut surface = service.surface().await;
    for bad in [
        "not json".to_owned(),
        json!({"type": "subscribe", "surfaceId": "other", "conversationId": "a"}).to_string(),
        json!({"type": "subscribe", "surfaceId": "cache-warming", "conversationId": "bad id"}).to_string(),
        json!({"type": "subscribe", "surfaceId": "cache-warming"}).to_string(),
        json!({"type": "dance", "surfaceId": "cache-warming", "conversationId": "a"}).to_string(),
        json!({"type": "invoke", "surfaceId": "cache-warming", "conversationId": "a", "action": "explode"}).to_string(),
        json!({"type": "invoke", "surfaceId": "cache-warming", "conversationId": "a", "action": "toggle", "payload": "yes"}).to_string(),
        json!({"type": "invoke", "surfaceId": "cache-warming", "conversationId": "a", "action": "set-interval", "payload": "soon"}).to_string(),
        json!({"type": "invoke", "surfaceId": "cache-warming", "conversationId": "a", "action": "warm-now"}).to_string(),
    ] {
        surface.send_raw(&bad).await;
        let answer = surface.next(5).await;
        assert_eq!(answer["type"], "error", "{bad} -> {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A message of no known type is told so, whatever else it lacks.
    surface
        .send_raw(&json!({"type": "bogus"}).to_string())
        .await;
    let answer = surface.next(5).await;
    assert_eq!(
        answer["message"], "unknown message type \"bogus\"",
        "{answer}"
    );
    // Still usable, and nothing was changed by any of it.
    let ok = surface.subscribe("a").await;
    assert_eq!(ok["spec"]["fields"][0]["value"], false);
    let (_, list) = service.call("GET", "/v1/conversations", None).await;
    assert!(list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["enabled"] == false));
}

#[tokio::test]
async fn a_disconnected_subscriber_changes_nothing() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.turn_settled("d", &anthropic_request("d")).await;
    service.enable("d", 300).await;
    let mut surface = service.surface().await;
    surface.subscribe("d").await;
    drop(surface);
    let before = standin.warms().len();
    eventually(5, "warms to go on after the disconnect", || async {
        (standin.warms().len() >= before + 2).then_some(())
    })
    .await;
    assert_eq!(service.state("d").await["enabled"], true);
}
