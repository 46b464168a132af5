//! Thousands of mutated requests against the real binary, over HTTP and the
//! WebSocket surface: never a 5xx of the server's own making, never a
//! panic, and the service still answers afterwards.
//! `WARMING_FUZZ_CASES` sets the number of cases (default 1 500 each).

use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, Service};

fn cases() -> u32 {
    std::env::var("WARMING_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_500)
}

/// Any JSON value, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid body for the route, with one field replaced, added or dropped.
fn mutated(valid: Value) -> impl Strategy<Value = Value> {
    let keys: Vec<String> = valid
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    (any::<u8>(), any_json(), "[a-zA-Z]{1,10}").prop_map(move |(pick, value, new_key)| {
        let mut body = valid.clone();
        let Some(object) = body.as_object_mut() else {
            return value;
        };
        match (pick % 4, keys.get(pick as usize % keys.len().max(1))) {
            (0, Some(key)) => {
                object.insert(key.clone(), value);
            }
            (1, Some(key)) => {
                object.remove(key);
            }
            (2, _) => {
                object.insert(new_key, value);
            }
            _ => return value,
        }
        body
    })
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-c]".prop_map(String::from),
        1 => "\\PC{0,10}",
        1 => "[A-Za-z0-9._:-]{120,140}",
    ]
}

#[derive(Debug, Clone)]
enum Call {
    Http(&'static str, String, Option<Value>),
    Surface(Value),
}

fn call() -> impl Strategy<Value = Call> {
    let settled =
        json!({"request": anthropic_request("fuzz"), "model": "claude-test", "cwd": "/w"});
    let settings = json!({"enabled": true, "intervalMs": 250, "policy": "fixed"});
    let event = json!({"type": "turn.completed", "threadId": "a", "turnId": "t1",
                       "createdAt": "2026-11-24T13:38:15Z", "payload": {"request": anthropic_request("fuzz")}});
    let invoke = json!({"type": "invoke", "surfaceId": "cache-warming", "conversationId": "a",
                        "action": "set-interval", "payload": 20});
    prop_oneof![
        (id(), mutated(settled)).prop_map(|(id, b)| Call::Http(
            "POST",
            format!("/v1/conversations/{}/turn-settled", urlencode(&id)),
            Some(b)
        )),
        (id(), mutated(settings)).prop_map(|(id, b)| Call::Http(
            "PUT",
            format!("/v1/conversations/{}/settings", urlencode(&id)),
            Some(b)
        )),
        mutated(event).prop_map(|b| Call::Http("POST", "/v1/events".into(), Some(b))),
        (
            id(),
            prop_oneof![Just("turn-started"), Just("close"), Just("history?limit=3")]
        )
            .prop_map(|(id, what)| {
                let method = if what.starts_with("history") {
                    "GET"
                } else {
                    "POST"
                };
                Call::Http(
                    method,
                    format!("/v1/conversations/{}/{what}", urlencode(&id)),
                    None,
                )
            }),
        "[a-z=&0-9]{0,20}".prop_map(|q| Call::Http("GET", format!("/v1/conversations?{q}"), None)),
        mutated(invoke).prop_map(Call::Surface),
    ]
}

fn urlencode(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._:-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn mutated_requests_never_get_a_5xx_or_break_the_service() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (standin, _dir, service, socket) = runtime.block_on(async {
        let standin = Standin::start(StandinOptions::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let service = Service::start(dir.path(), &standin.url(), &[]).await;
        let (socket, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/v1/surface", service.addr))
                .await
                .unwrap();
        (standin, dir, service, socket)
    });
    // The runner takes an `Fn`; the one socket is used by one case at a time.
    let socket = tokio::sync::Mutex::new(socket);
    let http = reqwest::Client::new();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&call(), |call| {
            runtime.block_on(async {
                match call {
                    Call::Http(method, path, body) => {
                        let mut request = http.request(
                            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                            service.url(&path),
                        );
                        if let Some(body) = body {
                            request = request.json(&body);
                        }
                        let response = request.send().await.expect("the service answers");
                        let status = response.status().as_u16();
                        let text = response.text().await.unwrap_or_default();
                        prop_assert!(status < 500, "{method} {path}: {status} {text}");
                        if status >= 400 {
                            let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                            prop_assert!(error["error"]["message"].is_string(), "{text}");
                        }
                    }
                    Call::Surface(message) => {
                        let mut socket = socket.lock().await;
                        socket
                            .send(Message::Text(message.to_string().into()))
                            .await
                            .expect("the socket stays open");
                        // Whatever came back so far is read, and must be JSON.
                        while let Ok(Some(answer)) =
                            tokio::time::timeout(std::time::Duration::from_millis(1), socket.next())
                                .await
                        {
                            let answer = answer.expect("the socket stays open");
                            if let Message::Text(text) = answer {
                                prop_assert!(serde_json::from_str::<Value>(text.as_str()).is_ok());
                            }
                        }
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    let mut socket = socket.into_inner();
    runtime.block_on(async {
        // The socket still works after all of it.
        let subscribe =
            json!({"type": "subscribe", "surfaceId": "cache-warming", "conversationId": "z"});
        socket
            .send(Message::Text(subscribe.to_string().into()))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
                .await
                .expect("the surface still answers")
                .unwrap()
                .unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if value["type"] == "surface" && value["conversationId"] == "z" {
                break;
            }
        }
        let (status, _) = service.call("GET", "/healthz", None).await;
        assert_eq!(status, 200);
        let log = std::fs::read_to_string(&service.log).unwrap();
        assert!(!log.contains("panicked"), "the service panicked");
    });
    drop(standin);
}
