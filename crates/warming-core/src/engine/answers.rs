//! What the engine's caller hands back about a warm (its answer, its
//! failure) and why a manual warm was refused.

use std::time::Duration;

use crate::{Usage, WarmKind};

/// Why a warm did not get a usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmFailure {
    /// A readable reason, shown as `lastError`.
    pub message: String,
    /// How long the provider asked to wait (HTTP `retry-after`).
    pub retry_after: Option<Duration>,
    /// The provider refused the request itself (a 4xx other than a rate
    /// limit): the same warm would be refused again, so warming stops
    /// instead of retrying ([`StopReason::Refused`](crate::StopReason::Refused)).
    pub refused: bool,
}

/// What a warm's answer told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmReply<'a> {
    /// The provider's token counts.
    pub usage: Usage,
    /// The backend that served it, if the upstream named one.
    pub backend: Option<&'a str>,
    /// Which request was sent.
    pub kind: Option<WarmKind>,
}

/// Why a manual warm was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum WarmNowError {
    /// A turn is generating; it keeps the cache warm by itself.
    Active,
    /// No turn has settled yet, so there is nothing to replay.
    NoTemplate,
    /// The warm would take today's spend past a daily cap: a cap is never
    /// crossed, not even by a warm someone asked for.
    SpendCap(crate::StopReason),
}

impl std::fmt::Display for WarmNowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Active => f.write_str("a turn is in progress"),
            Self::NoTemplate => f.write_str("no turn has settled yet: nothing to warm"),
            Self::SpendCap(stop) => write!(f, "{stop}"),
        }
    }
}

impl std::error::Error for WarmNowError {}
