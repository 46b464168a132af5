//! The flags of `warming serve` (each also read from `WARMING_<FLAG>`).

use std::path::PathBuf;

use warming_service::ProviderKind;

/// Flags of `warming serve`; each also reads `WARMING_<FLAG>`.
// These doc comments are the `--help` text, where a URL reads best bare.
#[allow(rustdoc::bare_urls)]
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on, `host:port` (a name such as localhost is
    /// resolved) [default: 127.0.0.1:8517].
    #[arg(long, env = "WARMING_LISTEN")]
    pub listen: Option<String>,
    /// SQLite database file [default: $XDG_DATA_HOME/warming/warming.db,
    /// else ~/.local/share/warming/warming.db, else ./warming.db].
    #[arg(long, env = "WARMING_DB")]
    pub db: Option<PathBuf>,
    /// TOML config file with any of these settings (keys as the flags, with
    /// `-` or `_`).
    #[arg(long, env = "WARMING_CONFIG")]
    pub config: Option<PathBuf>,
    /// Provider API warms use: anthropic, openai, gemini, vertex or webhook [default:
    /// anthropic].
    #[arg(long, env = "WARMING_PROVIDER")]
    pub provider: Option<ProviderKind>,
    /// Provider base URL (or webhook URL) [default: the provider's public API].
    #[arg(long, env = "WARMING_UPSTREAM")]
    pub upstream: Option<String>,
    /// Anthropic base URL for proxy mode [default: --upstream if the provider
    /// is anthropic, else https://api.anthropic.com].
    #[arg(long, env = "WARMING_ANTHROPIC_UPSTREAM")]
    pub anthropic_upstream: Option<String>,
    /// OpenAI base URL for proxy mode [default: --upstream if the provider is
    /// openai, else https://api.openai.com].
    #[arg(long, env = "WARMING_OPENAI_UPSTREAM")]
    pub openai_upstream: Option<String>,
    /// Gemini API base URL for proxy mode (`/proxy/gemini`) [default:
    /// https://generativelanguage.googleapis.com].
    #[arg(long, env = "WARMING_GEMINI_UPSTREAM")]
    pub gemini_upstream: Option<String>,
    /// Vertex AI base URL for proxy mode (`/proxy/vertex`) [default:
    /// https://aiplatform.googleapis.com, or https://LOCATION-aiplatform.googleapis.com
    /// for a regional location].
    #[arg(long, env = "WARMING_VERTEX_UPSTREAM")]
    pub vertex_upstream: Option<String>,
    /// How long a proxied conversation's credentials are kept in memory after
    /// its last request, ms [default: 3600000].
    #[arg(long, env = "WARMING_PROXY_CREDENTIALS_TTL_MS")]
    pub proxy_credentials_ttl_ms: Option<u64>,
    /// When to stop warming a conversation a person enabled: fixed, pings:N,
    /// breakeven or adaptive [default: fixed: every interval until a turn,
    /// close, disable or --max-idle].
    #[arg(long, env = "WARMING_POLICY")]
    pub policy: Option<String>,
    /// Enrol every proxied conversation in warming: on or off [default: off].
    /// A request's `x-warming: on|off` header decides for its conversation.
    #[arg(long, env = "WARMING_PROXY_WARMING")]
    pub proxy_warming: Option<OnOff>,
    /// Let the proxy ask providers for their longer retention (Anthropic's
    /// 1-hour cache, OpenAI's 24-hour retention) on a conversation's
    /// requests where that costs less than replays: auto or off
    /// [default: off: requests are never rewritten].
    #[arg(long, env = "WARMING_UPGRADE_CACHE")]
    pub upgrade_cache: Option<AutoOff>,
    /// What becomes of a conversation's explicit cache (Gemini's
    /// `cachedContents`) when warming of it ends (closed, or idle past
    /// --max-idle): expire (left to its last TTL, two intervals and a
    /// minute) or delete [default: expire].
    #[arg(long, env = "WARMING_EXPLICIT_CACHES")]
    pub explicit_caches: Option<ExpireDelete>,
    /// The OpenAI upstream is the deployment's own engine, asked before each
    /// timed warm whether the prefix is still resident (replayed only when
    /// it is not): llama.cpp (its server with --slots). Implies
    /// --self-hosted [default: none].
    #[arg(long, env = "WARMING_ENGINE")]
    pub engine: Option<EngineKind>,
    /// The engine's --slot-save-path, as this machine sees it: a resident
    /// prefix is saved there once the user is idle and restored before the
    /// next turn, instead of replays [default: none: residency checks only].
    #[arg(long, env = "WARMING_ENGINE_SAVE_DIR")]
    pub engine_save_dir: Option<std::path::PathBuf>,
    /// The most the engine's saved prefixes may take on disk, MB; the least
    /// recently used go first [default: 1024].
    #[arg(long, env = "WARMING_ENGINE_SAVE_MB")]
    pub engine_save_mb: Option<u64>,
    /// The policy of conversations enrolled by --proxy-warming [default: adaptive].
    #[arg(long, env = "WARMING_PROXY_POLICY")]
    pub proxy_policy: Option<String>,
    /// Spend guard: stop warming a conversation idle this long, under every
    /// policy (4m30s, 1h, 90s, plain seconds; 0 = never) [default: 1h].
    #[arg(long, env = "WARMING_MAX_IDLE")]
    pub max_idle: Option<String>,
    /// The provider's cache TTL, ms, for the policies and the cost estimate
    /// [default: 300000].
    #[arg(long, env = "WARMING_CACHE_TTL_MS")]
    pub cache_ttl_ms: Option<u64>,
    /// Dollars per million input tokens, for the policies [default: 3.0].
    #[arg(long, env = "WARMING_INPUT_PRICE_PER_MTOK")]
    pub input_price_per_mtok: Option<f64>,
    /// Prefill speed in tokens per second: how long a miss makes a user wait
    /// [default: 5000].
    #[arg(long, env = "WARMING_PREFILL_TOKENS_PER_SEC")]
    pub prefill_tokens_per_sec: Option<f64>,
    /// Dollars per second of a user's waiting, weighed by adaptive and
    /// breakeven; 0 weighs tokens only [default: 0.01].
    #[arg(long, env = "WARMING_LAMBDA")]
    pub lambda: Option<f64>,
    /// Shortest interval accepted, ms [default: 10000].
    #[arg(long, env = "WARMING_MIN_INTERVAL_MS")]
    pub min_interval_ms: Option<u64>,
    /// Longest interval accepted, ms [default: 3540000].
    #[arg(long, env = "WARMING_MAX_INTERVAL_MS")]
    pub max_interval_ms: Option<u64>,
    /// Token every call must carry (bearer on /v1, /metrics and the dashboard;
    /// x-warming-token on /proxy); required off loopback.
    #[arg(long, env = "WARMING_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Serve /metrics and the dashboard without the token.
    #[arg(long, env = "WARMING_PUBLIC_METRICS")]
    pub public_metrics: bool,
    /// The upstream is your own engine (llama.cpp, vLLM, SGLang): its
    /// tokens bill nobody, so money is shown as engine seconds (the time
    /// warms took, the prefill they saved) instead of dollars.
    #[arg(long, env = "WARMING_SELF_HOSTED")]
    pub self_hosted: bool,
    /// Response header naming the backend that served a request [default: x-backend-id].
    #[arg(long, env = "WARMING_BACKEND_HEADER")]
    pub backend_header: Option<String>,
    /// Request header carrying the preferred backend [default: x-preferred-backend].
    #[arg(long, env = "WARMING_PREFERRED_BACKEND_HEADER")]
    pub preferred_backend_header: Option<String>,
    /// The least a hit must save, in dollars, for a conversation to be
    /// warmed; a prefix whose miss costs less is not [default: 0, any].
    #[arg(long, env = "WARMING_MIN_SAVING")]
    pub min_saving: Option<f64>,
    /// The most warms may cost in a UTC day, server-wide, in dollars at
    /// each model's prices; reached, timed warms stop until the day turns
    /// [default: 0, no cap].
    #[arg(long, env = "WARMING_MAX_SPEND_PER_DAY")]
    pub max_spend_per_day: Option<f64>,
    /// The most one conversation's warms may cost in a UTC day, in dollars;
    /// reached, its timed warms stop until the day turns [default: 0, no cap].
    #[arg(long, env = "WARMING_MAX_SPEND_PER_CONVERSATION_DAY")]
    pub max_spend_per_conversation_day: Option<f64>,
    /// Request headers naming a proxied conversation when x-conversation-id
    /// is absent, first present wins (comma-separated); replaces the default
    /// list [default: x-session-id,x-claude-code-session-id,session-id].
    #[arg(long, env = "WARMING_SESSION_HEADERS", value_delimiter = ',')]
    pub session_headers: Option<Vec<String>>,
    /// Longest a warm may take, ms [default: 30000].
    #[arg(long, env = "WARMING_WARM_TIMEOUT_MS")]
    pub warm_timeout_ms: Option<u64>,
    /// Most warms in flight at once [default: 64].
    #[arg(long, env = "WARMING_WARM_CONCURRENCY")]
    pub warm_concurrency: Option<usize>,
    /// Most history rows kept per conversation [default: 1000].
    #[arg(long, env = "WARMING_HISTORY_CAP")]
    pub history_cap: Option<usize>,
    /// Memory for hot template blocks (system prompts, tools, messages)
    /// read back to build warms, MiB; template bodies are not otherwise
    /// kept in memory [default: 64].
    #[arg(long, env = "WARMING_TEMPLATE_CACHE_MB")]
    pub template_cache_mb: Option<u64>,
    /// How long a shutdown waits for requests in flight (proxied streams
    /// included) before cancelling them, ms [default: 10000].
    #[arg(long, env = "WARMING_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Longest the proxy waits for an upstream's answer to begin, ms; then
    /// a JSON 504 [default: 300000].
    #[arg(long, env = "WARMING_PROXY_FIRST_BYTE_TIMEOUT_MS")]
    pub proxy_first_byte_timeout_ms: Option<u64>,
    /// Largest request body the proxy forwards, MiB [default: each
    /// provider's documented limit: Anthropic 32, OpenAI 50].
    #[arg(long, env = "WARMING_PROXY_MAX_BODY_MB")]
    pub proxy_max_body_mb: Option<usize>,
    /// A conversation with warming off and no input for this long leaves
    /// memory; it stays on disk and comes back on its next call (4m30s,
    /// 1h, plain seconds; 0 = never) [default: 1h].
    #[arg(long, env = "WARMING_EVICT_AFTER")]
    pub evict_after: Option<String>,
    /// The output limit of warms sent to Anthropic's API, 0 or 1: 1 for an
    /// engine that generates a token whatever it is asked (llama.cpp's
    /// server) [default: 0].
    #[arg(long, env = "WARMING_ANTHROPIC_WARM_MAX_TOKENS", value_parser = clap::value_parser!(u8).range(0..=1))]
    pub anthropic_warm_max_tokens: Option<u8>,
    /// The output limit of warms sent to OpenAI's API, 0 or 1: 0 for an
    /// engine that takes it (OpenAI refuses 0) [default: 1].
    #[arg(long, env = "WARMING_OPENAI_WARM_MAX_TOKENS", value_parser = clap::value_parser!(u8).range(0..=1))]
    pub openai_warm_max_tokens: Option<u8>,
    /// With several instances on one PostgreSQL database: how long a dead
    /// instance's conversations wait before the others adopt them, ms
    /// [default: 10000].
    #[arg(long, env = "WARMING_LEASE_MS")]
    pub lease_ms: Option<u64>,
    /// The base URL the other instances on the same PostgreSQL database
    /// reach this one at [default: http:// and the listening address].
    #[arg(long, env = "WARMING_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Most client connections open at once [default: 1024]; an eighth
    /// more are reserved for /healthz, /readyz and callers with the token.
    #[arg(long, env = "WARMING_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most connections one client address may hold [default: 256]; past
    /// it, its own idlest connection is closed to make room.
    #[arg(long, env = "WARMING_MAX_CONNECTIONS_PER_CLIENT")]
    pub max_connections_per_client: Option<usize>,
    /// Longest a client may take to send a request's headers, ms [default: 10000].
    #[arg(long, env = "WARMING_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// Longest a client may take to send a request's body, ms [default: 30000].
    #[arg(long, env = "WARMING_BODY_READ_TIMEOUT_MS")]
    pub body_read_timeout_ms: Option<u64>,
}

/// `auto` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AutoOff {
    /// Decided per conversation, by price.
    Auto,
    /// Never.
    Off,
}

/// `expire` or `delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExpireDelete {
    /// Left to expire.
    Expire,
    /// Deleted at once.
    Delete,
}

/// The deployment's own engine behind the OpenAI upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
pub enum EngineKind {
    /// llama.cpp's server (`llama-server`, xllamacpp).
    #[value(name = "llama.cpp")]
    #[serde(rename = "llama.cpp")]
    LlamaCpp,
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}
