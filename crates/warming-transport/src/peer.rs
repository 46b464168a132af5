//! Calls to the instance holding a conversation, for the parts of this
//! adapter that act on conversations without one HTTP request to forward
//! whole (the surface; runtime events, whose batches may name several
//! conversations): the same REST API, marked as forwarded, with the token.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use warming_core::{ConversationId, ConversationState, SettingsChange};
use warming_service::Route;

use crate::http::forward::FORWARDED;
use crate::http::AppState;

/// Where `id` is handled: `None` here, else the holder's URL.
///
/// # Errors
/// The message of a database failure.
pub async fn holder(state: &AppState, id: &ConversationId) -> Result<Option<String>, String> {
    match state.driver.route(id).await.map_err(|e| e.to_string())? {
        Route::Here => Ok(None),
        Route::Peer(url) => Ok(Some(url)),
    }
}

/// `method path` on `peer` with `body`; its JSON answer, or its error's
/// message.
async fn call<T: DeserializeOwned>(
    state: &AppState,
    peer: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<T, String> {
    let mut request = state
        .peers
        .request(method, format!("{peer}{path}"))
        .header(FORWARDED, crate::http::forward::peer_header(state));
    if let Some(token) = &state.token {
        request = request.bearer_auth(token.expose());
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.map_err(|e| e.to_string())?;
    if answer.status().is_success() {
        return answer.json().await.map_err(|e| e.to_string());
    }
    let error: Value = answer.json().await.unwrap_or(Value::Null);
    Err(error["error"]["message"]
        .as_str()
        .unwrap_or("the instance holding the conversation refused the call")
        .to_owned())
}

/// The state of `id`, from the instance holding it.
///
/// # Errors
/// The message of what failed.
pub async fn state_of(state: &AppState, id: &ConversationId) -> Result<ConversationState, String> {
    match holder(state, id).await? {
        None => state
            .driver
            .get(id.clone())
            .await
            .map_err(|e| e.to_string()),
        Some(peer) => {
            let path = format!("/v1/conversations/{id}");
            call::<crate::state_json::StateJson>(state, &peer, reqwest::Method::GET, &path, None)
                .await
                .map(ConversationState::from)
        }
    }
}

/// Sets warming on or off (flips it for `None`) where `id` is held.
///
/// # Errors
/// The message of what failed.
pub async fn toggle(state: &AppState, id: ConversationId, on: Option<bool>) -> Result<(), String> {
    let Some(peer) = holder(state, &id).await? else {
        return state
            .driver
            .toggle(id, on)
            .await
            .map(drop)
            .map_err(|e| e.to_string());
    };
    let on = match on {
        Some(on) => on,
        None => !state_of(state, &id).await?.enabled,
    };
    settings(state, &peer, &id, json!({"enabled": on})).await
}

/// Changes settings where `id` is held.
///
/// # Errors
/// The message of what failed.
pub async fn update(
    state: &AppState,
    id: ConversationId,
    change: SettingsChange,
) -> Result<(), String> {
    let Some(peer) = holder(state, &id).await? else {
        return state
            .driver
            .update(id, change)
            .await
            .map(drop)
            .map_err(|e| e.to_string());
    };
    let mut body = json!({});
    if let Some(enabled) = change.enabled {
        body["enabled"] = json!(enabled);
    }
    if let Some(ms) = change.interval_ms {
        body["intervalMs"] = json!(ms);
    }
    match change.policy {
        warming_core::PolicyChange::Set(policy) => body["policy"] = json!(policy.to_string()),
        warming_core::PolicyChange::ServerDefault => body["policy"] = Value::Null,
        _ => {}
    }
    settings(state, &peer, &id, body).await
}

async fn settings(
    state: &AppState,
    peer: &str,
    id: &ConversationId,
    body: Value,
) -> Result<(), String> {
    let path = format!("/v1/conversations/{id}/settings");
    call::<Value>(state, peer, reqwest::Method::PUT, &path, Some(body))
        .await
        .map(drop)
}

/// Warms now where `id` is held.
///
/// # Errors
/// The message of what failed.
pub async fn warm_now(state: &AppState, id: ConversationId) -> Result<(), String> {
    let Some(peer) = holder(state, &id).await? else {
        return state
            .driver
            .warm_now(id)
            .await
            .map(drop)
            .map_err(|e| e.to_string());
    };
    let path = format!("/v1/conversations/{id}/warm");
    call::<Value>(state, &peer, reqwest::Method::POST, &path, None)
        .await
        .map(drop)
}

/// Runtime events for conversations `peer` holds, sent to it; how many it
/// applied and ignored.
///
/// # Errors
/// The message of what failed.
pub async fn events(
    state: &AppState,
    peer: &str,
    events: Vec<Value>,
) -> Result<(usize, usize), String> {
    let answer: Value = call(
        state,
        peer,
        reqwest::Method::POST,
        "/v1/events",
        Some(Value::Array(events)),
    )
    .await?;
    let count = |key: &str| answer[key].as_u64().map_or(0, |n| n as usize);
    Ok((count("applied"), count("ignored")))
}
