//! The upstream path of a proxied request, kept below the upstream's base.

use crate::http::ApiError;

/// The path below `/proxy/{provider}/` exactly as sent (percent-encoding
/// kept, so `%3F` stays a character of the path and never becomes a query).
/// A dot segment, plain or encoded, or an encoded slash or backslash could
/// climb above the upstream's base path, so any is a 400.
pub(super) fn forwarded_path<'a>(uri_path: &'a str, provider: &str) -> Result<&'a str, ApiError> {
    let rest = uri_path
        .strip_prefix("/proxy/")
        .and_then(|p| p.strip_prefix(provider))
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or("");
    for segment in rest.split('/') {
        let lower = segment.to_ascii_lowercase();
        let decoded = lower.replace("%2e", ".");
        if decoded == "."
            || decoded == ".."
            || lower.contains("%2f")
            || lower.contains("%5c")
            || segment.contains('\\')
        {
            return Err(ApiError::bad_request(format!(
                "proxy path segment {segment:?} is refused: only paths below the upstream's \
                 base path are forwarded"
            )));
        }
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_below_the_upstream_base_and_keep_their_encoding() {
        let ok = |p: &str| forwarded_path(p, "anthropic").unwrap().to_owned();
        assert_eq!(ok("/proxy/anthropic/v1/messages"), "v1/messages");
        assert_eq!(
            ok("/proxy/anthropic/v1/messages%3Finjected=1"),
            "v1/messages%3Finjected=1"
        );
        assert_eq!(ok("/proxy/anthropic/v1/files/a..b"), "v1/files/a..b");
        for escape in [
            "/proxy/anthropic/v1/../../../admin",
            "/proxy/anthropic/%2e%2e/%2e%2e/admin",
            "/proxy/anthropic/v1/%2E./admin",
            "/proxy/anthropic/..%2f..%2fadmin",
            "/proxy/anthropic/v1/.",
            "/proxy/anthropic/..%5cadmin",
        ] {
            assert!(forwarded_path(escape, "anthropic").is_err(), "{escape}");
        }
    }
}
