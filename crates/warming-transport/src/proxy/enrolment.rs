//! `x-warming` and `x-warming-interval`: what a proxied request asks of
//! warming for its conversation.

use axum::http::HeaderMap;
use warming_core::ConversationId;
use warming_service::DriverHandle;

use super::headers::{WARMING_HEADER, WARMING_INTERVAL_HEADER};
use crate::http::ApiError;

/// What a proxied request asks of warming through `x-warming` and
/// `x-warming-interval`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Enrolment {
    /// `on`, `off`, or no header.
    enabled: Option<bool>,
    /// The interval asked for, ms.
    interval_ms: Option<f64>,
}

impl Enrolment {
    /// Reads the headers; a value that is neither `on` nor `off`, or an
    /// interval that is not a duration (`240`, `4m`, `90s`), is a 400
    /// naming it.
    pub(super) fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let text = |name: &str| -> Result<Option<String>, ApiError> {
            headers
                .get(name)
                .map(|v| {
                    v.to_str()
                        .map(|t| t.trim().to_ascii_lowercase())
                        .map_err(|_| ApiError::bad_request(format!("{name} is not text")))
                })
                .transpose()
        };
        let enabled = match text(WARMING_HEADER)?.as_deref() {
            None => None,
            Some("on" | "true" | "1") => Some(true),
            Some("off" | "false" | "0") => Some(false),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "{WARMING_HEADER}: {other:?} is neither on nor off"
                )))
            }
        };
        let interval_ms = match text(WARMING_INTERVAL_HEADER)? {
            None => None,
            // The durations the CLI takes (`4m`, `90s`), or plain seconds.
            Some(raw) => match warming_service::parse_duration(&raw) {
                Ok(ms) => Some(ms as f64),
                Err(why) => {
                    return Err(ApiError::bad_request(format!(
                        "{WARMING_INTERVAL_HEADER}: {why}"
                    )))
                }
            },
        };
        Ok(Self {
            enabled,
            interval_ms,
        })
    }

    /// Applies it before the turn is forwarded, so the settle that follows
    /// arms the timer: `x-warming: on|off` is the app deciding for this
    /// conversation (as a person would, under the server's `--policy`);
    /// without it, `--proxy-warming on` enrols a conversation nobody decided
    /// about, under `--proxy-policy`. A write only when something changes.
    pub(super) async fn apply(
        self,
        driver: &DriverHandle,
        id: &ConversationId,
        enroll_all: bool,
    ) -> Result<(), ApiError> {
        // Most proxied calls ask nothing of warming: no read for them.
        if self.enabled.is_none() && !enroll_all {
            return Ok(());
        }
        let current = driver.get(id.clone()).await?;
        let interval_changes = self
            .interval_ms
            .is_some_and(|ms| (ms.round() as u64) != current.interval_ms);
        match self.enabled {
            Some(enabled) if enabled != current.enabled || interval_changes => {
                let change = warming_core::SettingsChange {
                    enabled: Some(enabled),
                    interval_ms: self.interval_ms,
                    ..Default::default()
                };
                driver.update(id.clone(), change).await?;
            }
            Some(_) => {}
            None if enroll_all && !current.enabled => {
                driver.enroll(id.clone(), self.interval_ms).await?;
            }
            None => {}
        }
        Ok(())
    }
}
