//! Durations as people write them (`4m30s`, `90s`, `1h`, `1500ms`, or
//! plain seconds), read the same by the CLI, the configuration and the
//! proxy's `x-warming-interval` header; and written back the same way.

/// Parses a human duration like `4m30s`, `90s`, `1h`, `1500ms` or a plain
/// number of seconds, into milliseconds.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a duration (try 4m30s, 90s, 1h or 1500ms)");
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return if seconds.is_finite() && seconds > 0.0 {
            Ok((seconds * 1000.0).round() as u64)
        } else {
            Err(bad())
        };
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        total = number
            .checked_mul(factor)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    if total == 0 {
        return Err(bad());
    }
    Ok(total)
}

/// Renders milliseconds as `4m30s`, `90ms`, `1h`.
#[must_use]
pub fn format_duration(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let seconds = ms / 1_000;
    let (h, m, s) = (seconds / 3_600, seconds % 3_600 / 60, seconds % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_people_write_them() {
        assert_eq!(parse_duration("4m30s"), Ok(270_000));
        assert_eq!(parse_duration("90s"), Ok(90_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert_eq!(parse_duration("1500ms"), Ok(1_500));
        assert_eq!(parse_duration("20"), Ok(20_000));
        assert_eq!(parse_duration("2.5"), Ok(2_500));
        for bad in ["", "soon", "4x", "m4", "-3", "0", "0s", "4m30", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn units_and_plain_seconds_read_alike() {
        assert_eq!(parse_duration("4m"), Ok(240_000));
        assert_eq!(parse_duration("0.5"), Ok(500));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("4 minutes").is_err());
    }

    #[test]
    fn durations_format_back() {
        assert_eq!(format_duration(270_000), "4m30s");
        assert_eq!(format_duration(3_600_000), "1h");
        assert_eq!(format_duration(999), "999ms");
        assert_eq!(format_duration(0), "0ms");
        assert_eq!(parse_duration(&format_duration(3_723_000)), Ok(3_723_000));
    }
}
