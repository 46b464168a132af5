//! The stored forms both stores share: a conversation's settings as the
//! JSON text they keep (the core decides with `Settings`; how they rest on
//! disk is storage's concern, written once here for SQLite and PostgreSQL).

use serde_json::Value;
use warming_core::{IntervalLimits, Policy, Settings};

/// Parses stored settings tolerantly: anything missing, mistyped or
/// unparsable falls back to the default for that field, never an error,
/// because a damaged row must not stop the service from starting.
///
/// ```
/// use warming_core::{IntervalLimits, Settings};
/// use warming_service::stored::settings_from_json;
/// let limits = IntervalLimits::default();
/// let s = settings_from_json(r#"{"enabled":true}"#, &limits);
/// assert!(s.enabled);
/// assert_eq!(s.interval_ms, 240_000);
/// assert_eq!(settings_from_json("garbage", &limits), Settings::defaults(&limits));
/// ```
#[must_use]
pub fn settings_from_json(raw: &str, limits: &IntervalLimits) -> Settings {
    let defaults = Settings::defaults(limits);
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(raw) else {
        return defaults;
    };
    let enabled = map
        .get("enabled")
        .and_then(Value::as_bool)
        .unwrap_or(defaults.enabled);
    let interval = map
        .get("intervalMs")
        .and_then(Value::as_f64)
        .map(|ms| limits.clamp(ms));
    let policy = map
        .get("policy")
        .and_then(Value::as_str)
        .and_then(Policy::parse);
    let enrolled = map
        .get("enrolled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Settings {
        enabled,
        interval_ms: interval.unwrap_or(defaults.interval_ms),
        interval_chosen: interval.is_some(),
        policy,
        enrolled,
    }
}

/// Serializes to the stable stored form: `enabled`, then `intervalMs`
/// only if chosen, `policy` only if set, `enrolled` only if true.
///
/// ```
/// use warming_core::{IntervalLimits, Policy, Settings};
/// use warming_service::stored::settings_to_json;
/// let s = Settings { enabled: true, interval_ms: 20_000, interval_chosen: true, ..Settings::defaults(&IntervalLimits::default()) };
/// assert_eq!(settings_to_json(&s), r#"{"enabled":true,"intervalMs":20000}"#);
/// let p = Settings { policy: Some(Policy::Pings(3)), ..s };
/// assert_eq!(settings_to_json(&p), r#"{"enabled":true,"intervalMs":20000,"policy":"pings:3"}"#);
/// let d = Settings { enabled: true, enrolled: true, ..Settings::defaults(&IntervalLimits::default()) };
/// assert_eq!(settings_to_json(&d), r#"{"enabled":true,"enrolled":true}"#);
/// ```
#[must_use]
pub fn settings_to_json(settings: &Settings) -> String {
    let mut out = format!(r#"{{"enabled":{}"#, settings.enabled);
    if settings.interval_chosen {
        out.push_str(&format!(r#","intervalMs":{}"#, settings.interval_ms));
    }
    if let Some(policy) = settings.policy {
        out.push_str(&format!(r#","policy":"{policy}""#));
    }
    if settings.enrolled {
        out.push_str(r#","enrolled":true"#);
    }
    out.push('}');
    out
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
                    interval_ms: 30_000,
                    interval_chosen: true,
                    ..Settings::defaults(&limits)
                },
            ),
            (
                r#"{"enabled":true,"intervalMs":"soon"}"#,
                Settings {
                    enabled: true,
                    ..Settings::defaults(&limits)
                },
            ),
            (
                r#"{"enabled":true,"intervalMs":1}"#,
                Settings {
                    enabled: true,
                    interval_ms: 10_000,
                    interval_chosen: true,
                    ..Settings::defaults(&limits)
                },
            ),
            (
                r#"{"enabled":true,"intervalMs":-3}"#,
                Settings {
                    enabled: true,
                    interval_ms: 10_000,
                    interval_chosen: true,
                    ..Settings::defaults(&limits)
                },
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(settings_from_json(raw, &limits), want, "{raw:?}");
        }
    }

    #[test]
    fn serialized_settings_parse_back_to_themselves() {
        let limits = IntervalLimits::default();
        for enabled in [false, true] {
            for interval_ms in [10_000, 240_000, 3_540_000] {
                for enrolled in [false, true] {
                    let s = Settings {
                        enabled,
                        interval_ms,
                        interval_chosen: true,
                        policy: Some(Policy::Adaptive),
                        enrolled,
                    };
                    assert_eq!(settings_from_json(&settings_to_json(&s), &limits), s);
                }
            }
        }
        let unchosen = Settings::defaults(&limits);
        assert_eq!(
            settings_from_json(&settings_to_json(&unchosen), &limits),
            unchosen
        );
    }
}
