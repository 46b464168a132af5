//! The `cache-warming` surface over WebSocket (`GET /v1/surface`).
//!
//! A client subscribes to conversations and gets a `surface` message with the
//! spec at once (the conversation id echoed), then an `update` after every
//! change of that conversation. It can invoke `toggle`, `set-interval`
//! (seconds) and `warm-now`. A bad message gets an `error` message and the
//! socket stays open; a disconnect changes nothing about warming.

use std::collections::HashSet;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use warming_core::{ConversationId, ConversationState, IntervalLimits, SettingsChange};

use crate::http::{ApiError, AppState};

/// The one surface this service offers.
pub const SURFACE_ID: &str = "cache-warming";

/// Largest client message accepted, in bytes.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The surface spec for a conversation's state, fields in contract order.
#[must_use]
pub fn spec(state: &ConversationState, limits: &IntervalLimits) -> Value {
    let seconds = |ms: u64| {
        if ms % 1000 == 0 {
            json!(ms / 1000)
        } else {
            json!(ms as f64 / 1000.0)
        }
    };
    json!({"fields": [
        {"kind": "toggle", "id": "enabled", "label": "Cache warming", "value": state.enabled},
        {"kind": "number", "id": "interval", "label": "Interval", "unit": "s",
         "value": seconds(state.interval_ms), "min": seconds(limits.min_ms())},
        {"kind": "stat", "id": "last-cache-pct", "label": "Last Cache %", "value": state.last_pct},
        {"kind": "stat", "id": "cache-retention", "label": "Cache retention", "value": state.last_expected_pct},
        {"kind": "action", "id": "warm-now", "label": "Warm now"},
        {"kind": "custom", "rendererId": "cache-warming-timer",
         "payload": {"nextWarmAt": state.next_warm_at, "lastWarmAt": state.last_warm_at}},
    ]})
}

/// A `surface` or `update` message. `state` is an extension: the full state
/// as served over HTTP.
fn surface_message(kind: &str, state: &ConversationState, limits: &IntervalLimits) -> Value {
    json!({
        "type": kind,
        "surfaceId": SURFACE_ID,
        "conversationId": state.conversation_id,
        "spec": spec(state, limits),
        "state": crate::state_json::StateJson::from(state),
    })
}

fn error_message(message: impl Into<String>) -> Value {
    json!({"type": "error", "message": message.into()})
}

/// `GET /v1/surface`: upgrades to the surface protocol.
pub async fn upgrade(
    State(state): State<AppState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => ws
            .max_message_size(MAX_MESSAGE_BYTES)
            .on_upgrade(move |socket| session(socket, state)),
        Err(rejection) => ApiError::bad_request(format!("the surface is a WebSocket: {rejection}"))
            .into_response(),
    }
}

/// One client connection.
async fn session(socket: WebSocket, state: AppState) {
    state.metrics.subscribers(1);
    serve_session(socket, &state).await;
    state.metrics.subscribers(-1);
}

async fn serve_session(socket: WebSocket, state: &AppState) {
    let state = state.clone();
    let (mut sink, mut stream) = socket.split();
    let mut updates = state.driver.subscribe();
    let mut elsewhere = state.driver.subscribe_changes();
    let mut hearing = state.driver.clustered();
    let mut subscribed: HashSet<ConversationId> = HashSet::new();
    // Answers of invocations run in their own tasks, so a slow warm does not
    // hold back this socket's updates.
    let (answers, mut answer_queue) = mpsc::unbounded_channel::<Value>();
    loop {
        let outgoing = tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    handle(&state, &mut subscribed, &answers, text.as_str()).await
                }
                Some(Ok(Message::Binary(_))) => vec![error_message("expected a JSON text message")],
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
            Some(answer) = answer_queue.recv() => vec![answer],
            update = updates.recv() => match update {
                Ok(s) if subscribed.contains(&s.conversation_id) => {
                    vec![surface_message("update", &s, &state.limits)]
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => resync(&state, &subscribed).await,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            change = elsewhere.recv(), if hearing => match change {
                Ok(id) if subscribed.contains(&id) => changed_elsewhere(&state, &id).await,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => resync(&state, &subscribed).await,
                Err(broadcast::error::RecvError::Closed) => {
                    hearing = false;
                    continue;
                }
            },
        };
        for message in outgoing {
            if sink
                .send(Message::Text(message.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// A subscribed conversation changed on some instance: when another one
/// holds it (this one's changes come as updates already), its state as
/// that instance answers it now.
async fn changed_elsewhere(state: &AppState, id: &ConversationId) -> Vec<Value> {
    if !matches!(crate::peer::holder(state, id).await, Ok(Some(_))) {
        return Vec::new();
    }
    match crate::peer::state_of(state, id).await {
        Ok(s) => vec![surface_message("update", &s, &state.limits)],
        Err(e) => {
            tracing::debug!(conversation = %id, error = %e, "cannot read a changed conversation");
            Vec::new()
        }
    }
}

/// After missing updates, sends the current state of every subscription.
async fn resync(state: &AppState, subscribed: &HashSet<ConversationId>) -> Vec<Value> {
    let mut messages = Vec::new();
    for id in subscribed {
        if let Ok(s) = crate::peer::state_of(state, id).await {
            messages.push(surface_message("update", &s, &state.limits));
        }
    }
    messages
}

/// Handles one client message; returns what to send back at once.
async fn handle(
    state: &AppState,
    subscribed: &mut HashSet<ConversationId>,
    answers: &mpsc::UnboundedSender<Value>,
    text: &str,
) -> Vec<Value> {
    let message: Value = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => return vec![error_message(format!("invalid JSON: {e}"))],
    };
    let field = |name: &str| message.get(name).and_then(Value::as_str);
    // What the message is comes first: a bogus type is answered as one,
    // not with a complaint about another field.
    match field("type") {
        Some("subscribe" | "unsubscribe" | "invoke") => {}
        Some(other) => return vec![error_message(format!("unknown message type {other:?}"))],
        None => {
            return vec![error_message(
                "type must be \"subscribe\", \"unsubscribe\" or \"invoke\"",
            )]
        }
    }
    if field("surfaceId") != Some(SURFACE_ID) {
        return vec![error_message(format!("surfaceId must be {SURFACE_ID:?}"))];
    }
    let Some(raw_id) = field("conversationId") else {
        return vec![error_message("conversationId must be a string")];
    };
    let id = match ConversationId::new(raw_id) {
        Ok(id) => id,
        Err(e) => return vec![error_message(e.to_string())],
    };
    match field("type") {
        Some("subscribe") => match crate::peer::state_of(state, &id).await {
            Ok(s) => {
                subscribed.insert(id);
                vec![surface_message("surface", &s, &state.limits)]
            }
            Err(e) => vec![error_message(e)],
        },
        Some("unsubscribe") => {
            subscribed.remove(&id);
            Vec::new()
        }
        Some("invoke") => invoke(state, id, &message, answers),
        Some(other) => vec![error_message(format!("unknown message type {other:?}"))],
        None => vec![error_message("type must be a string")],
    }
}

/// Starts an invocation; its errors come back through `answers`.
fn invoke(
    state: &AppState,
    id: ConversationId,
    message: &Value,
    answers: &mpsc::UnboundedSender<Value>,
) -> Vec<Value> {
    let payload = message.get("payload");
    let state = state.clone();
    let answers = answers.clone();
    let action = message.get("action").and_then(Value::as_str).unwrap_or("");
    // Acted on by the instance holding the conversation (this one, but for
    // several instances on one database).
    let call: std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send>> =
        match (action, payload) {
            ("toggle", None | Some(Value::Null)) => {
                Box::pin(async move { crate::peer::toggle(&state, id, None).await.err() })
            }
            ("toggle", Some(Value::Bool(on))) => {
                let on = *on;
                Box::pin(async move { crate::peer::toggle(&state, id, Some(on)).await.err() })
            }
            ("toggle", Some(_)) => return vec![error_message("toggle payload must be a boolean")],
            ("set-interval", Some(Value::Number(seconds))) => {
                let change = SettingsChange {
                    interval_ms: seconds.as_f64().map(|s| s * 1000.0),
                    ..SettingsChange::default()
                };
                Box::pin(async move { crate::peer::update(&state, id, change).await.err() })
            }
            ("set-interval", _) => {
                return vec![error_message(
                    "set-interval payload must be a number of seconds",
                )]
            }
            ("warm-now", _) => {
                Box::pin(async move { crate::peer::warm_now(&state, id).await.err() })
            }
            (other, _) => return vec![error_message(format!("unknown action {other:?}"))],
        };
    tokio::spawn(async move {
        if let Some(message) = call.await {
            let _ = answers.send(error_message(message));
        }
    });
    Vec::new()
}
