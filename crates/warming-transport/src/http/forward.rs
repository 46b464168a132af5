//! Calls for a conversation another instance holds are forwarded to it,
//! so its state lives in one engine and every order-of-events rule holds
//! (a turn start cancels that instance's warm in flight; a close stops its
//! timer). Without a cluster this layer passes every call through.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use warming_service::Route;

use super::routes::ConversationPath;
use super::{ApiError, AppState, MAX_BODY_BYTES};

/// Marks a forwarded call: its receiver handles it, never forwards again
/// (no loops while ownership moves). It carries the cluster's secret
/// ([`from_peer`]): a client sending it is still a client.
pub const FORWARDED: HeaderName = HeaderName::from_static("x-warming-forwarded");

/// Whether a call comes from another instance of the cluster: its
/// [`FORWARDED`] header carries the cluster's secret (compared in constant
/// time). Without a cluster, no call does.
pub fn from_peer(state: &AppState, headers: &axum::http::HeaderMap) -> bool {
    match (state.driver.peer_secret(), headers.get(&FORWARDED)) {
        (Some(secret), Some(given)) => super::auth::same(given.as_bytes(), secret.as_bytes()),
        _ => false,
    }
}

/// The [`FORWARDED`] header's value this instance sends its peers.
pub fn peer_header(state: &AppState) -> HeaderValue {
    state
        .driver
        .peer_secret()
        .and_then(|s| HeaderValue::from_str(s).ok())
        .map(|mut v| {
            v.set_sensitive(true);
            v
        })
        .unwrap_or_else(|| HeaderValue::from_static("1"))
}

/// Headers not to copy to the peer: hop-by-hop ones, and those the client
/// library sets from the request it sends.
const NOT_COPIED: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "x-warming-forwarded",
];

/// Route layer of the conversation routes.
pub async fn to_holder(
    State(state): State<AppState>,
    ConversationPath(id): ConversationPath,
    req: Request,
    next: Next,
) -> Response {
    if !state.driver.clustered() || from_peer(&state, req.headers()) {
        return next.run(req).await;
    }
    let peer = match state.driver.route(&id).await {
        Ok(Route::Here) => return next.run(req).await,
        Ok(Route::Peer(url)) => url,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (parts, body) = req.into_parts();
    let too_large = super::body::lifecycle_too_large;
    let body =
        match super::body::read_limited(&parts.headers, body, MAX_BODY_BYTES, too_large).await {
            Ok(body) => body,
            Err(refused) => return refused,
        };
    let error = match forward(
        &state.peers,
        peer_header(&state),
        &peer,
        &parts,
        body.clone(),
    )
    .await
    {
        Ok(response) => return response,
        Err(Unanswered::Unreached(e)) => e,
        // It may have acted on the call: sending it elsewhere could act twice.
        Err(Unanswered::Lost(e)) => {
            state.driver.forget_holder(&id);
            return unreachable_holder(&id, &peer, &e);
        }
    };
    // Never reached: the holder may have died and its lease lapsed; ask
    // the database again, once.
    state.driver.forget_holder(&id);
    tracing::warn!(conversation = %id, peer = %peer, error = %error, "the instance holding a conversation did not answer");
    match state.driver.route(&id).await {
        Ok(Route::Here) => next.run(Request::from_parts(parts, Body::from(body))).await,
        Ok(Route::Peer(other)) if other != peer => {
            match forward(&state.peers, peer_header(&state), &other, &parts, body).await {
                Ok(response) => response,
                Err(Unanswered::Unreached(e) | Unanswered::Lost(e)) => {
                    state.driver.forget_holder(&id);
                    unreachable_holder(&id, &other, &e)
                }
            }
        }
        Ok(Route::Peer(_)) => {
            state.driver.forget_holder(&id);
            unreachable_holder(&id, &peer, &error)
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The 503 for a holder that did not answer while its lease still runs.
fn unreachable_holder(id: &warming_core::ConversationId, peer: &str, error: &str) -> Response {
    ApiError::holder_unreachable(format!(
        "the instance holding conversation {id} ({peer}) did not answer ({error}); its \
         conversations move to another instance once its lease lapses: retry"
    ))
    .into_response()
}

/// Why a forwarded call has no answer.
enum Unanswered {
    /// The peer was never reached (no connection): nothing happened there.
    Unreached(String),
    /// Sent, but the answer was lost: the peer may have acted on it.
    Lost(String),
}

/// Sends the call (`parts` and `body`) to the same path on `peer`, marked
/// with `mark` (the [`FORWARDED`] value), and answers what it answered.
async fn forward(
    http: &reqwest::Client,
    mark: HeaderValue,
    peer: &str,
    parts: &axum::http::request::Parts,
    body: axum::body::Bytes,
) -> Result<Response, Unanswered> {
    let path = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map_or(&parts.uri, |original| &original.0)
        .path_and_query()
        .map_or("/", |p| p.as_str());
    let mut outgoing = http
        .request(parts.method.clone(), format!("{peer}{path}"))
        .body(body);
    for (name, value) in &parts.headers {
        if !NOT_COPIED.contains(&name.as_str()) {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = outgoing.header(FORWARDED, mark).send().await.map_err(|e| {
        if e.is_connect() {
            Unanswered::Unreached(e.to_string())
        } else {
            Unanswered::Lost(e.to_string())
        }
    })?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !NOT_COPIED.contains(&name.as_str()) {
            response = response.header(name, value);
        }
    }
    // Streamed as it comes: a proxied generation's events reach the
    // client as the holder relays them.
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .map_err(|e| Unanswered::Lost(e.to_string()))
}

/// A proxied model turn for a conversation `peer` holds, sent to it whole
/// (the client's own credentials included, which the holder keeps for its
/// warms) and answered as it answers, streamed.
///
/// # Errors
/// A JSON 503 when the holder could not be reached.
pub async fn proxied_turn_to(
    state: &AppState,
    id: &warming_core::ConversationId,
    peer: &str,
    parts: &axum::http::request::Parts,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    forward(&state.peers, peer_header(state), peer, parts, body)
        .await
        .map_err(|e| {
            state.driver.forget_holder(id);
            let (Unanswered::Unreached(e) | Unanswered::Lost(e)) = e;
            ApiError::holder_unreachable(format!(
                "the instance holding conversation {id} ({peer}) did not answer ({e}); its \
             conversations move to another instance once its lease lapses: retry"
            ))
        })
}
