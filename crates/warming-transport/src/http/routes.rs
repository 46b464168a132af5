//! Handlers of the lifecycle and query routes.

use std::sync::Arc;

use crate::state_json::StateJson;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use warming_core::{
    ConversationId, ConversationState, SettingsChange, Template, Timestamp, WarmRecord,
};

use warming_service::health::{DatabaseState, Paused};

use super::body::{parse_json, BodyBytes};
use super::{ApiError, AppState, JsonBody};

/// Validates a path id.
fn conversation(raw: &str) -> Result<ConversationId, ApiError> {
    ConversationId::new(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A path with one id, whose rejection is a JSON 400.
pub struct ConversationPath(pub ConversationId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ConversationPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("bad conversation id: {e}")))?;
        conversation(&raw).map(ConversationPath)
    }
}

/// The dashboard page, embedded in the binary: no build step, no files.
const DASHBOARD: &str = include_str!("../../assets/dashboard.html");

/// `GET /`: the dashboard (its API calls carry the token, if any).
pub async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(DASHBOARD)
}

/// `GET /healthz`: whether the process should be restarted. 503 only when
/// the driver stopped (nothing is warmed, no command answered; the process
/// exits too); a database that does not answer, or warms paused while the
/// lease is in doubt, is `degraded`, still 200: a restart would not help.
pub async fn healthz(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !state.driver.is_alive() {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "down", "driver": "stopped"})),
        )
            .into_response();
    }
    let (database, paused) = state.driver.health().report();
    let mut body = health_body(&database, paused.as_ref());
    let fine = database == DatabaseState::Reachable && paused.is_none();
    body["status"] = json!(if fine { "ok" } else { "degraded" });
    Json(body).into_response()
}

/// `GET /readyz`: whether to send this instance traffic (an orchestrator's
/// readiness probe). 503 while the driver is stopped, the database does
/// not answer or warms are paused, saying which.
pub async fn readyz(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (database, paused) = state.driver.health().report();
    let alive = state.driver.is_alive();
    let mut body = health_body(&database, paused.as_ref());
    if alive && database == DatabaseState::Reachable && paused.is_none() {
        body["status"] = json!("ready");
        return Json(body).into_response();
    }
    body["status"] = json!("not ready");
    if !alive {
        body["driver"] = json!("stopped");
    }
    (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// The database's state and the pause, in words, as both probes report
/// them: `{"database": "unreachable since 2026-12-07T05:40:00Z: connection
/// refused", "warms": "paused since ...: why"}`.
fn health_body(database: &DatabaseState, paused: Option<&Paused>) -> Value {
    let mut body = json!({"database": "reachable", "warms": "running"});
    if let DatabaseState::Unreachable { since, error } = database {
        body["database"] = json!(format!("unreachable since {}: {error}", utc(*since)));
        body["databaseUnreachableSinceMs"] = json!(since.as_millis());
    }
    if let Some(paused) = paused {
        body["warms"] = json!(format!(
            "paused since {}: {}",
            utc(paused.since),
            paused.reason
        ));
    }
    body
}

/// `t` as RFC 3339 in UTC, to the second.
fn utc(t: warming_core::Timestamp) -> String {
    let nanos = i128::from(t.as_millis()) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.replace_nanosecond(0).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{} ms after the epoch", t.as_millis()))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// `GET /v1/openapi.json`.
pub async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}

/// Unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// Known route, wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Conversations a list page holds when the caller gives no `limit`.
const DEFAULT_PAGE: usize = 100;

/// The query of a list: `limit`, `after`, `enabled`, `armed`.
#[derive(Debug, PartialEq)]
struct ListQuery {
    /// The `next` of the page before, as given.
    after: Option<String>,
    limit: usize,
    filter: warming_core::ListFilter,
}

/// The 400 for an `after` that is no page's `next`.
fn bad_cursor(value: &str) -> ApiError {
    ApiError::bad_request(format!(
        "after must be the `next` of an earlier page, got {value:?}"
    ))
}

/// A one-instance cursor: a position in the engine's list.
fn slot_cursor(after: Option<&str>) -> Result<usize, ApiError> {
    after.map_or(Ok(0), |raw| raw.parse().map_err(|_| bad_cursor(raw)))
}

/// A cluster cursor: the last id of the page before (ids need no escaping
/// in a query string).
fn id_cursor(after: Option<&str>) -> Result<Option<ConversationId>, ApiError> {
    after
        .map(|raw| ConversationId::new(raw).map_err(|_| bad_cursor(raw)))
        .transpose()
}

/// Parses a list query; anything unknown or malformed is a 400 naming it.
fn list_query(query: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut parsed = ListQuery {
        after: None,
        limit: DEFAULT_PAGE,
        filter: warming_core::ListFilter::default(),
    };
    let bool_of = |key: &str, value: &str| match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(ApiError::bad_request(format!(
            "{key} must be true or false, got {other:?}"
        ))),
    };
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => {
                parsed.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("limit must be 1 to 1000, got {value:?}"))
                    })?;
            }
            "after" => parsed.after = Some(value.to_owned()),
            // The token, for clients that can only put it in the URL:
            // checked by the auth layer, not a filter.
            "token" => {}
            "enabled" => parsed.filter.enabled = Some(bool_of(key, value)?),
            "armed" => parsed.filter.armed = bool_of(key, value)?,
            "stopped" => parsed.filter.stopped = bool_of(key, value)?,
            // Ids are letters, digits and `._:-`: a search for anything
            // else is a mistake, and needs no decoding.
            "q" if value.is_empty() => parsed.filter.id_contains = None,
            "q" => {
                let allowed = |c: char| c.is_ascii_alphanumeric() || "._:-".contains(c);
                if !value.chars().all(allowed) {
                    return Err(ApiError::bad_request(format!(
                        "q must be part of a conversation id (letters, digits, . _ : -), got \
                         {value:?}"
                    )));
                }
                parsed.filter.id_contains = Some(value.to_owned());
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown list parameter {other:?}: expected limit, after, enabled, armed, \
                     stopped or q"
                )))
            }
        }
    }
    Ok(parsed)
}

/// `GET /v1/conversations?limit=N&after=CURSOR&enabled=BOOL&armed=true&stopped=true&q=TEXT`:
/// one page and the cursor of the next. One instance lists its engine's
/// conversations in the order first seen; an instance of a cluster lists
/// every instance's, from the database, in id order.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = list_query(query.as_deref())?;
    let after = query.after.as_deref();
    let (conversations, next) = if state.driver.clustered() {
        let (page, next) = state
            .driver
            .list_cluster(id_cursor(after)?, query.limit, query.filter)
            .await?;
        (page, next.map(|id| id.as_str().to_owned()))
    } else {
        let (page, next) = state
            .driver
            .list(slot_cursor(after)?, query.limit, query.filter)
            .await?;
        (page, next.map(|n| n.to_string()))
    };
    let conversations: Vec<StateJson> = conversations.iter().map(StateJson::from).collect();
    Ok(Json(json!({
        "conversations": conversations,
        "next": next,
    })))
}

/// `GET /v1/conversations/{id}`.
pub async fn get_state(
    State(state): State<AppState>,
    ConversationPath(id): ConversationPath,
) -> Result<Json<StateJson>, ApiError> {
    Ok(Json(state.driver.get(id).await?.into()))
}

/// A history row as served: the record plus its latency.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    #[serde(flatten)]
    record: WarmRecord,
    latency_ms: u64,
}

impl From<WarmRecord> for HistoryEntry {
    fn from(record: WarmRecord) -> Self {
        let latency_ms = record.latency_ms();
        Self { record, latency_ms }
    }
}

/// Parses `limit` from a query string: 1..=1000, default 50.
fn history_limit(query: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("limit="))
    else {
        return Ok(50);
    };
    match raw.parse::<usize>() {
        Ok(limit @ 1..=1000) => Ok(limit),
        _ => Err(ApiError::bad_request(format!(
            "limit must be an integer from 1 to 1000, got {raw:?}"
        ))),
    }
}

/// `GET /v1/conversations/{id}/history?limit=N`: newest first.
pub async fn history(
    State(state): State<AppState>,
    ConversationPath(id): ConversationPath,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let limit = history_limit(query.as_deref())?;
    let records = state.driver.history(id.clone(), limit).await?;
    let history: Vec<HistoryEntry> = records.into_iter().map(HistoryEntry::from).collect();
    Ok(Json(json!({ "conversationId": id, "history": history })))
}

/// `POST /v1/conversations/{id}/turn-started`.
pub async fn turn_started(
    State(state): State<AppState>,
    ConversationPath(id): ConversationPath,
) -> Result<Json<StateJson>, ApiError> {
    Ok(Json(state.driver.turn_started(id).await?.into()))
}

/// Body of `turn-settled`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnSettledBody<'a> {
    /// Borrowed from the body as text: a long prompt is compacted and
    /// scrubbed without building a tree of it, and copied once
    /// (`Template::from_raw_json`).
    #[serde(borrow)]
    request: &'a serde_json::value::RawValue,
    model: Option<String>,
    cwd: Option<String>,
    /// When the turn's last provider request started (epoch ms); an
    /// extension: without it the time of `turn-started` is used.
    request_started_at: Option<u64>,
}

/// `POST /v1/conversations/{id}/turn-settled`.
pub async fn turn_settled(
    State(state): State<AppState>,
    ConversationPath(id): ConversationPath,
    BodyBytes(bytes): BodyBytes,
) -> Result<Json<StateJson>, ApiError> {
    let body: TurnSettledBody<'_> = parse_json(&bytes)?;
    // Refused at the door: a template no warm could parse back would make
    // every warm fail later.
    let depth = warming_core::json_depth(body.request.get());
    if depth > warming_core::MAX_TEMPLATE_DEPTH {
        return Err(ApiError::bad_request(format!(
            "request nests {depth} levels deep; at most {} are accepted",
            warming_core::MAX_TEMPLATE_DEPTH
        )));
    }
    let template =
        Template::from_raw_json(body.request, body.model, body.cwd).ok_or_else(|| {
            ApiError::bad_request("request must be the provider request body (a JSON object)")
        })?;
    check_template(&template)?;
    let template = Arc::new(template);
    let started = body.request_started_at.map(Timestamp::from_millis);
    drop(bytes);
    Ok(Json(
        state
            .driver
            .turn_settled(id, Some(template), started)
            .await?
            .into(),
    ))
}

/// Refuses a template no warm could replay: no model, or no conversation
/// (a `messages` list in Anthropic Messages and OpenAI Chat, an `input` in
/// OpenAI Responses).
fn check_template(template: &Template) -> Result<(), ApiError> {
    if template.model().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "request has no model: give request.model (or model beside request)",
        ));
    }
    if template.has_message_list() != Some(true) {
        return Err(ApiError::bad_request(
            "request has no messages list (or Responses input): it must be the Anthropic \
             Messages, OpenAI Chat or OpenAI Responses request body the turn sent",
        ));
    }
    Ok(())
}

/// `POST /v1/conversations/{id}/waiting`: the running turn waits on a tool
/// or a person and is warmed like an idle conversation meanwhile.
pub async fn waiting(
    State(state): State<AppState>,
    ConversationPath(id): ConversationPath,
) -> Result<Json<StateJson>, ApiError> {
    Ok(Json(state.driver.waiting(id).await?.into()))
}

/// `POST /v1/conversations/{id}/warm`: the warm's record.
pub async fn warm(
    State(state): State<AppState>,
    ConversationPath(id): ConversationPath,
) -> Result<Json<HistoryEntry>, ApiError> {
    Ok(Json(state.driver.warm_now(id).await?.into()))
}

/// `POST /v1/conversations/{id}/close`.
pub async fn close(
    State(state): State<AppState>,
    ConversationPath(id): ConversationPath,
) -> Result<Json<StateJson>, ApiError> {
    Ok(Json(state.driver.close(id).await?.into()))
}

/// `DELETE /v1/conversations/{id}`: forgets it, with its history, in memory
/// and on disk; answers its default state (`known: false`).
pub async fn delete(
    State(state): State<AppState>,
    ConversationPath(id): ConversationPath,
) -> Result<Json<StateJson>, ApiError> {
    Ok(Json(state.driver.delete(id).await?.into()))
}

/// Body of `PUT settings`; unknown keys are refused, naming the key.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsBody {
    enabled: Option<bool>,
    interval_ms: Option<f64>,
    /// `fixed`, `pings:N`, `breakeven`, `adaptive`, or `null` for the
    /// server's (an extension).
    #[serde(default, deserialize_with = "present")]
    policy: Option<Option<String>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The answer to a settings change: the stored state, and what was changed
/// from what was asked (a clamped interval), so nothing changes silently.
#[derive(Serialize)]
pub struct SettingsAnswer {
    #[serde(flatten, serialize_with = "crate::state_json::serialize")]
    state: ConversationState,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
    /// The same as the note, for programs: `{"requestedMs", "appliedMs",
    /// "bound": "minimum" | "maximum" | "notPositive"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    clamped: Option<Value>,
}

/// A clamped interval as the wire says it.
fn clamped_json(clamped: &warming_core::IntervalClamped) -> Value {
    let bound = match clamped.bound {
        warming_core::IntervalBound::Minimum => "minimum",
        warming_core::IntervalBound::Maximum => "maximum",
        _ => "notPositive",
    };
    // A whole number as one (5, not 5.0), as the caller most likely wrote it.
    let requested = match clamped.requested_ms {
        ms if ms.is_finite() && ms.fract() == 0.0 && ms.abs() < 9e15 => json!(ms as i64),
        ms if ms.is_finite() => json!(ms),
        _ => Value::Null,
    };
    json!({"requestedMs": requested, "appliedMs": clamped.applied_ms, "bound": bound})
}

/// `PUT /v1/conversations/{id}/settings`: answers the stored settings.
pub async fn settings(
    State(state): State<AppState>,
    ConversationPath(id): ConversationPath,
    JsonBody(body): JsonBody<SettingsBody>,
) -> Result<Json<SettingsAnswer>, ApiError> {
    let policy = match body.policy {
        None => warming_core::PolicyChange::Keep,
        Some(None) => warming_core::PolicyChange::ServerDefault,
        Some(Some(name)) => warming_core::PolicyChange::Set(
            warming_core::Policy::parse(&name).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown policy {name:?}: expected fixed, pings:N (N >= 1), breakeven or \
                     adaptive"
                ))
            })?,
        ),
    };
    let clamped = body.interval_ms.and_then(|ms| state.limits.clamped(ms));
    let notes = clamped.iter().map(ToString::to_string).collect();
    let clamped = clamped.as_ref().map(clamped_json);
    let change = SettingsChange {
        enabled: body.enabled,
        interval_ms: body.interval_ms,
        policy,
    };
    let state = state.driver.update(id, change).await?;
    Ok(Json(SettingsAnswer {
        state,
        notes,
        clamped,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_default_to_a_page_and_refuse_what_they_do_not_know() {
        let q = list_query(None).unwrap();
        assert_eq!(
            (slot_cursor(q.after.as_deref()).unwrap(), q.limit),
            (0, DEFAULT_PAGE)
        );
        let q = list_query(Some("limit=5&after=17&enabled=false&armed=true")).unwrap();
        assert_eq!((slot_cursor(q.after.as_deref()).unwrap(), q.limit), (17, 5));
        assert_eq!(q.filter.enabled, Some(false));
        assert!(q.filter.armed);
        let q = list_query(Some("stopped=true&q=chat-4")).unwrap();
        assert!(q.filter.stopped);
        assert_eq!(q.filter.id_contains.as_deref(), Some("chat-4"));
        for bad in [
            "limit=0",
            "limit=1001",
            "enabled=yes",
            "sort=id",
            "q=a%20b",
            "stopped=1",
        ] {
            assert!(list_query(Some(bad)).is_err(), "{bad}");
        }
        assert!(slot_cursor(Some("x")).is_err());
    }

    #[test]
    fn cluster_cursors_are_ids_and_refuse_what_no_page_gave() {
        assert_eq!(id_cursor(None).unwrap(), None);
        let id = ConversationId::new("team.a:chat-7_x").unwrap();
        assert_eq!(id_cursor(Some("team.a:chat-7_x")).unwrap(), Some(id));
        for bad in ["", "a b", "%41"] {
            assert!(id_cursor(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn history_limit_defaults_and_bounds() {
        assert_eq!(history_limit(None), Ok(50));
        assert_eq!(history_limit(Some("limit=7")), Ok(7));
        assert_eq!(history_limit(Some("x=1&limit=1000")), Ok(1000));
        assert!(history_limit(Some("limit=0")).is_err());
        assert!(history_limit(Some("limit=abc")).is_err());
        assert!(history_limit(Some("limit=1001")).is_err());
    }
}
