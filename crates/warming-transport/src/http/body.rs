//! A JSON body extractor whose rejections are the contract's JSON errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::ApiError;

/// The request body parsed as `T`; a body over the limit is 413, anything
/// unparsable 400, both as JSON errors.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let BodyBytes(bytes) = BodyBytes::from_request(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The request body unparsed, for a handler that borrows long strings
/// from it ([`parse_json`]) instead of copying them; the same 413 and 400
/// as [`JsonBody`].
#[derive(Debug)]
pub struct BodyBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for BodyBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(BodyBytes)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    lifecycle_too_large()
                } else {
                    ApiError::bad_request(format!("cannot read the body: {rejection}"))
                }
            })
    }
}

/// `bytes` parsed as `T`, which may borrow from them; unparsable is a 400.
pub fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// The lifecycle API's 413: a body over [`super::MAX_BODY_BYTES`].
pub fn lifecycle_too_large() -> ApiError {
    ApiError::payload_too_large(super::MAX_BODY_BYTES, "the lifecycle API's limit")
}

/// Most bytes of a refused body read and dropped before the 413 is sent.
const DRAIN_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Longest time spent reading a refused body before the 413 is sent.
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// The body length a request declares, if any.
pub fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The answer to a body over its limit. A client that sent
/// `Expect: 100-continue` is waiting for leave to send it and reads the
/// 413 at once. Any other client is writing the body: it is read and
/// dropped first (within [`DRAIN_MAX_BYTES`] and [`DRAIN_MAX_TIME`]), so the
/// client finishes sending and reads the 413 instead of a connection reset
/// mid-write (Python's `urllib`/`httpx` report "Broken pipe" then).
pub async fn refuse_oversize(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    error: ApiError,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use futures_util::StreamExt;
    let waits_for_continue = headers
        .get(axum::http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !waits_for_continue {
        let mut stream = body.into_data_stream();
        let mut drained = 0_usize;
        let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
            while let Some(Ok(chunk)) = stream.next().await {
                drained += chunk.len();
                if drained > DRAIN_MAX_BYTES {
                    break;
                }
            }
        })
        .await;
    }
    let mut response = error.into_response();
    if !waits_for_continue {
        return response;
    }
    // The body was never read: the connection cannot carry another request.
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// Refuses a request to the lifecycle API whose declared `content-length`
/// is over its limit with the JSON 413 before its body is parsed (see
/// [`refuse_oversize`]).
pub async fn refuse_declared_oversize(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if declared_length(req.headers()).is_some_and(|n| n > super::MAX_BODY_BYTES as u64) {
        let (parts, body) = req.into_parts();
        let error = lifecycle_too_large();
        return refuse_oversize(&parts.headers, body, error).await;
    }
    next.run(req).await
}

/// A request body read whole, at most `limit` bytes; over it, the answer
/// to send instead (the 413 of [`refuse_oversize`], after draining).
///
/// # Errors
/// The 413 response for a body over `limit`, or a 400 for a body that
/// could not be read.
pub async fn read_limited(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
    error: impl Fn() -> ApiError,
) -> Result<Bytes, axum::response::Response> {
    use axum::response::IntoResponse;
    use futures_util::StreamExt;
    if declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(refuse_oversize(headers, body, error()).await);
    }
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!("cannot read the body: {e}")).into_response()
        })?;
        if buffer.len() + chunk.len() > limit {
            let rest = axum::body::Body::from_stream(stream);
            return Err(refuse_oversize(headers, rest, error()).await);
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buffer))
}

/// Gives every request body one deadline for all of it: tower-http's body
/// timeout (and hyper's) restarts at each frame, so a body trickled a byte
/// every few seconds would never be cut. Past the deadline the body ends
/// in an error, which the extractors and the proxy answer as a bad request.
pub fn with_total_deadline(
    mut request: axum::extract::Request,
    within: std::time::Duration,
) -> axum::extract::Request {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + within;
    let body = std::mem::take(request.body_mut());
    let stream = futures_util::stream::unfold(
        (body.into_data_stream(), false),
        move |(mut data, expired)| async move {
            if expired {
                return None;
            }
            match tokio::time::timeout_at(deadline, data.next()).await {
                Ok(Some(chunk)) => Some((chunk, (data, false))),
                Ok(None) => None,
                Err(_) => {
                    let late = axum::Error::new(format!(
                        "the request body did not arrive within {} ms (--body-read-timeout-ms)",
                        within.as_millis()
                    ));
                    Some((Err(late), (data, true)))
                }
            }
        },
    );
    *request.body_mut() = axum::body::Body::from_stream(stream);
    request
}
