//! A warm with the deployment's own engine asked first: a timed warm of a
//! prefix the engine still holds sends no replay (`checked`), or saves it
//! to the engine's disk once (`saved`) where the engine can; an evicted or
//! unknown one is replayed, and where the replay left it is noted.

use std::sync::Arc;

use warming_core::{EngineSupport, Usage, WarmFailure, WarmKind, WarmRequest, WarmTrigger};

use crate::engine_port::{Engine, Residency};
use crate::ports::{Credentials, Provider, Store};
use crate::WarmAnswer;

/// Sends `warm`: through the engine's check first when there is one and a
/// timer sent it (a person asking for a warm gets a replay).
pub(super) async fn send(
    provider: Arc<dyn Provider>,
    engine: Option<Arc<dyn Engine>>,
    store: Arc<dyn Store>,
    warm: WarmRequest,
    credentials: Option<Credentials>,
) -> Result<WarmAnswer, WarmFailure> {
    if let Some(engine) = engine.as_deref() {
        if warm.trigger != WarmTrigger::Manual {
            let residency = engine.residency(&warm.conversation).await;
            tracing::debug!(conversation = %warm.conversation, ?residency, "asked the engine");
            if let Residency::Resident { tokens } = residency {
                return Ok(kept(engine, &warm, tokens).await);
            }
        }
    }
    let warm = super::template_body::with_body(store, warm).await?;
    let answer = provider.warm(&warm, credentials.as_ref()).await?;
    if let Some(engine) = engine {
        // Awaited here, before the answer is reported: no warm can ask
        // before it is located, so `expect` is not needed.
        engine.observe(&warm.conversation, answer.usage).await;
    }
    Ok(answer)
}

/// The answer for a prefix the engine still holds: saved to its disk where
/// it can, else only checked.
async fn kept(engine: &dyn Engine, warm: &WarmRequest, tokens: u64) -> WarmAnswer {
    let mut kind = WarmKind::Checked;
    if engine.support() == EngineSupport::SaveRestore {
        match engine.save(&warm.conversation).await {
            Ok(()) => kind = WarmKind::Saved,
            Err(e) => {
                tracing::warn!(conversation = %warm.conversation, engine = engine.name(), error = %e, "cannot save the prefix; checking instead");
            }
        }
    }
    WarmAnswer {
        usage: Usage {
            cache_read_tokens: tokens,
            ..Usage::default()
        },
        backend: None,
        kind: Some(kind),
    }
}
