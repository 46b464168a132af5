//! The contract's JSON errors: `{"error": {"code": .., "message": ..}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error answer of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The contract's error code.
    pub code: &'static str,
    /// A readable explanation.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405, reported as `bad_request` (the contract has no code of its own).
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "bad_request",
            "method not allowed on this route",
        )
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "no token: this server has a --token; send `authorization: Bearer TOKEN` (or \
             ?token=TOKEN)",
        )
    }

    /// 401 `unauthorized`: a token was sent and it is not the server's.
    #[must_use]
    pub fn wrong_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong token: the bearer token (or ?token=) is not this server's --token",
        )
    }

    /// 401 `unauthorized` on the proxy, whose `authorization` header is the
    /// provider's: the token goes in `x-warming-token`.
    #[must_use]
    pub fn unauthorized_proxy() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong x-warming-token header: this server has a --token, and proxied \
             calls carry it in x-warming-token (the SDK's own key stays in authorization / \
             x-api-key)",
        )
    }

    /// 504 `upstream`: the upstream did not answer in time.
    #[must_use]
    pub fn upstream_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "upstream", message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413 `payload_too_large`: the body is over `limit` bytes, which
    /// `setting` (a flag, or the API's own limit) sets.
    pub fn payload_too_large(limit: usize, setting: &str) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "request body is larger than {} MiB ({setting})",
                limit / (1024 * 1024)
            ),
        )
    }

    /// 502 `upstream`.
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "upstream", message)
    }

    /// 503 `storage_unavailable`: the database cannot be reached now;
    /// answered with `Retry-After` (see [`IntoResponse`]).
    pub fn storage_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            message,
        )
    }

    /// 500 `storage`.
    pub fn storage(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", message)
    }

    /// 503, reported as `storage`: the instance holding the conversation
    /// (several instances on one database) did not answer.
    pub fn holder_unreachable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage", message)
    }

    /// 503, reported as `storage`: the service is shutting down.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage",
            "the service is shutting down",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if self.code == "storage_unavailable" {
            // A database restart or failover takes seconds.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("2"),
            );
        }
        response
    }
}

impl From<warming_service::ServiceError> for ApiError {
    fn from(e: warming_service::ServiceError) -> Self {
        use warming_service::ServiceError;
        match e {
            ServiceError::Conflict(m) => Self::conflict(m),
            ServiceError::NotFound(m) => Self::not_found(m),
            e @ ServiceError::Storage { .. } => Self::storage(e.to_string()),
            ServiceError::Upstream(m) => Self::upstream(m),
            ServiceError::Unavailable => Self::unavailable(),
            e @ ServiceError::StorageUnavailable { .. } => Self::storage_unavailable(e.to_string()),
        }
    }
}
