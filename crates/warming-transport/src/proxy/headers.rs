//! Which headers cross the proxy: end-to-end ones both ways, never a
//! hop's own, and the credentials warms may reuse.

use axum::http::HeaderMap;
use warming_service::{Credentials, ProviderKind, Secret};

/// Headers that belong to one hop, never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Names of headers listed in `Connection`, which are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect()
}

/// The headers to pass on: all but hop-by-hop ones, those `Connection`
/// lists, and `extra_drop`.
pub(super) fn end_to_end(headers: &HeaderMap, extra_drop: &[&str]) -> HeaderMap {
    let listed = connection_listed(headers);
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || extra_drop.contains(&n) || listed.iter().any(|l| l == n) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The credentials of a proxied turn, kept for its warms. `authorization`
/// is left out when it carries warming's own token, not a provider key.
/// A Gemini key sent in the query instead (`?key=`, which Google's API
/// takes too) is kept as the `x-goog-api-key` header its warms send.
pub(super) fn credentials(
    kind: ProviderKind,
    headers: &HeaderMap,
    query: Option<&str>,
    skip_authorization: bool,
) -> Credentials {
    let mut kept: Vec<(String, Secret)> = CREDENTIAL_HEADERS
        .iter()
        .filter(|name| !(skip_authorization && **name == "authorization"))
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), Secret::new(value)))
        })
        .collect();
    if kind == ProviderKind::Gemini && !kept.iter().any(|(name, _)| name == "x-goog-api-key") {
        let key = crate::query::query_value(query, "key").filter(|key| !key.is_empty());
        if let Some(key) = key {
            kept.push(("x-goog-api-key".to_owned(), Secret::new(key)));
        }
    }
    Credentials {
        kind,
        headers: kept,
    }
}

/// Request headers warms may reuse (credentials and API selection).
const CREDENTIAL_HEADERS: &[&str] = &[
    "x-api-key",
    "authorization",
    "anthropic-version",
    "anthropic-beta",
    "openai-organization",
    "openai-project",
    // Google's Gemini API key.
    "x-goog-api-key",
];

/// Request header that names a conversation instead of the derived id.
pub(super) const CONVERSATION_HEADER: &str = "x-conversation-id";

/// Request header turning warming on or off for the proxied conversation.
pub(super) const WARMING_HEADER: &str = "x-warming";

/// Request header choosing its interval, in seconds.
pub(super) const WARMING_INTERVAL_HEADER: &str = "x-warming-interval";
