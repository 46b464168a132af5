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

use std::fmt;

/// A rule for continuing to warm an idle conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Prices, the cache's TTL and the value of the user's time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Economics {
    /// Dollars per uncached input token. Default $3 per million.
    pub input_price: f64,
    /// Price of a cache write relative to input. Default 1.25 (Anthropic 5 min).
    pub write_multiplier: f64,
    /// Price of a cache read relative to input. Default 0.1.
    pub read_multiplier: f64,
    /// How long the provider keeps a prefix after its last use, ms. Default 5 min.
    pub ttl_ms: u64,
    /// Prefill speed, tokens per second: a miss makes the user wait for the
    /// prefix's prefill. Default 5 000.
    pub prefill_tokens_per_sec: f64,
    /// Dollars per second of the user's waiting (λ); 0 weighs tokens only.
    /// Default $0.01/s ($36 an hour).
    pub lambda_per_sec: f64,
    /// Prefix size assumed before any usage is known. Default 20 000 tokens.
    pub default_prefix_tokens: u64,
    /// Price of an output token relative to input. Default 5 (Claude's and
    /// most OpenAI models' ratio): a warm that must think pays for it.
    pub output_multiplier: f64,
}

impl Default for Economics {
    fn default() -> Self {
        Self {
            input_price: 3e-6,
            write_multiplier: 1.25,
            read_multiplier: 0.1,
            ttl_ms: 300_000,
            prefill_tokens_per_sec: 5_000.0,
            lambda_per_sec: 0.01,
            default_prefix_tokens: 20_000,
            output_multiplier: 5.0,
        }
    }
}

impl Economics {
    /// Dollars one warm of a `prefix`-token prefix costs (a cache read).
    #[must_use]
    pub fn warm_cost(&self, prefix: u64) -> f64 {
        self.read_multiplier * self.input_price * prefix as f64
    }

    /// Dollars `tokens` output tokens cost.
    #[must_use]
    pub fn output_cost(&self, tokens: u64) -> f64 {
        self.output_multiplier * self.input_price * tokens as f64
    }

    /// Dollars a returning turn loses to a miss: re-writing the prefix
    /// instead of reading it, and waiting for its prefill.
    #[must_use]
    pub fn miss_cost(&self, prefix: u64) -> f64 {
        let tokens =
            (self.write_multiplier - self.read_multiplier) * self.input_price * prefix as f64;
        let waiting = self.lambda_per_sec * prefix as f64 / self.prefill_tokens_per_sec.max(1.0);
        tokens + waiting
    }
}

/// Turn depths tracked apart; deeper turns share the last slot.
pub const DEPTHS: usize = 8;
/// Gap buckets of the prior: log-spaced, 1 s x 1.5^i.
const BUCKETS: usize = 40;

fn bucket_edge_ms(i: usize) -> f64 {
    1_000.0 * 1.5f64.powi(i as i32)
}

/// What warming has learned from every conversation: how often a turn at
/// each depth is followed by another, and how long users stay away before
/// they return. Learned online; the caller may persist it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReturnPrior {
    /// Turns settled, by depth (1-based, capped).
    pub turns: [u64; DEPTHS],
    /// Turns followed by another turn, by depth.
    pub returns: [u64; DEPTHS],
    /// Returns by gap bucket.
    pub gaps: [u64; BUCKETS],
}

impl Default for ReturnPrior {
    fn default() -> Self {
        Self {
            turns: [0; DEPTHS],
            returns: [0; DEPTHS],
            gaps: [0; BUCKETS],
        }
    }
}

fn depth_slot(depth: u32) -> usize {
    (depth.max(1) as usize - 1).min(DEPTHS - 1)
}

impl ReturnPrior {
    /// A turn at `depth` settled and its first TTL is over (the engine
    /// waits that long, so fresh turns do not read as users who left).
    pub fn observe_turn(&mut self, depth: u32) {
        self.turns[depth_slot(depth)] += 1;
    }

    /// The user came back `gap_ms` after a turn at `depth`.
    pub fn observe_return(&mut self, depth: u32, gap_ms: u64) {
        self.returns[depth_slot(depth)] += 1;
        let bucket = (0..BUCKETS)
            .find(|&i| (gap_ms as f64) < bucket_edge_ms(i + 1))
            .unwrap_or(BUCKETS - 1);
        self.gaps[bucket] += 1;
    }

    /// Chance that a turn at `depth` is followed by another: the observed
    /// rate with one pseudo-return and one pseudo-end (uniform prior).
    #[must_use]
    pub fn return_probability(&self, depth: u32) -> f64 {
        let slot = depth_slot(depth);
        // Depths with few turns borrow from all depths pooled.
        let pooled_turns: u64 = self.turns.iter().sum();
        let pooled_returns: u64 = self.returns.iter().sum();
        let pooled = (pooled_returns as f64 + 1.0) / (pooled_turns as f64 + 2.0);
        let (r, t) = (self.returns[slot] as f64, self.turns[slot] as f64);
        ((r + 2.0 * pooled) / (t + 2.0)).clamp(0.0, 1.0)
    }

    /// The prior as JSON, to persist it.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::json!({"turns": &self.turns[..], "returns": &self.returns[..], "gaps": &self.gaps[..]})
            .to_string()
    }

    /// A prior from [`to_json`](Self::to_json); anything unreadable gives an
    /// empty prior (it is relearned), never an error.
    #[must_use]
    pub fn from_json(raw: &str) -> Self {
        let value: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
        let mut prior = Self::default();
        let fill = |key: &str, out: &mut [u64]| {
            if let Some(items) = value.get(key).and_then(serde_json::Value::as_array) {
                for (slot, item) in out.iter_mut().zip(items) {
                    *slot = item.as_u64().unwrap_or(0);
                }
            }
        };
        fill("turns", &mut prior.turns);
        fill("returns", &mut prior.returns);
        fill("gaps", &mut prior.gaps);
        prior
    }

    /// Share of returns that came back within `t_ms`, with half a pseudo-count
    /// per bucket so an empty prior is log-uniform, not certain.
    #[must_use]
    pub fn gap_cdf(&self, t_ms: f64) -> f64 {
        let weight = |i: usize| self.gaps[i] as f64 + 0.5;
        let total: f64 = (0..BUCKETS).map(weight).sum();
        let mut below = 0.0;
        for i in 0..BUCKETS {
            let (lo, hi) = (bucket_edge_ms(i), bucket_edge_ms(i + 1));
            if t_ms >= hi {
                below += weight(i);
            } else {
                if t_ms > lo {
                    below += weight(i) * (t_ms / lo).ln() / (hi / lo).ln();
                }
                break;
            }
        }
        below / total
    }
}

/// Why a policy or a spend guard stopped warming.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StopReason {
    /// The spend guard: the conversation has been idle for the most time
    /// warming allows (`max_idle_ms`), under every policy.
    IdleCap {
        /// The cap, ms.
        max_idle_ms: u64,
    },
    /// `pings:N` sent its N warms in this gap.
    PingLimit(u32),
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
        write!(f, "; {RESTART_HINT}")
    }
}

impl StopReason {
    fn fmt_reason(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IdleCap { max_idle_ms } => write!(
                f,
                "idle for {}, the most warming keeps a conversation warm (--max-idle)",
                human_ms(*max_idle_ms)
            ),
            Self::PingLimit(1) => f.write_str("sent the 1 warm allowed per idle gap (pings:1)"),
            Self::PingLimit(n) => write!(f, "sent the {n} warms allowed per idle gap (pings:{n})"),
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
        Policy::Pings(n) => Err(StopReason::PingLimit(n)),
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
            Err(StopReason::PingLimit(2))
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
