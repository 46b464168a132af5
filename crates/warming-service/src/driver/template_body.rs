//! A warm's template body: the engine may keep templates detached, and the
//! body is read back from the store before the warm is sent.

use std::sync::Arc;

use warming_core::{Template, WarmFailure, WarmRequest};

use crate::ports::Store;

/// The warm with its template's body: read back from the store when the
/// engine keeps templates detached. The flush first: the template write was
/// queued before this warm (a proxied turn's settle answers nobody, so it
/// may still be in flight), and the store's writes are FIFO, so after it
/// the store holds the body the engine last saved. A flush that reports a
/// failed write (a full disk) does not stop the read: a refused template
/// was taken back in memory, so the stored one is the one to send.
pub(super) async fn with_body(
    store: Arc<dyn Store>,
    mut warm: WarmRequest,
) -> Result<WarmRequest, WarmFailure> {
    warm.template = body_of(store, &warm.conversation, warm.template).await?;
    Ok(warm)
}

/// `template` with its body: as it is, or read back from the store when
/// detached.
pub(super) async fn body_of(
    store: Arc<dyn Store>,
    conversation: &warming_core::ConversationId,
    template: Arc<Template>,
) -> Result<Arc<Template>, WarmFailure> {
    if !template.is_detached() {
        return Ok(template);
    }
    let failure = |message: String| WarmFailure {
        message,
        retry_after: None,
        refused: false,
    };
    if let Err(e) = store.flush().await {
        tracing::debug!(error = %e, "a write before this warm failed; reading the stored template");
    }
    let conversation = conversation.clone();
    let read = tokio::task::spawn_blocking(move || store.template(&conversation)).await;
    match read {
        Ok(Ok(Some(template))) => Ok(Arc::new(template)),
        Ok(Ok(None)) => Err(failure("the warm template is not in storage".into())),
        Ok(Err(e)) => Err(failure(format!("cannot read the warm template: {e}"))),
        Err(e) => Err(failure(format!("cannot read the warm template: {e}"))),
    }
}
