//! Per-conversation settings, interval clamping and the stored settings codec.

use serde_json::Value;

use crate::Policy;

/// Interval of a conversation never configured: 4 minutes, inside Anthropic's
/// 5-minute cache TTL with a margin for the warm's own latency.
pub const DEFAULT_INTERVAL_MS: u64 = 240_000;

/// The bounds every interval is clamped into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalLimits {
    /// Shortest interval accepted, in ms.
    pub min_ms: u64,
    /// Longest interval accepted, in ms.
    pub max_ms: u64,
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
        (rounded as u64).clamp(self.min_ms, self.max_ms)
    }
}

/// What a user decides for one conversation: the durable part of its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Whether warming is on. Off by default: warming is opt-in.
    pub enabled: bool,
    /// Time between warms, in ms, always within the configured limits.
    pub interval_ms: u64,
    /// This conversation's policy; `None` follows the server's.
    pub policy: Option<Policy>,
}

impl Settings {
    /// Settings of a conversation never configured: off, 4 minutes (clamped
    /// into `limits`).
    #[must_use]
    pub fn defaults(limits: &IntervalLimits) -> Self {
        Self {
            enabled: false,
            interval_ms: DEFAULT_INTERVAL_MS.clamp(limits.min_ms, limits.max_ms),
            policy: None,
        }
    }

    /// Parses stored settings tolerantly: anything missing, mistyped or
    /// unparsable falls back to the default for that field, never an error,
    /// because a damaged row must not stop the service from starting.
    ///
    /// ```
    /// use warming_core::{IntervalLimits, Settings};
    /// let limits = IntervalLimits::default();
    /// let s = Settings::parse_json(r#"{"enabled":true}"#, &limits);
    /// assert!(s.enabled);
    /// assert_eq!(s.interval_ms, 240_000);
    /// assert_eq!(Settings::parse_json("garbage", &limits), Settings::defaults(&limits));
    /// ```
    #[must_use]
    pub fn parse_json(raw: &str, limits: &IntervalLimits) -> Self {
        let defaults = Self::defaults(limits);
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(raw) else {
            return defaults;
        };
        let enabled = map
            .get("enabled")
            .and_then(Value::as_bool)
            .unwrap_or(defaults.enabled);
        let interval_ms = map
            .get("intervalMs")
            .and_then(Value::as_f64)
            .map_or(defaults.interval_ms, |ms| limits.clamp(ms));
        let policy = map
            .get("policy")
            .and_then(Value::as_str)
            .and_then(Policy::parse);
        Self {
            enabled,
            interval_ms,
            policy,
        }
    }

    /// Serializes to the stable stored form `{"enabled":..,"intervalMs":..}`.
    ///
    /// ```
    /// use warming_core::Settings;
    /// use warming_core::Policy;
    /// let s = Settings { enabled: true, interval_ms: 20_000, policy: None };
    /// assert_eq!(s.to_json(), r#"{"enabled":true,"intervalMs":20000}"#);
    /// let p = Settings { policy: Some(Policy::Pings(3)), ..s };
    /// assert_eq!(p.to_json(), r#"{"enabled":true,"intervalMs":20000,"policy":"pings:3"}"#);
    /// ```
    #[must_use]
    pub fn to_json(&self) -> String {
        match self.policy {
            None => format!(
                r#"{{"enabled":{},"intervalMs":{}}}"#,
                self.enabled, self.interval_ms
            ),
            Some(policy) => format!(
                r#"{{"enabled":{},"intervalMs":{},"policy":"{policy}"}}"#,
                self.enabled, self.interval_ms
            ),
        }
    }
}

/// A requested change of settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SettingsChange {
    /// Turn warming on or off.
    pub enabled: Option<bool>,
    /// New interval in ms, clamped by [`IntervalLimits::clamp`].
    pub interval_ms: Option<f64>,
    /// New policy; `Some(None)` returns to the server's.
    pub policy: Option<Option<Policy>>,
}

impl SettingsChange {
    /// Applies the change on top of `base`.
    #[must_use]
    pub fn apply(&self, base: Settings, limits: &IntervalLimits) -> Settings {
        Settings {
            enabled: self.enabled.unwrap_or(base.enabled),
            interval_ms: self
                .interval_ms
                .map_or(base.interval_ms, |ms| limits.clamp(ms)),
            policy: self.policy.unwrap_or(base.policy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_tolerant_field_by_field() {
        let limits = IntervalLimits::default();
        let cases = [
            ("", Settings::defaults(&limits)),
            ("[]", Settings::defaults(&limits)),
            ("null", Settings::defaults(&limits)),
            (
                r#"{"enabled":"yes","intervalMs":30000}"#,
                Settings {
                    enabled: false,
                    interval_ms: 30_000,
                    policy: None,
                },
            ),
            (
                r#"{"enabled":true,"intervalMs":"soon"}"#,
                Settings {
                    enabled: true,
                    interval_ms: 240_000,
                    policy: None,
                },
            ),
            (
                r#"{"enabled":true,"intervalMs":1}"#,
                Settings {
                    enabled: true,
                    interval_ms: 10_000,
                    policy: None,
                },
            ),
            (
                r#"{"enabled":true,"intervalMs":-3}"#,
                Settings {
                    enabled: true,
                    interval_ms: 10_000,
                    policy: None,
                },
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(Settings::parse_json(raw, &limits), want, "{raw:?}");
        }
    }

    #[test]
    fn serialized_settings_parse_back_to_themselves() {
        let limits = IntervalLimits::default();
        for enabled in [false, true] {
            for interval_ms in [10_000, 240_000, 3_540_000] {
                let s = Settings {
                    enabled,
                    interval_ms,
                    policy: None,
                };
                assert_eq!(Settings::parse_json(&s.to_json(), &limits), s);
            }
        }
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
        assert_eq!((limits.min_ms, limits.max_ms), (20_000, 50_000));
        assert_eq!(Settings::defaults(&limits).interval_ms, 50_000);
    }
}
