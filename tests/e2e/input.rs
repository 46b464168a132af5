//! Bad input, auth, exposure and secrets.

use serde_json::{json, Value};
use warming_testkit::{Standin, StandinOptions};

use crate::support::{
    anthropic_request, eventually, post_oversized, run_to_exit, Service, TEST_KEY,
};

async fn raw(service: &Service, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let response = reqwest::Client::new()
        .request(method, service.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_input_gets_json_errors_and_changes_nothing() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("PUT", "/v1/conversations/c/settings", b"{not json".to_vec(), 400, "bad_request"),
        ("PUT", "/v1/conversations/c/settings", br#"{"enabled": "yes"}"#.to_vec(), 400, "bad_request"),
        ("PUT", "/v1/conversations/c/settings", br#"{"intervalMs": "10s"}"#.to_vec(), 400, "bad_request"),
        // Too large for a number: the parser cannot represent it (docs/API.md).
        ("PUT", "/v1/conversations/c/settings", br#"{"intervalMs": 1e999}"#.to_vec(), 400, "bad_request"),
        ("PUT", "/v1/conversations/c/settings", b"[]".to_vec(), 400, "bad_request"),
        ("POST", "/v1/conversations/c/turn-settled", br#"{"request": "text"}"#.to_vec(), 400, "bad_request"),
        ("POST", "/v1/conversations/c/turn-settled", b"{}".to_vec(), 400, "bad_request"),
        ("POST", "/v1/conversations/bad%20id/turn-started", vec![], 400, "bad_request"),
        ("GET", "/v1/conversations/c/unknown", vec![], 404, "not_found"),
        ("GET", "/v1/conversations/c/history?limit=-1", vec![], 400, "bad_request"),
        ("POST", "/v1/events", br#"{"type": "turn.started"}"#.to_vec(), 400, "bad_request"),
        ("POST", "/v1/events", br#"[{"type": "turn.started", "threadId": "ok"}, {"type": "turn.started", "threadId": "no/slash"}]"#.to_vec(), 400, "bad_request"),
        ("GET", "/v2/anything", vec![], 404, "not_found"),
        ("GET", "/v1/surface", vec![], 400, "bad_request"),
        ("PATCH", "/v1/conversations/c", vec![], 405, "bad_request"),
        ("DELETE", "/v1/conversations/never-seen", vec![], 404, "not_found"),
        // Unknown settings keys are refused, naming the key.
        ("PUT", "/v1/conversations/c/settings", br#"{"interval": 5}"#.to_vec(), 400, "bad_request"),
        ("PUT", "/v1/conversations/c/settings", br#"{"policy": "pings:0"}"#.to_vec(), 400, "bad_request"),
        // A template no warm could replay.
        ("POST", "/v1/conversations/c/turn-settled", br#"{"request": {}}"#.to_vec(), 400, "bad_request"),
        ("POST", "/v1/conversations/c/turn-settled", br#"{"request": {"model": "m"}}"#.to_vec(), 400, "bad_request"),
        ("POST", "/v1/events", br#"{"type": "turn.started", "threadId": "c", "createdAt": "not a date"}"#.to_vec(), 400, "bad_request"),
    ];
    let long_id = format!("/v1/conversations/{}", "a".repeat(129));
    let mut cases = cases;
    cases.push(("GET", &long_id, vec![], 400, "bad_request"));
    for (method, path, body, status, code) in cases {
        let (got, answer) = raw(&service, method, path, body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {answer}"
        );
        assert!(answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(
        post_oversized(service.addr, "/v1/conversations/c/turn-settled").await,
        413
    );
    // A template nested deeper than a warm could parse back is refused.
    let deep = format!(
        r#"{{"request": {{"model": "m", "messages": [], "x": {}{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (status, answer) = raw(
        &service,
        "POST",
        "/v1/conversations/c/turn-settled",
        deep.into_bytes(),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("levels deep"),
        "{answer}"
    );
    let (_, list) = service.call("GET", "/v1/conversations", None).await;
    assert_eq!(
        list,
        json!({"conversations": [], "next": null}),
        "bad input changed state"
    );
    let (status, _) = service.call("GET", "/healthz", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn runtime_events_follow_the_lifecycle_guard() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.turn_settled("t", &anthropic_request("t")).await;
    let event = |kind: &str, turn: Option<&str>| {
        let mut e = json!({"type": kind, "threadId": "t", "createdAt": "2026-11-24T10:00:00Z"});
        if let Some(turn) = turn {
            e["turnId"] = json!(turn);
        }
        e
    };
    let (status, answer) = service
        .call(
            "POST",
            "/v1/events",
            Some(json!([
                event("turn.started", Some("1")),
                event("turn.started", Some("2")),
                event("turn.completed", Some("2")),
                event("turn.completed", None),
                event("thread.token-usage.updated", Some("1")),
                event("something.new", None),
            ])),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"applied": 1, "ignored": 5}));
    assert_eq!(service.state("t").await["active"], true);
    let (_, answer) = service
        .call(
            "POST",
            "/v1/events",
            Some(event("turn.completed", Some("1"))),
        )
        .await;
    assert_eq!(answer, json!({"applied": 1, "ignored": 0}));
    assert_eq!(service.state("t").await["active"], false);
}

#[tokio::test]
async fn a_token_guards_v1_but_not_health() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service =
        Service::start(dir.path(), &standin.url(), &["--token", "let-me-in-please"]).await;
    let (status, body) = service.call("GET", "/v1/conversations", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let client = reqwest::Client::new();
    let wrong = client
        .get(service.url("/v1/conversations"))
        .bearer_auth("let-me-out")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    // Which it was is said: none, or not the server's.
    let wrong: Value = wrong.json().await.unwrap();
    assert!(
        wrong["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("wrong token"),
        "{wrong}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("no token"),
        "{body}"
    );
    let right = client
        .get(service.url("/v1/conversations"))
        .bearer_auth("let-me-in-please")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 200);
    // In the URL, as a browser's WebSocket or link must: the list reads it
    // as the token, not as an unknown filter.
    let in_url = client
        .get(service.url("/v1/conversations?limit=5&token=let-me-in-please"))
        .send()
        .await
        .unwrap();
    assert_eq!(in_url.status().as_u16(), 200);
    let (status, _) = service.call("GET", "/healthz", None).await;
    assert_eq!(status, 200);
}

#[test]
fn a_public_address_without_a_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("refused.log");
    let db = dir.path().join("warming.db");
    let status = run_to_exit(
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--db",
            db.to_str().unwrap(),
        ],
        &log,
    )
    .expect("the service kept running on a public address without a token");
    assert!(!status.success());
    let message = std::fs::read_to_string(&log).unwrap();
    assert!(message.contains("without a token"), "{message}");
    assert!(!db.exists(), "a refused start created the database");
}

#[test]
fn a_bad_flag_or_config_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bad.log");
    let config = dir.path().join("warming.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nintervall = 5\n").unwrap();
    let status = run_to_exit(&["serve", "--config", config.to_str().unwrap()], &log).unwrap();
    assert!(!status.success());
    let message = std::fs::read_to_string(&log).unwrap();
    assert!(message.contains("intervall"), "{message}");
    assert!(!message.contains("panicked"), "{message}");
}

#[tokio::test]
async fn the_api_key_reaches_the_provider_and_nothing_else() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let mut request = anthropic_request("k");
    // An app that leaves a key in the body must not get it stored either.
    request["api_key"] = json!(TEST_KEY);
    service.turn_settled("k", &request).await;
    service.enable("k", 300).await;
    eventually(5, "two warms", || async {
        (standin.warms().len() >= 2).then_some(())
    })
    .await;
    assert!(standin
        .warms()
        .iter()
        .all(|w| w.credential.as_deref() == Some(TEST_KEY)));
    let log = service.log.clone();
    let status = service.terminate();
    assert!(status.success());
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes
                .windows(TEST_KEY.len())
                .any(|w| w == TEST_KEY.as_bytes()),
            "the key leaked into {}",
            path.display()
        );
    }
    assert!(std::fs::metadata(&log).unwrap().len() > 0);
}
