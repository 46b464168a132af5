//! Money: a minimum worth warming, and what a stop for it says.

use serde_json::json;
use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, Service};

#[tokio::test]
async fn a_prefix_whose_hit_saves_less_than_min_saving_is_not_warmed_and_says_why() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &["--min-saving", "0.05"]).await;
    // A Sonnet prompt of a few thousand tokens: a hit saves about a cent.
    let mut small = anthropic_request("small");
    small["model"] = json!("claude-sonnet-4-5");
    let text = small["system"][0]["text"].as_str().unwrap().repeat(4);
    small["system"][0]["text"] = json!(text);
    service.enable("small", 10_000).await;
    service.turn_settled("small", &small).await;
    let state = service.state("small").await;
    assert_eq!(state["nextWarmAt"], serde_json::Value::Null, "{state}");
    assert_eq!(state["stop"]["code"], "smallSaving", "{state}");
    assert_eq!(state["stop"]["minSaving"], 0.05);
    let reason = state["stoppedReason"].as_str().unwrap();
    assert!(reason.contains("--min-saving"), "{reason}");
    // A prompt on a model whose misses cost ten times more is warmed.
    let mut dear = small.clone();
    dear["model"] = json!("claude-opus-4-1");
    dear["system"][0]["text"] = json!(text.repeat(2));
    service.enable("dear", 10_000).await;
    service.turn_settled("dear", &dear).await;
    let state = service.state("dear").await;
    assert!(state["nextWarmAt"].is_number(), "{state}");
    assert_eq!(state["stop"], serde_json::Value::Null);
}

#[tokio::test]
async fn the_daily_spend_cap_stops_warming_and_says_which_cap() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A cap between one warm of this prompt (~$0.00018 at the estimate)
    // and two: the second would cross it, so it is not sent.
    let service = Service::start(
        dir.path(),
        &standin.url(),
        &["--max-spend-per-day", "0.0003"],
    )
    .await;
    let request = anthropic_request("capped");
    crate::support::provider_turn(&standin.url(), &request).await;
    service.turn_settled("capped", &request).await;
    service.enable("capped", 250).await;
    let state = crate::support::eventually(5, "the cap to stop warming", || async {
        let s = service.state("capped").await;
        s["stop"]["code"].is_string().then_some(s)
    })
    .await;
    assert_eq!(state["stop"]["code"], "spendCap", "{state}");
    assert_eq!(state["stop"]["maxPerDay"], 0.0003);
    assert_eq!(state["nextWarmAt"], serde_json::Value::Null);
    assert!(state["stoppedReason"]
        .as_str()
        .unwrap()
        .contains("--max-spend-per-day"));
    // One warm was sent, then none: the cap holds, and is not overshot.
    let sent = standin.warms().len();
    assert_eq!(sent, 1);
    assert_eq!(state["warmCount"], 1);
    let spent = state["ledger"]["spentTodayDollars"].as_f64().unwrap();
    assert!(spent > 0.0 && spent <= 0.0003, "{state}");
    assert!(state["stoppedReason"]
        .as_str()
        .unwrap()
        .contains("resumes at 00:00 UTC"));
    // A manual warm would cross the cap too: refused, saying so, not sent.
    let (status, refused) = service
        .call("POST", "/v1/conversations/capped/warm", None)
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-spend-per-day"),
        "{refused}"
    );
    assert_eq!(standin.warms().len(), 1);
    // The stop is in the history, as the state says it.
    let (_, history) = service
        .call("GET", "/v1/conversations/capped/history?limit=10", None)
        .await;
    assert_eq!(history["history"][0]["outcome"], "stopped", "{history}");
    // A restart the same day keeps the day's spend: the conversation is
    // restored, armed again, and its next timed warm stopped by the cap.
    service.terminate();
    let service = Service::start(
        dir.path(),
        &standin.url(),
        &["--max-spend-per-day", "0.0003"],
    )
    .await;
    let restarted = service.state("capped").await;
    assert_eq!(
        restarted["ledger"]["spentTodayDollars"].as_f64(),
        Some(spent),
        "{restarted}"
    );
    crate::support::eventually(5, "the cap to hold after a restart", || async {
        let s = service.state("capped").await;
        (s["stop"]["code"] == "spendCap").then_some(())
    })
    .await;
    assert_eq!(
        standin.warms().len(),
        1,
        "a warm was sent after the restart"
    );
}

#[tokio::test]
async fn the_per_conversation_cap_stops_the_dear_conversation_and_not_the_others() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Between what warms of each prompt cost: a ~600-token prompt at the
    // estimated $3/M ($0.00018 a read, sixteen warms to reach the cap) and
    // one ten times longer (~$0.002: its second warm would cross it).
    let service = Service::start(
        dir.path(),
        &standin.url(),
        &["--max-spend-per-conversation-day", "0.003"],
    )
    .await;
    let small = anthropic_request("cheap-one");
    let mut dear = anthropic_request("dear-one");
    let text = dear["system"][0]["text"].as_str().unwrap().repeat(10);
    dear["system"][0]["text"] = json!(text);
    for (id, request) in [("cheap-one", &small), ("dear-one", &dear)] {
        crate::support::provider_turn(&standin.url(), request).await;
        service.turn_settled(id, request).await;
        service.enable(id, 250).await;
    }
    let state = crate::support::eventually(5, "the cap to stop the dear one", || async {
        let s = service.state("dear-one").await;
        s["stop"]["code"].is_string().then_some(s)
    })
    .await;
    assert_eq!(state["stop"]["code"], "conversationSpendCap", "{state}");
    assert_eq!(state["warmCount"], 1);
    // The cheap one goes on: a second warm, then more.
    crate::support::eventually(5, "the cheap one's second warm", || async {
        (service.state("cheap-one").await["warmCount"].as_u64() >= Some(2)).then_some(())
    })
    .await;
    assert_eq!(
        service.state("cheap-one").await["stop"],
        serde_json::Value::Null
    );
}
