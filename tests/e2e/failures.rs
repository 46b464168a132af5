//! Upstream failures: surfaced, retried, recovered from; never a silent stop.

use serde_json::json;
use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, eventually, Service};

#[tokio::test]
async fn failures_are_surfaced_retried_and_recovered_from() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.turn_settled("f", &anthropic_request("f")).await;
    standin.fail_next(1, 529, None);
    standin.fail_next(1, 429, Some(0));
    standin.fail_next(1, 500, None);
    service.enable("f", 300).await;

    let failed = eventually(5, "lastError to show the overload", || async {
        let s = service.state("f").await;
        s["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("529"))
            .then_some(s)
    })
    .await;
    assert!(
        failed["lastError"]
            .as_str()
            .unwrap()
            .contains("overloaded_error"),
        "{failed}"
    );
    // A retry is scheduled: warming did not stop.
    assert!(failed["nextWarmAt"].is_number(), "{failed}");

    let recovered = eventually(10, "a successful warm after the failures", || async {
        let s = service.state("f").await;
        (s["warmCount"].as_u64() >= Some(1)).then_some(s)
    })
    .await;
    assert_eq!(recovered["lastError"], json!(null));
    assert!(standin.warms().len() >= 4);

    let (_, history) = service
        .call("GET", "/v1/conversations/f/history?limit=10", None)
        .await;
    let outcomes: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .take(4)
        .map(|h| h["outcome"].as_str().unwrap())
        .collect();
    // The first write of a conversation settled over HTTP lost nothing:
    // `cold`, not `expired`.
    assert_eq!(outcomes, ["failed", "failed", "failed", "cold"]);
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_readable_error_and_warming_keeps_trying() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &upstream, &[]).await;
    service.turn_settled("u", &anthropic_request("u")).await;
    let (status, body) = service.call("POST", "/v1/conversations/u/warm", None).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{body}"
    );
    service.enable("u", 300).await;
    let attempts = eventually(5, "repeated attempts", || async {
        let (_, h) = service
            .call("GET", "/v1/conversations/u/history", None)
            .await;
        let entries = h["history"].as_array().cloned().unwrap_or_default();
        (entries.len() >= 3).then_some(entries)
    })
    .await;
    // Each attempt failed with the reason, and warming kept trying: the
    // later ones are retries, not one warm recorded several times.
    for attempt in &attempts {
        assert_eq!(attempt["outcome"], "failed", "{attempt}");
        assert!(
            attempt["error"]
                .as_str()
                .unwrap()
                .contains("cannot connect"),
            "{attempt}"
        );
    }
    assert!(
        attempts.iter().any(|a| a["trigger"] == "retry"),
        "{attempts:?}"
    );
    let state = service.state("u").await;
    assert!(
        state["lastError"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{state}"
    );
    assert_eq!(state["enabled"], true, "warming stays on: {state}");
}

#[tokio::test]
async fn a_hanging_upstream_times_out_into_a_failure() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &["--warm-timeout-ms", "500"]).await;
    service.turn_settled("h", &anthropic_request("h")).await;
    standin.hang_next(1);
    let (status, body) = service.call("POST", "/v1/conversations/h/warm", None).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{body}"
    );
}
