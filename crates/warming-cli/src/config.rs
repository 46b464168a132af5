//! The whole app's validated configuration, owned by the binary: it hands
//! each part only what is its own (the core its `Config`, the provider
//! client, the proxy and the HTTP side their options, the stores theirs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use warming_core::IntervalLimits;

/// The fewest characters a `--token` may have.
pub const MIN_TOKEN_CHARS: usize = 12;

/// The session headers recognised by default, first present wins: the
/// common gateway header, then the ones coding agents send on every call
/// of a session (Claude Code's `x-claude-code-session-id`, Codex CLI's
/// `session-id`), so a session is one conversation and a new session a new
/// one. Claude Code's session is also read from its body
/// (`metadata.user_id`) when no header names it.
pub const SESSION_HEADERS: &[&str] = &["x-session-id", "x-claude-code-session-id", "session-id"];
use warming_service::Upstreams;
pub use warming_service::{ProviderKind, Secret};

/// Everything `warming serve` needs, already validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The SQLite file.
    pub db: PathBuf,
    /// Which provider API warms use.
    pub provider: ProviderKind,
    /// Base URL of the provider (or the webhook URL).
    pub upstream: String,
    /// Anthropic's base URL for the proxy (and warms of conversations proxied
    /// there); `None`: `upstream` if the provider is Anthropic, else the
    /// public API.
    pub anthropic_upstream: Option<String>,
    /// OpenAI's base URL for the proxy, likewise.
    pub openai_upstream: Option<String>,
    /// Google's Gemini API base URL for the proxy (`/proxy/gemini`) and the
    /// warms of conversations proxied there; `None`: Google's endpoint.
    pub gemini_upstream: Option<String>,
    /// Vertex AI's base URL for the proxy (`/proxy/vertex`) and its warms;
    /// `None`: Google's global endpoint, or a regional location's own.
    pub vertex_upstream: Option<String>,
    /// How long a proxied conversation's credentials are kept after its last
    /// request.
    pub proxy_credentials_ttl: Duration,
    /// Interval bounds.
    pub limits: IntervalLimits,
    /// Bearer token `/v1`, `/metrics`, the dashboard and (as
    /// `x-warming-token`) the proxy require, if any.
    pub token: Option<Secret>,
    /// Serve `/metrics` and the dashboard without the token.
    pub public_metrics: bool,
    /// Anthropic key for warms (`ANTHROPIC_API_KEY`).
    pub anthropic_key: Option<Secret>,
    /// OpenAI key for warms (`OPENAI_API_KEY`).
    pub openai_key: Option<Secret>,
    /// Gemini API key for warms (`GEMINI_API_KEY`, else `GOOGLE_API_KEY`,
    /// as Google's SDKs read it).
    pub gemini_key: Option<Secret>,
    /// Response header naming the backend that served a request.
    pub backend_header: String,
    /// Request header carrying the preferred backend on a warm.
    pub preferred_backend_header: String,
    /// Request headers naming a proxied conversation when
    /// `x-conversation-id` is absent (gateways' and agents' session
    /// headers); the first present wins. Default [`SESSION_HEADERS`].
    pub session_headers: Vec<String>,
    /// Longest a warm may take before it counts as failed.
    pub warm_timeout: Duration,
    /// Most warms in flight at once.
    pub warm_concurrency: usize,
    /// Most history rows kept per conversation.
    pub history_cap: usize,
    /// Bytes of hot template blocks kept in memory to build warms.
    pub template_cache_bytes: u64,
    /// Prices for the cost estimate in `/metrics`.
    pub pricing: warming_service::metrics::Pricing,
    /// The warming policy of conversations a person enabled that do not
    /// choose one (default `fixed`).
    pub policy: warming_core::Policy,
    /// The policy of conversations enrolled by proxy traffic rather than by
    /// a person (default `adaptive`).
    pub proxy_policy: warming_core::Policy,
    /// Whether every proxied conversation is enrolled (`--proxy-warming on`;
    /// default off: warming is opt-in).
    pub proxy_warming: bool,
    /// Whether the proxy may ask providers for their longer retention where
    /// a conversation's plan says it is cheaper (`--upgrade-cache auto`;
    /// default off).
    pub upgrade_cache: bool,
    /// Whether a conversation's explicit cache is deleted when warming of
    /// it ends (`--explicit-caches delete`; default: left to expire).
    pub delete_explicit_caches: bool,
    /// The OpenAI upstream is llama.cpp's server, asked about its slots
    /// (`--engine llama.cpp`; default: no engine port).
    pub engine_llama_cpp: bool,
    /// Where the engine saves prefixes, as this machine sees it
    /// (`--engine-save-dir`; default none: no saving).
    pub engine_save_dir: Option<PathBuf>,
    /// The most its saved prefixes may take, bytes (default 1 GB).
    pub engine_save_bytes: u64,
    /// What the engine turned out to support, found at start: every
    /// conversation's plan follows it.
    pub engine_support: warming_core::EngineSupport,
    /// The spend guard: how long an idle conversation is kept warm; zero
    /// for no limit (default 1 h).
    pub max_idle: Duration,
    /// How long a shutdown waits for requests in flight (proxied streams
    /// included) before cancelling them (default 10 s).
    pub shutdown_grace: Duration,
    /// Longest the proxy waits for an upstream's answer to begin (its
    /// status and headers), default 5 min; a stream may then run longer.
    pub proxy_first_byte_timeout: Duration,
    /// Largest request body the proxy forwards, bytes; `None` for each
    /// upstream's documented limit (`proxy::documented_body_limit`).
    pub proxy_max_body_bytes: Option<usize>,
    /// Most client connections open at once (default 1024); an eighth
    /// more (at least 8) are reserved for probes and token holders.
    pub max_connections: usize,
    /// Most connections one client address may hold (default 256).
    pub max_connections_per_client: usize,
    /// Longest a client may take to send a request's headers (default 10 s).
    pub header_read_timeout: Duration,
    /// Longest a client may take to send a request's body (default 30 s).
    pub body_read_timeout: Duration,
    /// Minimum cacheable tokens by model-name prefix, before the built-in
    /// table (`warming_core::MINIMUM_CACHEABLE_TOKENS`).
    pub min_cacheable_overrides: Vec<(String, u64)>,
    /// The least a hit must save, dollars, for a conversation to be warmed
    /// (`0`: any).
    pub min_saving: f64,
    /// The most warms may cost in a UTC day, server-wide, dollars (`0`: no
    /// cap).
    pub max_spend_per_day: f64,
    /// The most one conversation's warms may cost in a UTC day, dollars
    /// (`0`: no cap).
    pub max_spend_per_conversation_day: f64,
    /// A conversation with warming off and no input for this long leaves
    /// memory (it stays on disk); zero keeps all (default 1 h).
    pub evict_after: Duration,
    /// Prices, TTL and the value of time the policies weigh.
    pub economics: warming_core::Economics,
    /// The output limit of warms sent to Anthropic's API: 0 (the default;
    /// 1 for a model that refuses 0) or 1, for engines that generate a
    /// token whatever they are asked (llama.cpp's server), so records and
    /// costs say what happened.
    pub anthropic_warm_max_tokens: u8,
    /// The output limit of warms sent to OpenAI's API: 1 (the default; the
    /// API refuses 0) or 0, for engines that take it.
    pub openai_warm_max_tokens: u8,
    /// With several instances on one PostgreSQL database: how long an
    /// instance's hold on its conversations outlives its last renewal; a
    /// dead instance's conversations move to the others after it (default
    /// 10 s, well under an interval).
    pub lease: Duration,
    /// The base URL the other instances reach this one at (they forward
    /// calls for the conversations it holds); `None`: `http://` and the
    /// listening address.
    pub advertise_url: Option<String>,
}

impl ServerConfig {
    /// A configuration with every default, listening on `listen` and storing
    /// in `db`; handy for tests and embedding.
    #[must_use]
    pub fn new(listen: SocketAddr, db: PathBuf) -> Self {
        Self {
            listen,
            db,
            provider: ProviderKind::Anthropic,
            upstream: "https://api.anthropic.com".into(),
            anthropic_upstream: None,
            openai_upstream: None,
            gemini_upstream: None,
            vertex_upstream: None,
            proxy_credentials_ttl: Duration::from_secs(3600),
            limits: IntervalLimits::default(),
            token: None,
            public_metrics: false,
            anthropic_key: None,
            openai_key: None,
            gemini_key: None,
            backend_header: "x-backend-id".into(),
            preferred_backend_header: "x-preferred-backend".into(),
            session_headers: SESSION_HEADERS.iter().map(|h| (*h).to_owned()).collect(),
            warm_timeout: Duration::from_secs(30),
            warm_concurrency: 64,
            history_cap: 1_000,
            template_cache_bytes: 64 << 20,
            pricing: warming_service::metrics::Pricing::default(),
            policy: warming_core::Policy::Fixed,
            proxy_policy: warming_core::Policy::Adaptive,
            proxy_warming: false,
            upgrade_cache: false,
            delete_explicit_caches: false,
            engine_llama_cpp: false,
            engine_save_dir: None,
            engine_save_bytes: 1_024_000_000,
            engine_support: warming_core::EngineSupport::None,
            max_idle: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(10),
            proxy_first_byte_timeout: Duration::from_secs(300),
            proxy_max_body_bytes: None,
            max_connections: 1024,
            max_connections_per_client: 256,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            min_cacheable_overrides: Vec::new(),
            min_saving: 0.0,
            max_spend_per_day: 0.0,
            max_spend_per_conversation_day: 0.0,
            evict_after: Duration::from_secs(3600),
            economics: warming_core::Economics::default(),
            anthropic_warm_max_tokens: 0,
            openai_warm_max_tokens: 1,
            lease: Duration::from_secs(10),
            advertise_url: None,
        }
    }

    /// Where each provider API is reached, from `--upstream`,
    /// `--anthropic-upstream` and `--openai-upstream`.
    #[must_use]
    pub fn upstreams(&self) -> Upstreams {
        Upstreams::resolve(
            self.provider,
            &self.upstream,
            self.anthropic_upstream.as_deref(),
            self.openai_upstream.as_deref(),
            self.gemini_upstream.as_deref(),
            self.vertex_upstream.as_deref(),
        )
    }

    /// The provider client's part.
    #[must_use]
    pub fn provider_options(&self) -> warming_provider::ProviderOptions {
        warming_provider::ProviderOptions {
            upstreams: self.upstreams(),
            anthropic_key: self.anthropic_key.clone(),
            openai_key: self.openai_key.clone(),
            gemini_key: self.gemini_key.clone(),
            backend_header: self.backend_header.clone(),
            preferred_backend_header: self.preferred_backend_header.clone(),
            warm_timeout: self.warm_timeout,
            anthropic_warm_max_tokens: self.anthropic_warm_max_tokens,
            openai_warm_max_tokens: self.openai_warm_max_tokens,
        }
    }

    /// The engine adapter's part, when `--engine llama.cpp` is set: the
    /// OpenAI upstream is the engine.
    #[must_use]
    pub fn engine_options(&self) -> Option<warming_provider::LlamaCppOptions> {
        self.engine_llama_cpp
            .then(|| warming_provider::LlamaCppOptions {
                base: self.upstreams().openai.url,
                save_dir: self.engine_save_dir.clone(),
                save_budget_bytes: self.engine_save_bytes,
                timeout: self.warm_timeout,
            })
    }

    /// The proxy's part.
    #[must_use]
    pub fn proxy_options(&self) -> warming_transport::proxy::ProxyOptions {
        warming_transport::proxy::ProxyOptions {
            upstreams: self.upstreams(),
            enroll_all: self.proxy_warming,
            first_byte_timeout: self.proxy_first_byte_timeout,
            max_body_bytes: self.proxy_max_body_bytes,
            backend_header: self.backend_header.clone(),
            preferred_backend_header: self.preferred_backend_header.clone(),
            session_headers: self.session_headers.clone(),
        }
    }

    /// The HTTP side's part.
    #[must_use]
    pub fn http_options(&self) -> warming_transport::HttpOptions {
        warming_transport::HttpOptions {
            token: self.token.clone(),
            public_metrics: self.public_metrics,
            limits: self.limits,
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            shutdown_grace: self.shutdown_grace,
            // A peer answers a forwarded call as fast as a local one; a
            // dead peer must not hold the caller longer than a lease would.
            peer_timeout: self.warm_timeout + self.lease,
        }
    }

    /// The engine's configuration: limits, policies, the idle cap and the
    /// economics, from the service's.
    ///
    /// # Errors
    /// The engine's builder's refusal (a spend cap or price that is not a
    /// number, say).
    pub fn core_config(&self) -> Result<warming_core::Config, warming_core::ConfigError> {
        warming_core::Config::builder()
            .engine_support(self.engine_support)
            .limits(self.limits)
            .policy(self.policy)
            .enrolled_policy(self.proxy_policy)
            .max_idle((!self.max_idle.is_zero()).then_some(self.max_idle))
            .economics(self.economics)
            .min_cacheable_overrides(self.min_cacheable_overrides.clone())
            .price_overrides(self.pricing.overrides())
            .list_prices(warming_service::pricing::list())
            .self_hosted(self.pricing.self_hosted)
            .min_saving(self.min_saving)
            .max_spend_per_day(self.max_spend_per_day)
            .max_spend_per_conversation_day(self.max_spend_per_conversation_day)
            // Both stores keep template bodies (read back for each warm);
            // memory keeps what decides.
            .detach_templates(true)
            .upgrade_cache(self.upgrade_cache)
            .build()
    }

    /// Refuses a configuration that would expose the API unauthenticated.
    ///
    /// # Errors
    /// A message naming the problem, for the operator.
    pub fn validate(&self) -> Result<(), String> {
        self.core_config().map_err(|e| e.to_string())?;
        if !self.listen.ip().is_loopback() && self.token.is_none() {
            return Err(format!(
                "refusing to listen on {} without a token: anyone who can reach it could \
                 control warming. Set --token (or WARMING_TOKEN), or listen on 127.0.0.1",
                self.listen
            ));
        }
        if self.engine_save_dir.is_some() && !self.engine_llama_cpp {
            return Err(
                "--engine-save-dir needs --engine llama.cpp: saving is the engine's".into(),
            );
        }
        if self.token.as_ref().is_some_and(|t| t.expose().is_empty()) {
            return Err("the token is empty".into());
        }
        for (name, url) in [
            ("upstream", Some(&self.upstream)),
            ("anthropic-upstream", self.anthropic_upstream.as_ref()),
            ("openai-upstream", self.openai_upstream.as_ref()),
            ("gemini-upstream", self.gemini_upstream.as_ref()),
            ("vertex-upstream", self.vertex_upstream.as_ref()),
        ] {
            if let Some(url) =
                url.filter(|u| !(u.starts_with("http://") || u.starts_with("https://")))
            {
                return Err(format!("{name} {url:?} is not an http(s) URL"));
            }
        }
        if self
            .token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            return Err("the token is blank".into());
        }
        if let Some(token) = &self.token {
            let length = token.expose().chars().count();
            if length < MIN_TOKEN_CHARS {
                return Err(format!(
                    "the token has {length} characters: use at least {MIN_TOKEN_CHARS} (for \
                     example `openssl rand -hex 16`), a short one is guessed"
                ));
            }
        }
        if self.max_connections == 0 {
            return Err("max-connections must be at least 1".into());
        }
        if self.max_connections_per_client == 0 {
            return Err("max-connections-per-client must be at least 1".into());
        }
        if self.warm_concurrency == 0 {
            return Err("warm concurrency must be at least 1".into());
        }
        Ok(())
    }
}
