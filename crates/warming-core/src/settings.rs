//! Per-conversation settings and interval clamping.

use crate::Policy;

/// Interval of a conversation never configured: 4 minutes, inside Anthropic's
/// 5-minute cache TTL with a margin for the warm's own latency.
pub const DEFAULT_INTERVAL_MS: u64 = 240_000;

/// Interval of a conversation that asked for the 1-hour cache and chose no
/// interval: 55 minutes, just inside the hour with the same kind of margin.
pub const LONG_TTL_INTERVAL_MS: u64 = 3_300_000;

/// The bounds every interval is clamped into: `1 <= min <= max`, kept by
/// [`new`](Self::new) (the only way to build one), so clamping never panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalLimits {
    min_ms: u64,
    max_ms: u64,
}

impl Default for IntervalLimits {
    /// 10 s to 59 min: anything shorter only burns money, anything longer
    /// outlives even the 1-hour cache tier.
    fn default() -> Self {
        Self {
            min_ms: 10_000,
            max_ms: 3_540_000,
        }
    }
}

impl IntervalLimits {
    /// Limits from two bounds, swapped if given in the wrong order and with a
    /// minimum of at least 1 ms, so clamping is always well defined.
    #[must_use]
    pub fn new(min_ms: u64, max_ms: u64) -> Self {
        let (min_ms, max_ms) = if min_ms <= max_ms {
            (min_ms, max_ms)
        } else {
            (max_ms, min_ms)
        };
        Self {
            min_ms: min_ms.max(1),
            max_ms: max_ms.max(1),
        }
    }

    /// Shortest interval accepted, ms.
    #[must_use]
    pub const fn min_ms(&self) -> u64 {
        self.min_ms
    }

    /// Longest interval accepted, ms.
    #[must_use]
    pub const fn max_ms(&self) -> u64 {
        self.max_ms
    }

    /// A whole number of ms brought within the bounds.
    #[must_use]
    pub fn clamp_ms(&self, ms: u64) -> u64 {
        ms.max(self.min_ms).min(self.max_ms)
    }

    /// Turns a requested interval into a usable one: non-finite or `<= 0`
    /// becomes the minimum; anything else is rounded and clamped.
    ///
    /// ```
    /// use warming_core::IntervalLimits;
    /// let limits = IntervalLimits::default();
    /// assert_eq!(limits.clamp(f64::NAN), 10_000);
    /// assert_eq!(limits.clamp(-5.0), 10_000);
    /// assert_eq!(limits.clamp(20_000.4), 20_000);
    /// assert_eq!(limits.clamp(1e12), 3_540_000);
    /// ```
    #[must_use]
    pub fn clamp(&self, requested_ms: f64) -> u64 {
        if !requested_ms.is_finite() || requested_ms <= 0.0 {
            return self.min_ms;
        }
        let rounded = requested_ms.round();
        // Casting a float above u64::MAX saturates, so the clamp below is exact.
        self.clamp_ms(rounded as u64)
    }

    /// How [`clamp`](Self::clamp) changed a requested interval; `None` when
    /// it was taken as given (rounding to a whole millisecond aside). Its
    /// [`Display`](std::fmt::Display) says it for the person who asked.
    ///
    /// ```
    /// use warming_core::{IntervalBound, IntervalLimits};
    /// let limits = IntervalLimits::default();
    /// assert_eq!(limits.clamped(20_000.0), None);
    /// let raised = limits.clamped(1_500.0).unwrap();
    /// assert_eq!((raised.applied_ms, raised.bound), (10_000, IntervalBound::Minimum));
    /// assert_eq!(raised.to_string(), "intervalMs clamped to 10000 (server minimum)");
    /// assert_eq!(limits.clamped(7.2e6).unwrap().to_string(), "intervalMs clamped to 3540000 (server maximum)");
    /// ```
    #[must_use]
    pub fn clamped(&self, requested_ms: f64) -> Option<IntervalClamped> {
        let applied_ms = self.clamp(requested_ms);
        let bound = if !requested_ms.is_finite() || requested_ms <= 0.0 {
            IntervalBound::NotPositive
        } else if requested_ms.round() < self.min_ms as f64 {
            IntervalBound::Minimum
        } else if requested_ms.round() > self.max_ms as f64 {
            IntervalBound::Maximum
        } else {
            return None;
        };
        Some(IntervalClamped {
            requested_ms,
            applied_ms,
            bound,
        })
    }
}

/// Why a requested interval was not taken as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntervalBound {
    /// Not a positive number: the minimum applies.
    NotPositive,
    /// Below the minimum.
    Minimum,
    /// Above the maximum.
    Maximum,
}

/// A requested interval and the one applied instead
/// ([`IntervalLimits::clamped`]).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct IntervalClamped {
    /// What was asked, ms.
    pub requested_ms: f64,
    /// What applies, ms.
    pub applied_ms: u64,
    /// Which bound it met.
    pub bound: IntervalBound,
}

impl std::fmt::Display for IntervalClamped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            requested_ms,
            applied_ms,
            bound,
        } = self;
        match bound {
            IntervalBound::NotPositive => write!(
                f,
                "intervalMs {requested_ms} is not a positive number: using {applied_ms} (server minimum)"
            ),
            IntervalBound::Minimum => {
                write!(f, "intervalMs clamped to {applied_ms} (server minimum)")
            }
            IntervalBound::Maximum => {
                write!(f, "intervalMs clamped to {applied_ms} (server maximum)")
            }
        }
    }
}

/// What a user decides for one conversation: the durable part of its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Whether warming is on. Off by default: warming is opt-in.
    pub enabled: bool,
    /// Time between warms, in ms, always within the configured limits. When
    /// not `interval_chosen`, the default, which a conversation on the 1-hour
    /// cache replaces with [`LONG_TTL_INTERVAL_MS`].
    pub interval_ms: u64,
    /// Whether someone chose `interval_ms`, rather than it being the default.
    pub interval_chosen: bool,
    /// This conversation's policy; `None` follows the server's (or, if
    /// `enrolled`, the server's policy for enrolled conversations).
    pub policy: Option<Policy>,
    /// Enabled by blanket enrolment (e.g. every proxied conversation), not by
    /// a person: such conversations follow the enrolled policy. A person's
    /// change of `enabled` clears it.
    pub enrolled: bool,
}

impl Settings {
    /// Settings of a conversation never configured: off, 4 minutes (clamped
    /// into `limits`).
    #[must_use]
    pub fn defaults(limits: &IntervalLimits) -> Self {
        Self {
            enabled: false,
            interval_ms: limits.clamp_ms(DEFAULT_INTERVAL_MS),
            interval_chosen: false,
            policy: None,
            enrolled: false,
        }
    }

    /// The interval in force for a conversation whose provider cache lives
    /// `long_ttl` (the 1-hour tier) or not.
    #[must_use]
    pub fn effective_interval_ms(&self, long_ttl: bool, limits: &IntervalLimits) -> u64 {
        if long_ttl && !self.interval_chosen {
            limits.clamp_ms(LONG_TTL_INTERVAL_MS)
        } else {
            self.interval_ms
        }
    }
}

/// A requested change of a conversation's policy.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PolicyChange {
    /// Leave it as it is.
    #[default]
    Keep,
    /// Follow the server's policy again.
    ServerDefault,
    /// Use this one.
    Set(Policy),
}

/// A requested change of settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SettingsChange {
    /// Turn warming on or off.
    pub enabled: Option<bool>,
    /// New interval in ms, clamped by [`IntervalLimits::clamp`].
    pub interval_ms: Option<f64>,
    /// New policy, or back to the server's.
    pub policy: PolicyChange,
}

impl SettingsChange {
    /// Applies a person's change on top of `base`. Turning warming on or
    /// off is a person's decision, so it ends blanket enrolment.
    #[must_use]
    pub fn apply(&self, base: Settings, limits: &IntervalLimits) -> Settings {
        Settings {
            enabled: self.enabled.unwrap_or(base.enabled),
            interval_ms: self
                .interval_ms
                .map_or(base.interval_ms, |ms| limits.clamp(ms)),
            interval_chosen: base.interval_chosen || self.interval_ms.is_some(),
            policy: match self.policy {
                PolicyChange::Keep => base.policy,
                PolicyChange::ServerDefault => None,
                PolicyChange::Set(policy) => Some(policy),
            },
            enrolled: base.enrolled && self.enabled.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_persons_toggle_ends_enrolment_and_a_chosen_interval_stays_chosen() {
        let limits = IntervalLimits::default();
        let enrolled = Settings {
            enabled: true,
            enrolled: true,
            ..Settings::defaults(&limits)
        };
        let interval = SettingsChange {
            interval_ms: Some(60_000.0),
            ..SettingsChange::default()
        }
        .apply(enrolled, &limits);
        assert!(interval.enrolled && interval.interval_chosen);
        let toggled = SettingsChange {
            enabled: Some(true),
            ..SettingsChange::default()
        }
        .apply(interval, &limits);
        assert!(!toggled.enrolled && toggled.interval_chosen);
        assert_eq!(toggled.interval_ms, 60_000);
    }

    #[test]
    fn the_one_hour_cache_gets_its_own_default_interval_unless_one_was_chosen() {
        let limits = IntervalLimits::default();
        let default = Settings::defaults(&limits);
        assert_eq!(default.effective_interval_ms(false, &limits), 240_000);
        assert_eq!(
            default.effective_interval_ms(true, &limits),
            LONG_TTL_INTERVAL_MS
        );
        let chosen = Settings {
            interval_ms: 120_000,
            interval_chosen: true,
            ..default
        };
        assert_eq!(chosen.effective_interval_ms(true, &limits), 120_000);
    }

    #[test]
    fn clamp_rounds_half_away_and_handles_infinities() {
        let limits = IntervalLimits::default();
        assert_eq!(limits.clamp(15_000.5), 15_001);
        assert_eq!(limits.clamp(f64::INFINITY), 10_000);
        assert_eq!(limits.clamp(f64::NEG_INFINITY), 10_000);
        assert_eq!(limits.clamp(0.0), 10_000);
        assert_eq!(limits.clamp(9_999.0), 10_000);
    }

    #[test]
    fn limits_given_backwards_are_swapped() {
        let limits = IntervalLimits::new(50_000, 20_000);
        assert_eq!((limits.min_ms(), limits.max_ms()), (20_000, 50_000));
        assert_eq!(Settings::defaults(&limits).interval_ms, 50_000);
    }
}
