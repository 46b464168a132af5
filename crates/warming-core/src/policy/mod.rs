//! When to keep warming an idle conversation: the policies, the economics
//! they weigh, and the return prior the server learns online.
//!
//! A warm costs a cache read of the prefix. It pays only if the user comes
//! back while the cache would otherwise have expired: then the turn reads
//! the prefix instead of re-writing it, and does not wait for its prefill.
//! Most conversations end after a few turns, so warming forever
//! (`fixed`) burns money on forgotten ones. `adaptive` estimates the chance of
//! a return in the window the next warm protects, from this conversation's
//! own gaps blended with a prior learned from every conversation, and warms
//! only while the expected saving exceeds the warm's cost.
//!
//! Here: the policies and `decide`; `economics`: prices and what a warm and
//! a miss cost; `prior`: the return prior; `stop`: why warming stopped.

mod economics;
mod keep_alive;
mod prior;
mod stop;

use std::fmt;

pub use economics::Economics;
pub use keep_alive::{choose_plan, EngineSupport, KeepAlive, Plan, PlanInputs, PlanReason};
pub use prior::ReturnPrior;
pub use stop::StopReason;

/// A rule for continuing to warm an idle conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// Warm every interval until closed.
    Fixed,
    /// At most N warms per idle gap.
    Pings(u32),
    /// Stop once the warms sent in this gap cost as much as one miss
    /// (deterministic ski rental: never more than twice the optimum).
    Breakeven,
    /// Warm while the expected saving exceeds the warm's cost.
    Adaptive,
}

impl Policy {
    /// Parses `fixed`, `pings:N` (N at least 1), `breakeven` or `adaptive`.
    ///
    /// ```
    /// use warming_core::Policy;
    /// assert_eq!(Policy::parse("pings:3"), Some(Policy::Pings(3)));
    /// assert_eq!(Policy::parse("adaptive"), Some(Policy::Adaptive));
    /// assert_eq!(Policy::parse("pings:0"), None); // would never warm: say so
    /// assert_eq!(Policy::parse("sometimes"), None);
    /// ```
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "fixed" => Some(Self::Fixed),
            "breakeven" => Some(Self::Breakeven),
            "adaptive" => Some(Self::Adaptive),
            other => other
                .strip_prefix("pings:")
                .and_then(|n| n.parse().ok())
                .filter(|&n| n > 0)
                .map(Self::Pings),
        }
    }
}

/// As its name (`"pings:3"`), the form of the HTTP contract.
impl serde::Serialize for Policy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// From its name; an unknown one is an error naming it.
impl<'de> serde::Deserialize<'de> for Policy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown policy {name:?}")))
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed => f.write_str("fixed"),
            Self::Pings(n) => write!(f, "pings:{n}"),
            Self::Breakeven => f.write_str("breakeven"),
            Self::Adaptive => f.write_str("adaptive"),
        }
    }
}

/// One idle conversation at a warm's deadline, as a policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct GapView<'a> {
    /// How long the user has been away, ms.
    pub idle_ms: u64,
    /// Warms already sent in this gap.
    pub warms_in_gap: u32,
    /// The conversation's interval, ms.
    pub interval_ms: u64,
    /// The cached prefix, tokens (0 if unknown).
    pub prefix_tokens: u64,
    /// Turns so far in the conversation.
    pub depth: u32,
    /// This conversation's past gaps, ms.
    pub own_gaps: &'a [u64],
    /// Output tokens the conversation's last warm generated (a warm that
    /// keeps extended thinking must think): part of the next warm's cost.
    pub warm_output_tokens: u64,
}

/// How much a conversation's own gaps weigh against the prior, in gaps.
const PRIOR_WEIGHT: f64 = 3.0;

/// Decides whether the next warm is sent (the design card's `should_warm`).
///
/// # Errors
/// `Err(reason)` when the policy stops warming.
#[doc(alias = "should_warm")]
pub fn decide(
    policy: Policy,
    economics: &Economics,
    prior: &ReturnPrior,
    view: &GapView<'_>,
) -> Result<(), StopReason> {
    let prefix = if view.prefix_tokens == 0 {
        economics.default_prefix_tokens
    } else {
        view.prefix_tokens
    };
    let warm_cost = economics.warm_cost(prefix) + economics.output_cost(view.warm_output_tokens);
    match policy {
        Policy::Fixed => Ok(()),
        Policy::Pings(n) if view.warms_in_gap < n => Ok(()),
        Policy::Pings(n) => Err(StopReason::PingLimit { pings: n }),
        Policy::Breakeven => {
            let spent = f64::from(view.warms_in_gap + 1) * warm_cost;
            if spent <= economics.miss_cost(prefix) {
                Ok(())
            } else {
                Err(StopReason::BreakevenReached)
            }
        }
        Policy::Adaptive => {
            let warm = warm_cost;
            let miss = economics.miss_cost(prefix).max(f64::MIN_POSITIVE);
            // Look a few warms ahead: a return unlikely in the next window may
            // be likely enough over the next few, and only warming now keeps
            // that option open.
            let worth = (1..=LOOKAHEAD)
                .any(|k| return_in_window(economics, prior, view, k) * miss > f64::from(k) * warm);
            if worth {
                Ok(())
            } else {
                Err(StopReason::UnlikelyReturn {
                    probability: return_in_window(economics, prior, view, 1),
                    needed: warm / miss,
                })
            }
        }
    }
}

/// Warms `adaptive` looks ahead.
const LOOKAHEAD: u32 = 3;

/// Chance that the user, away for `idle_ms`, returns in the window that this
/// warm and the `warms - 1` after it protect: from when the cache would have
/// expired without them (last touch one interval ago, plus the TTL) to the
/// TTL after the last of them.
fn return_in_window(
    economics: &Economics,
    prior: &ReturnPrior,
    view: &GapView<'_>,
    warms: u32,
) -> f64 {
    let q = prior.return_probability(view.depth);
    let n = view.own_gaps.len() as f64;
    let cdf = |t: f64| {
        let own = if view.own_gaps.is_empty() {
            0.0
        } else {
            view.own_gaps.iter().filter(|&&g| (g as f64) <= t).count() as f64 / n
        };
        (n * own + PRIOR_WEIGHT * prior.gap_cdf(t)) / (n + PRIOR_WEIGHT)
    };
    let idle = view.idle_ms as f64;
    let ttl = economics.ttl_ms as f64;
    let interval = view.interval_ms as f64;
    let start = idle - interval + ttl;
    let end = idle + ttl + f64::from(warms.saturating_sub(1)) * interval;
    let survive = 1.0 - q * cdf(idle);
    if survive <= 0.0 || end <= start {
        return 0.0;
    }
    (q * (cdf(end) - cdf(start.max(idle))) / survive).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(warms: u32, own: &[u64]) -> GapView<'_> {
        GapView {
            idle_ms: 240_000,
            warms_in_gap: warms,
            interval_ms: 240_000,
            prefix_tokens: 10_000,
            depth: 3,
            own_gaps: own,
            warm_output_tokens: 0,
        }
    }

    #[test]
    fn names_round_trip() {
        for p in [
            Policy::Fixed,
            Policy::Pings(4),
            Policy::Breakeven,
            Policy::Adaptive,
        ] {
            assert_eq!(Policy::parse(&p.to_string()), Some(p));
        }
        assert_eq!(Policy::parse("pings:"), None);
    }

    #[test]
    fn pings_stop_after_n_warms_in_a_gap() {
        let e = Economics::default();
        let prior = ReturnPrior::default();
        assert!(decide(Policy::Pings(2), &e, &prior, &view(1, &[])).is_ok());
        assert_eq!(
            decide(Policy::Pings(2), &e, &prior, &view(2, &[])),
            Err(StopReason::PingLimit { pings: 2 })
        );
        assert!(decide(Policy::Fixed, &e, &prior, &view(1_000, &[])).is_ok());
    }

    #[test]
    fn breakeven_stops_when_warms_cost_one_miss() {
        // Tokens only: a miss costs 1.15 x, a warm 0.1 x: 11 warms fit, not 12.
        let e = Economics {
            lambda_per_sec: 0.0,
            ..Economics::default()
        };
        let prior = ReturnPrior::default();
        assert!(decide(Policy::Breakeven, &e, &prior, &view(10, &[])).is_ok());
        assert_eq!(
            decide(Policy::Breakeven, &e, &prior, &view(11, &[])),
            Err(StopReason::BreakevenReached)
        );
    }

    #[test]
    fn adaptive_warms_a_user_who_always_returns_in_the_window_and_stops_otherwise() {
        let e = Economics {
            lambda_per_sec: 0.0,
            ..Economics::default()
        };
        let mut prior = ReturnPrior::default();
        // Every turn so far was followed by another after 6-7 minutes: just
        // past the TTL, inside the window the first warm protects.
        for _ in 0..200 {
            prior.observe_turn(3);
            prior.observe_return(3, 400_000);
        }
        let habits = [390_000, 400_000, 410_000, 420_000];
        assert!(decide(Policy::Adaptive, &e, &prior, &view(0, &habits)).is_ok());
        // Users who never come back: nothing to protect.
        let mut gone = ReturnPrior::default();
        for _ in 0..200 {
            gone.observe_turn(3);
        }
        let stop = decide(Policy::Adaptive, &e, &gone, &view(0, &[]));
        assert!(
            matches!(stop, Err(StopReason::UnlikelyReturn { .. })),
            "{stop:?}"
        );
    }

    #[test]
    fn adaptive_stops_once_the_usual_return_time_has_passed() {
        let e = Economics {
            lambda_per_sec: 0.0,
            ..Economics::default()
        };
        let mut prior = ReturnPrior::default();
        for _ in 0..500 {
            prior.observe_turn(2);
            prior.observe_return(2, 400_000);
        }
        let at = |idle_ms| GapView {
            idle_ms,
            ..view(1, &[])
        };
        assert!(decide(Policy::Adaptive, &e, &prior, &at(240_000)).is_ok());
        assert!(decide(Policy::Adaptive, &e, &prior, &at(2_400_000)).is_err());
    }

    #[test]
    fn the_prior_survives_json_and_garbage_is_empty() {
        let mut prior = ReturnPrior::default();
        prior.observe_turn(2);
        prior.observe_return(2, 90_000);
        assert_eq!(ReturnPrior::from_json(&prior.to_json()), prior);
        assert_eq!(ReturnPrior::from_json("nope"), ReturnPrior::default());
    }

    #[test]
    fn an_empty_prior_is_uncertain_not_confident() {
        let prior = ReturnPrior::default();
        assert!((prior.return_probability(1) - 0.5).abs() < 1e-9);
        let (a, b) = (prior.gap_cdf(60_000.0), prior.gap_cdf(3_600_000.0));
        assert!(0.0 < a && a < b && b < 1.0);
    }
}
