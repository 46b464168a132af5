//! The upstream's answer streamed back, and the turn settled when it ends.

use std::sync::Arc;

use axum::body::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use warming_core::{ConversationId, Template, Timestamp};
use warming_service::{DriverHandle, ProxiedTurn};

use super::watch::UsageWatch;

/// One proxied turn, to settle when its answer ends.
pub(super) struct Lifecycle {
    pub(super) driver: DriverHandle,
    pub(super) id: ConversationId,
    pub(super) request: Value,
    pub(super) started_at: Timestamp,
    pub(super) cancel: CancellationToken,
}

impl Lifecycle {
    /// Reports the end of the answer (from a stream's end, which cannot
    /// wait). A failed call keeps the old template.
    pub(super) fn settle(
        self,
        success: bool,
        usage: Option<warming_core::Usage>,
        backend: Option<String>,
    ) {
        let (driver, turn) = self.ended(success, usage, backend);
        tokio::spawn(async move { driver.proxied_turn(turn).await });
    }

    /// Reports a call that failed before any answer, before the caller
    /// answers the client: a state read after that answer sees the turn
    /// ended (the driver takes commands in order).
    pub(super) async fn failed(self) {
        let (driver, turn) = self.ended(false, None, None);
        driver.proxied_turn(turn).await;
    }

    fn ended(
        self,
        success: bool,
        usage: Option<warming_core::Usage>,
        backend: Option<String>,
    ) -> (DriverHandle, ProxiedTurn) {
        let template = success.then(|| Arc::new(Template::new(self.request, None, None)));
        let turn = ProxiedTurn {
            id: self.id,
            template,
            started_at: self.started_at,
            usage: usage.filter(|_| success),
            backend,
        };
        (self.driver, turn)
    }
}

/// Streams the upstream answer through, watching it for usage, and settles
/// the turn when it ends, is aborted by `close`, or the client goes away.
pub(super) struct Relay {
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    cancel: Option<CancellationToken>,
    watch: UsageWatch,
    finish: Option<(Lifecycle, bool, Option<String>)>,
    done: bool,
}

impl Relay {
    /// Relays `upstream`'s body; when the answer ends, settles `lifecycle`
    /// (if the call was a turn) with the usage seen in it.
    pub(super) fn new(
        upstream: reqwest::Response,
        lifecycle: Option<Lifecycle>,
        backend: Option<String>,
    ) -> Self {
        let success = upstream.status().is_success();
        let content_type = upstream
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let watch = UsageWatch::new(content_type);
        Self {
            cancel: lifecycle.as_ref().map(|l| l.cancel.clone()),
            watch,
            finish: lifecycle.map(|l| (l, success, backend)),
            upstream: upstream.bytes_stream().boxed(),
            done: false,
        }
    }

    fn finish(&mut self) {
        if let Some((lifecycle, success, backend)) = self.finish.take() {
            let usage = self.watch.finish();
            lifecycle.settle(success, usage, backend);
        }
    }

    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.done {
            return None;
        }
        let cancel = self.cancel.clone().unwrap_or_default();
        let chunk = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                // `close` or shutdown cut the answer: end it as an error,
                // as a provider's dropped stream would, so the client
                // cannot take a cut answer for a whole one.
                self.done = true;
                self.finish();
                return Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the answer was cut: the conversation was closed or warming is stopping",
                )));
            }
            chunk = self.upstream.next() => chunk,
        };
        match chunk {
            Some(Ok(bytes)) => {
                self.watch.feed(&bytes);
                Some(Ok(bytes))
            }
            Some(Err(e)) => {
                self.done = true;
                self.finish();
                Some(Err(std::io::Error::other(e)))
            }
            None => {
                // The end of the answer.
                self.done = true;
                self.finish();
                None
            }
        }
    }

    pub(super) fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
        futures_util::stream::unfold(self, |mut relay| async move {
            relay.next().await.map(|item| (item, relay))
        })
    }
}

impl Drop for Relay {
    /// The client went away mid-answer: the turn is over all the same.
    fn drop(&mut self) {
        self.finish();
    }
}
