//! Lifecycle calls over HTTP: opt-in, arming, pausing, manual warms, close.

use serde_json::json;
use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, eventually, now_ms, Service};

#[tokio::test]
async fn warming_is_off_until_the_user_opts_in() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;

    let mut fresh = service.state("never-seen").await;
    // Its ledger is of today (UTC), not of day 0.
    let today = crate::support::now_ms() / 86_400_000;
    let day = fresh["ledger"]["day"].as_u64().unwrap();
    assert!(day == today || day + 1 == today, "{fresh}");
    fresh["ledger"]["day"] = json!(0);
    assert_eq!(
        fresh,
        json!({"conversationId": "never-seen", "known": false, "enabled": false, "intervalMs": 240000, "active": false,
               "lastPct": null, "lastExpectedPct": null, "lastWarmAt": null, "nextWarmAt": null,
               "backend": null, "lastError": null, "warmCount": 0,
               // Extensions beside the contract's fields:
               "policy": "fixed", "stoppedReason": null, "stop": null,
               "ledger": {"spentDollars": 0.0, "warmSeconds": 0.0, "missesAvoided": 0,
                          "savedDollars": 0.0, "savedPrefillSeconds": 0.0,
                          "spentTodayDollars": 0.0, "savedTodayDollars": 0.0, "day": 0,
                          "replaysAvoided": 0, "retentionPremiumDollars": 0.0,
                          "engineSecondsSaved": 0.0, "unrepaidWarms": 0},
               "netDollars": 0.0, "priced": "estimate",
               "turns": {"returning": 0, "hits": 0, "lastPct": null},
               "keepAlive": {"plan": "replay", "reason": {"code": "noLongerRetention"},
                             "why": "its model offers no longer retention (price table): replays keep it",
                             "costPerIdleHour": 0.0, "upgradedAt": null}})
    );

    // Reading it created nothing.
    let (_, list) = service.call("GET", "/v1/conversations", None).await;
    assert_eq!(list["conversations"], json!([]));

    service.turn_started("c1").await;
    let settled = service.turn_settled("c1", &anthropic_request("c1")).await;
    assert_eq!(settled["known"], true);
    assert_eq!(settled["enabled"], false);
    assert_eq!(settled["nextWarmAt"], json!(null));

    // A short interval while off: five intervals pass and nothing is sent,
    // nothing scheduled.
    let off = service.disable_with_interval("c1", 200).await;
    assert_eq!(off["nextWarmAt"], json!(null));
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    assert!(standin.warms().is_empty(), "a warm was sent before opt-in");
    assert_eq!(service.state("c1").await["nextWarmAt"], json!(null));

    // Opting in arms a warm in the future.
    let before = now_ms();
    let enabled = service.enable("c1", 60_000).await;
    assert_eq!(enabled["enabled"], true);
    let next = enabled["nextWarmAt"].as_u64().unwrap();
    assert!(next > before, "nextWarmAt {next} not in the future");
}

#[tokio::test]
async fn a_turn_pauses_warming_and_its_settle_rearms() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.turn_settled("c", &anthropic_request("c")).await;
    service.enable("c", 300).await;

    let started = service.turn_started("c").await;
    assert_eq!(started["active"], true);
    assert_eq!(started["nextWarmAt"], json!(null));
    let warms_at_start = standin.warms().len();
    // While the turn runs, no warm goes out, however long it takes: three
    // intervals pass here with the countdown still null.
    let quiet_until = now_ms() + 900;
    while now_ms() < quiet_until {
        assert_eq!(service.state("c").await["nextWarmAt"], json!(null));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(standin.warms().len(), warms_at_start);

    let settled = service.turn_settled("c", &anthropic_request("c")).await;
    assert_eq!(settled["active"], false);
    // The turn outlasted the interval: the warm goes out at once, so the
    // countdown is null while it is in flight, never a time already past.
    assert_eq!(settled["nextWarmAt"], json!(null));
    eventually(5, "a warm after the settle", || async {
        (standin.warms().len() > warms_at_start).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_manual_warm_returns_its_result_and_restarts_the_cycle() {
    let standin = Standin::start(StandinOptions {
        ttl: std::time::Duration::from_secs(60),
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;

    let (status, body) = service.call("POST", "/v1/conversations/m/warm", None).await;
    assert_eq!(status, 409, "no template yet: {body}");
    assert_eq!(body["error"]["code"], "conflict");

    let request = anthropic_request("m");
    crate::support::provider_turn(&standin.url(), &request).await;
    service.turn_settled("m", &request).await;
    service.enable("m", 60_000).await;

    let before = now_ms();
    let (status, record) = service.call("POST", "/v1/conversations/m/warm", None).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["trigger"], "manual");
    assert_eq!(record["outcome"], "hit");
    assert!(record["pct"].as_f64().unwrap() > 90.0);
    let state = service.state("m").await;
    assert_eq!(state["warmCount"], 1);
    let next = state["nextWarmAt"].as_u64().unwrap();
    // The cycle restarted from the manual warm: one full interval from it.
    assert!(
        next >= before + 60_000 && next <= now_ms() + 60_000,
        "{state}"
    );
    // The replay was the template with the smallest output, not streamed.
    let warm = standin.warms().pop().unwrap();
    assert_eq!((warm.max_tokens, warm.stream), (Some(0), false));

    service.turn_started("m").await;
    let (status, body) = service.call("POST", "/v1/conversations/m/warm", None).await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test]
async fn close_disables_persistently_and_aborts_the_warm_in_flight() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.turn_settled("x", &anthropic_request("x")).await;
    service.enable("x", 60_000).await;

    standin.hang_next(1);
    let warm = {
        let url = service.url("/v1/conversations/x/warm");
        tokio::spawn(async move { reqwest::Client::new().post(url).send().await.unwrap() })
    };
    eventually(5, "the hanging warm to reach the stand-in", || async {
        (!standin.requests().is_empty()).then_some(())
    })
    .await;

    let (status, closed) = service
        .call("POST", "/v1/conversations/x/close", None)
        .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["enabled"], false);
    assert_eq!(closed["nextWarmAt"], json!(null));
    assert_eq!(closed["intervalMs"], 60_000);
    // The in-flight warm was aborted: its caller hears so at once, not after
    // the warm timeout.
    let aborted = tokio::time::timeout(std::time::Duration::from_secs(2), warm)
        .await
        .expect("the in-flight warm was not aborted")
        .unwrap();
    assert_eq!(aborted.status().as_u16(), 409);

    // Persisted: a restarted service still has it off.
    drop(service);
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let state = service.state("x").await;
    assert_eq!(state["enabled"], false);
    assert_eq!(state["intervalMs"], 60_000);
}
