//! Why a policy or a guard stopped warming, in words a person understands.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a policy or a spend guard stopped warming.
///
/// In the state JSON it is `stop`, an object tagged by `code`
/// (`{"code": "pingLimit", "pings": 2}`), beside `stoppedReason` in words.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "code",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum StopReason {
    /// The spend guard: the conversation has been idle for the most time
    /// warming allows (`max_idle_ms`), under every policy.
    IdleCap {
        /// The cap, ms.
        max_idle_ms: u64,
    },
    /// `pings:N` sent its N warms in this gap.
    PingLimit {
        /// Warms allowed per gap.
        pings: u32,
    },
    /// `breakeven`: the warms of this gap cost as much as one miss.
    BreakevenReached,
    /// The provider refused the warm request (a 4xx): sending it again
    /// would be refused again (`lastError` names what it objected to).
    Refused,
    /// A warm read and wrote nothing: the provider does not cache this
    /// prefix (below the model's minimum, or no cache breakpoint).
    NothingCached,
    /// The template's cacheable prefix is estimated below the model's
    /// minimum cacheable length, so the provider never caches it.
    BelowMinimum {
        /// Estimated tokens up to the last cache breakpoint.
        estimate: u64,
        /// The model's minimum.
        minimum: u64,
    },
    /// A hit would save less than the deployment's minimum worth warming
    /// (`min_saving`): the miss of this prefix is too cheap to insure.
    SmallSaving {
        /// Dollars a hit saves over a miss on this prefix.
        saving: f64,
        /// The minimum, dollars.
        min_saving: f64,
    },
    /// The server's warms reached the most they may cost in a UTC day
    /// (`max_spend_per_day`): warming resumes when the day turns.
    SpendCap {
        /// The cap, dollars per day.
        max_per_day: f64,
    },
    /// This conversation's warms reached the most one conversation's may
    /// cost in a UTC day (`max_spend_per_conversation_day`): warming
    /// resumes when the day turns.
    ConversationSpendCap {
        /// The cap, dollars per conversation per day.
        max_per_day: f64,
    },
    /// A close whose write the store refused: the stored settings still say
    /// warming is on, but timed warms stop here all the same (a restart,
    /// which reads the store, would warm again until a close is stored).
    CloseNotStored,
    /// The engine saved the prefix to its disk ([`WarmKind::Saved`](crate::WarmKind::Saved)):
    /// nothing is sent while the user is away, and the next turn through
    /// the proxy restores it before it is forwarded.
    SavedOnEngine,
    /// `adaptive`: a return in the next window is too unlikely to pay.
    UnlikelyReturn {
        /// The estimated chance of a return in the window.
        probability: f64,
        /// The chance at which a warm would pay.
        needed: f64,
    },
}

/// A duration in the largest whole unit that fits: `1h`, `30m`, `45s`, `1500ms`.
fn human_ms(ms: u64) -> String {
    match ms {
        ms if ms >= 3_600_000 && ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms >= 60_000 && ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms >= 1_000 && ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

/// What a person can do about a stop, said after every reason.
const RESTART_HINT: &str = "the next turn, a manual warm or re-enabling starts warming again";

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_reason(f)?;
        // A spend cap is lifted by the day's turn only (its text says so):
        // a turn or re-enabling would meet the same cap. A saved prefix
        // says what brings it back itself.
        if self.is_spend_cap() || *self == Self::SavedOnEngine {
            return Ok(());
        }
        write!(f, "; {RESTART_HINT}")
    }
}

impl StopReason {
    /// A daily spend cap ([`Self::SpendCap`], [`Self::ConversationSpendCap`]):
    /// the stop lifts by itself when the day turns.
    #[must_use]
    pub fn is_spend_cap(&self) -> bool {
        matches!(
            self,
            Self::SpendCap { .. } | Self::ConversationSpendCap { .. }
        )
    }

    fn fmt_reason(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// A configured amount as a person wrote it: cents at least, and
        /// the smaller caps tests and cautious users set (0.001) in full.
        fn dollars(v: f64) -> String {
            let text = format!("{v:.4}");
            let trimmed = text.trim_end_matches('0');
            match trimmed.split_once('.') {
                Some((_, cents)) if cents.len() < 2 => format!("{v:.2}"),
                _ => trimmed.to_owned(),
            }
        }
        match self {
            Self::IdleCap { max_idle_ms } => write!(
                f,
                "idle for {}, the most warming keeps a conversation warm (--max-idle)",
                human_ms(*max_idle_ms)
            ),
            Self::PingLimit { pings: 1 } => f.write_str("sent the 1 warm allowed per idle gap (pings:1)"),
            Self::PingLimit { pings } => {
                write!(f, "sent the {pings} warms allowed per idle gap (pings:{pings})")
            },
            Self::Refused => f.write_str(
                "the provider refused the warm request (see lastError): sending it again would \
                 be refused again",
            ),
            Self::NothingCached => f.write_str(
                "the provider cached nothing of this prompt (it is below the model's minimum \
                 cacheable length, or has no cache_control breakpoint): warming would only cost",
            ),
            Self::BelowMinimum { estimate, minimum } => write!(
                f,
                "the cacheable prefix (about {estimate} tokens) is below the model's minimum \
                 cacheable length ({minimum}): the provider would not cache it, so warming \
                 would only cost"
            ),
            Self::SmallSaving { saving, min_saving } => write!(
                f,
                "a hit on this prefix saves ${saving:.4}, less than the ${} worth \
                 warming (--min-saving)",
                dollars(*min_saving)
            ),
            Self::SpendCap { max_per_day } => write!(
                f,
                "the next warm would take today's warms past the ${} a day allowed \
                 (--max-spend-per-day), so it was not sent; warming resumes at 00:00 UTC, \
                 or sooner if the server is restarted with a higher --max-spend-per-day",
                dollars(*max_per_day)
            ),
            Self::ConversationSpendCap { max_per_day } => write!(
                f,
                "the next warm would take this conversation's warms today past the ${} a day \
                 allowed (--max-spend-per-conversation-day), so it was not sent; warming resumes \
                 at 00:00 UTC, or sooner if the server is restarted with a higher \
                 --max-spend-per-conversation-day",
                dollars(*max_per_day)
            ),
            Self::CloseNotStored => f.write_str(
                "closed, but the close could not be stored: warming is stopped on this \
                 instance, while the stored settings still say on (a restart would warm again); \
                 close again once storage works",
            ),
            Self::SavedOnEngine => f.write_str(
                "its prefix is saved on the engine's disk: nothing is sent while the user is \
                 away, and its next turn through the proxy restores it first",
            ),
            Self::BreakevenReached => {
                f.write_str("the warms of this idle gap cost as much as one cache miss (breakeven)")
            }
            Self::UnlikelyReturn {
                probability,
                needed,
            } => write!(
                f,
                "a return in the next interval is too unlikely to pay ({:.1}% < {:.1}% needed; adaptive)",
                probability * 100.0,
                needed * 100.0
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_reads_back_from_its_json_with_its_figures() {
        let stops = [
            StopReason::IdleCap {
                max_idle_ms: 3_600_000,
            },
            StopReason::PingLimit { pings: 2 },
            StopReason::BelowMinimum {
                estimate: 300,
                minimum: 1_024,
            },
            StopReason::Refused,
            StopReason::SmallSaving {
                saving: 0.0125,
                min_saving: 0.05,
            },
            StopReason::SpendCap { max_per_day: 5.0 },
            StopReason::ConversationSpendCap { max_per_day: 0.5 },
            StopReason::CloseNotStored,
        ];
        for stop in stops {
            let json = serde_json::to_value(stop).unwrap();
            assert!(json["code"].is_string(), "{json}");
            assert_eq!(serde_json::from_value::<StopReason>(json).unwrap(), stop);
        }
        let said = |stop: StopReason| stop.to_string();
        assert!(said(StopReason::SpendCap { max_per_day: 5.0 }).contains("$5.00 a day"));
        assert!(
            said(StopReason::ConversationSpendCap { max_per_day: 0.001 }).contains("$0.001 a day")
        );
        assert!(said(StopReason::SmallSaving {
            saving: 0.01,
            min_saving: 0.05
        })
        .contains("$0.05 worth"));
        assert_eq!(
            serde_json::to_string(&StopReason::PingLimit { pings: 2 }).unwrap(),
            r#"{"code":"pingLimit","pings":2}"#
        );
    }
}
