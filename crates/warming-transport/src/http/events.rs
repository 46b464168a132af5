//! `POST /v1/events`: provider runtime events, one or an array.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use warming_core::{ConversationId, RuntimeEvent, RuntimeEventKind, SessionState, Template};

use super::{ApiError, AppState, JsonBody};

/// Parses one event; the whole request is refused if any event is malformed,
/// so a bad batch changes nothing.
fn parse_event(index: usize, event: &Value) -> Result<RuntimeEvent, ApiError> {
    let bad = |what: &str| ApiError::bad_request(format!("event {index}: {what}"));
    let object = event.as_object().ok_or_else(|| bad("must be an object"))?;
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("type must be a string"))?;
    let thread = object
        .get("threadId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("threadId must be a string"))?;
    let conversation = ConversationId::new(thread).map_err(|e| bad(&e.to_string()))?;
    match object.get("createdAt") {
        None | Some(Value::Null) => {}
        Some(Value::String(at)) if is_rfc3339(at) => {}
        Some(other) => {
            return Err(bad(&format!(
                "createdAt must be an RFC 3339 time such as 2026-11-24T13:38:15Z, got {other}"
            )))
        }
    }
    let turn_id = match object.get("turnId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return Err(bad("turnId must be a string")),
    };
    let payload = object.get("payload");
    let text = |key: &str| {
        payload
            .and_then(|p| p.get(key))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
    };
    let kind = match kind {
        "turn.started" => RuntimeEventKind::TurnStarted,
        "turn.completed" => {
            // An extension: a completion may carry the turn's request as
            // `payload.request`, which becomes the warm template.
            let template = payload
                .and_then(|p| p.get("request"))
                .filter(|r| r.is_object())
                .map(|r| Arc::new(Template::new(r.clone(), None, None)));
            let failure = (text("state") == Some("failed"))
                .then(|| Arc::from(text("errorMessage").unwrap_or("Turn failed")));
            RuntimeEventKind::TurnCompleted { template, failure }
        }
        "session.exited" => RuntimeEventKind::SessionExited,
        "session.state.changed" => match text("state") {
            Some("starting") => RuntimeEventKind::SessionState(SessionState::Starting),
            Some("running") => RuntimeEventKind::SessionState(SessionState::Running),
            Some("waiting") => RuntimeEventKind::SessionState(SessionState::Waiting),
            Some("ready") => RuntimeEventKind::SessionState(SessionState::Ready),
            Some("interrupted") => RuntimeEventKind::SessionState(SessionState::Interrupted),
            Some("stopped") => RuntimeEventKind::SessionState(SessionState::Stopped),
            Some("error") => RuntimeEventKind::SessionState(SessionState::Error(Arc::from(
                text("reason").unwrap_or("Provider session error"),
            ))),
            _ => return Err(bad(
                "session.state.changed needs payload.state: starting, running, waiting, ready, \
                 interrupted, stopped or error",
            )),
        },
        // Waiting inside a turn on a tool or a person: warmed like idle
        // until the work goes on.
        "tool.started" | "approval.requested" => {
            RuntimeEventKind::SessionState(SessionState::Waiting)
        }
        "tool.finished" | "approval.resolved" => {
            RuntimeEventKind::SessionState(SessionState::Running)
        }
        _ => RuntimeEventKind::Other,
    };
    Ok(RuntimeEvent {
        conversation,
        kind,
        turn_id,
    })
}

/// Whether `text` is an RFC 3339 date-time (`time`'s parser, not ours).
fn is_rfc3339(text: &str) -> bool {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok()
}

/// `POST /v1/events`: answers how many events were applied and ignored.
pub async fn ingest(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let raw: Vec<Value> = match body {
        Value::Array(events) => events,
        single => vec![single],
    };
    let events = raw
        .iter()
        .enumerate()
        .map(|(i, e)| parse_event(i, e))
        .collect::<Result<Vec<_>, _>>()?;
    // A batch forwarded by another instance is applied here, never sent on.
    if !state.driver.clustered() || super::forward::from_peer(&state, &headers) {
        let (applied, ignored) = state.driver.events(events).await?;
        return Ok(Json(json!({"applied": applied, "ignored": ignored})));
    }
    // Several instances: each conversation's events go to the instance
    // holding it, in the order they came. The batch was checked whole
    // above; once split it is applied per holder.
    let mut here = Vec::new();
    let mut elsewhere: Vec<(String, Vec<Value>)> = Vec::new();
    for (event, raw) in events.into_iter().zip(raw) {
        match crate::peer::holder(&state, &event.conversation)
            .await
            .map_err(ApiError::storage)?
        {
            None => here.push(event),
            Some(peer) => match elsewhere.iter_mut().find(|(p, _)| *p == peer) {
                Some((_, batch)) => batch.push(raw),
                None => elsewhere.push((peer, vec![raw])),
            },
        }
    }
    let (mut applied, mut ignored) = state.driver.events(here).await?;
    for (peer, batch) in elsewhere {
        let answer = crate::peer::events(&state, &peer, batch)
            .await
            .map_err(ApiError::holder_unreachable)?;
        applied += answer.0;
        ignored += answer.1;
    }
    Ok(Json(json!({"applied": applied, "ignored": ignored})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_at_must_be_a_time_when_given() {
        let event = |at: Value| json!({"type": "turn.started", "threadId": "t", "createdAt": at});
        assert!(parse_event(0, &event(json!("2026-11-24T13:38:15Z"))).is_ok());
        assert!(parse_event(0, &event(json!("2026-11-24T13:38:15.120+01:00"))).is_ok());
        assert!(parse_event(0, &json!({"type": "turn.started", "threadId": "t"})).is_ok());
        for bad in [
            json!("not a date"),
            json!(1_700_000_000),
            json!("2026-13-01T00:00:00Z"),
        ] {
            let err = parse_event(0, &event(bad.clone())).unwrap_err();
            assert!(err.message.contains("createdAt"), "{bad}: {}", err.message);
        }
    }
}
