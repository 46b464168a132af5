//! A turn to the deployment's own engine whose prefix was saved: restored
//! first, and the request pinned to where it was restored.

use axum::body::Bytes;
use serde_json::Value;
use warming_core::ConversationId;
use warming_service::DriverHandle;

/// `body`, pinned to the slot the engine restored `conversation`'s saved
/// prefix into; as it came when nothing was saved, the prefix is still
/// resident, or the restore failed (logged: the turn computes its prefix
/// again, as without warming).
pub(super) async fn restored(
    driver: &DriverHandle,
    conversation: &ConversationId,
    body: Bytes,
) -> Bytes {
    let Some(engine) = driver.engine() else {
        return body;
    };
    let pin = match engine.restore(conversation).await {
        Ok(Some(pin)) => pin,
        Ok(None) => return body,
        Err(e) => {
            tracing::warn!(conversation = %conversation, engine = engine.name(), error = %e, "cannot restore the saved prefix; forwarding the turn as it came");
            return body;
        }
    };
    let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    request.extend(pin);
    match serde_json::to_vec(&request) {
        Ok(pinned) => {
            tracing::debug!(conversation = %conversation, "saved prefix restored before the turn");
            Bytes::from(pinned)
        }
        Err(_) => body,
    }
}
