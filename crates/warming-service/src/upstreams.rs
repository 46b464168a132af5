//! Where each provider API is reached: one rule, resolved once by the
//! binary and handed to the provider client (warms) and the proxy alike.

use crate::ProviderKind;

/// One provider API's base URL and the flag that set it, for messages that
/// must say how to change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The base URL, without a trailing slash.
    pub url: String,
    /// The command-line flag that sets it (`--anthropic-upstream`, say).
    pub flag: &'static str,
}

/// The base URLs warms and the proxy use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams {
    /// The provider warms of conversations not seen through the proxy speak.
    pub default_kind: ProviderKind,
    /// Its base URL (or the webhook's URL), without a trailing slash.
    pub default_url: String,
    /// Anthropic's API.
    pub anthropic: Upstream,
    /// OpenAI's API.
    pub openai: Upstream,
    /// Google's Gemini API.
    pub gemini: Upstream,
    /// Google Cloud's Vertex AI.
    pub vertex: Upstream,
}

/// Vertex AI's global endpoint ("Vertex AI locations": the `global`
/// location's host; a regional location `L` is served at
/// `https://L-aiplatform.googleapis.com`).
pub const VERTEX_GLOBAL: &str = "https://aiplatform.googleapis.com";

impl Upstream {
    /// Where a Vertex AI call about `resource` (a path naming
    /// `locations/{l}/`) goes: this upstream, unless it is the global
    /// default and the resource is regional, whose own host serves it.
    #[must_use]
    pub fn vertex_base(&self, resource: &str) -> String {
        let location = resource
            .split('/')
            .skip_while(|part| *part != "locations")
            .nth(1)
            .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        match location {
            Some(l) if self.url == VERTEX_GLOBAL && l != "global" => {
                format!("https://{l}-aiplatform.googleapis.com")
            }
            _ => self.url.clone(),
        }
    }
}

impl Upstreams {
    /// Resolves the flags: `--anthropic-upstream` / `--openai-upstream` if
    /// given, else `--upstream` if that API is the `--provider`, else the
    /// provider's public API.
    #[must_use]
    pub fn resolve(
        provider: ProviderKind,
        upstream: &str,
        anthropic: Option<&str>,
        openai: Option<&str>,
        gemini: Option<&str>,
        vertex: Option<&str>,
    ) -> Self {
        let one = |kind: ProviderKind, explicit: Option<&str>, own_flag: &'static str| {
            let (url, flag) = match explicit {
                Some(url) => (url, own_flag),
                None if kind == provider => (upstream, "--upstream"),
                None => (kind.default_upstream().unwrap_or(upstream), own_flag),
            };
            Upstream {
                url: url.trim_end_matches('/').to_owned(),
                flag,
            }
        };
        Self {
            default_kind: provider,
            default_url: upstream.trim_end_matches('/').to_owned(),
            anthropic: one(ProviderKind::Anthropic, anthropic, "--anthropic-upstream"),
            openai: one(ProviderKind::OpenAi, openai, "--openai-upstream"),
            gemini: one(ProviderKind::Gemini, gemini, "--gemini-upstream"),
            vertex: one(ProviderKind::Vertex, vertex, "--vertex-upstream"),
        }
    }

    /// The upstream of `kind`'s API; the default one for a webhook.
    #[must_use]
    pub fn of(&self, kind: ProviderKind) -> Upstream {
        match kind {
            ProviderKind::Anthropic => self.anthropic.clone(),
            ProviderKind::OpenAi => self.openai.clone(),
            ProviderKind::Gemini => self.gemini.clone(),
            ProviderKind::Vertex => self.vertex.clone(),
            ProviderKind::Webhook => Upstream {
                url: self.default_url.clone(),
                flag: "--upstream",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_flag_wins_then_the_providers_upstream_then_the_public_api() {
        let u = Upstreams::resolve(
            ProviderKind::Anthropic,
            "http://127.0.0.1:8518/",
            None,
            None,
            None,
            None,
        );
        assert_eq!(u.anthropic.url, "http://127.0.0.1:8518");
        assert_eq!(u.anthropic.flag, "--upstream");
        assert_eq!(u.openai.url, "https://api.openai.com");
        assert_eq!(u.openai.flag, "--openai-upstream");
        let u = Upstreams::resolve(
            ProviderKind::Anthropic,
            "http://a",
            Some("http://b/"),
            Some("http://c"),
            None,
            None,
        );
        assert_eq!(u.vertex.url, VERTEX_GLOBAL);
        let model = "projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash";
        assert_eq!(
            u.vertex.vertex_base(model),
            "https://us-central1-aiplatform.googleapis.com"
        );
        assert_eq!(
            u.vertex
                .vertex_base("projects/p/locations/global/cachedContents/1"),
            VERTEX_GLOBAL
        );
        let own = Upstream {
            url: "http://127.0.0.1:1".into(),
            flag: "--vertex-upstream",
        };
        assert_eq!(own.vertex_base(model), "http://127.0.0.1:1");
        assert_eq!(
            u.vertex
                .vertex_base("projects/p/locations/evil.example.com#/x"),
            VERTEX_GLOBAL
        );
        assert_eq!(u.gemini.url, "https://generativelanguage.googleapis.com");
        assert_eq!(u.anthropic.url, "http://b");
        assert_eq!(u.anthropic.flag, "--anthropic-upstream");
        assert_eq!(u.openai.url, "http://c");
        assert_eq!(u.of(ProviderKind::Webhook).url, "http://a");
    }
}
