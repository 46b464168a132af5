//! `warming serve`: flags > environment > config file > defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use warming_core::IntervalLimits;
use warming_transport::{ProviderKind, Secret, ServerConfig};

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
    /// Provider API warms use: anthropic, openai or webhook [default: anthropic].
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

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// The config file: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    listen: Option<String>,
    db: Option<PathBuf>,
    provider: Option<String>,
    upstream: Option<String>,
    #[serde(alias = "anthropic_upstream")]
    anthropic_upstream: Option<String>,
    #[serde(alias = "openai_upstream")]
    openai_upstream: Option<String>,
    #[serde(alias = "proxy_credentials_ttl_ms")]
    proxy_credentials_ttl_ms: Option<u64>,
    #[serde(alias = "min_interval_ms")]
    min_interval_ms: Option<u64>,
    #[serde(alias = "max_interval_ms")]
    max_interval_ms: Option<u64>,
    token: Option<String>,
    #[serde(alias = "public_metrics")]
    public_metrics: Option<bool>,
    #[serde(alias = "self_hosted")]
    self_hosted: Option<bool>,
    #[serde(alias = "backend_header")]
    backend_header: Option<String>,
    #[serde(alias = "preferred_backend_header")]
    preferred_backend_header: Option<String>,
    #[serde(alias = "min_saving")]
    min_saving: Option<f64>,
    #[serde(alias = "max_spend_per_day")]
    max_spend_per_day: Option<f64>,
    #[serde(alias = "max_spend_per_conversation_day")]
    max_spend_per_conversation_day: Option<f64>,
    #[serde(alias = "session_headers")]
    session_headers: Option<Vec<String>>,
    #[serde(alias = "warm_timeout_ms")]
    warm_timeout_ms: Option<u64>,
    #[serde(alias = "warm_concurrency")]
    warm_concurrency: Option<usize>,
    #[serde(alias = "history_cap")]
    history_cap: Option<usize>,
    #[serde(alias = "template_cache_mb")]
    template_cache_mb: Option<u64>,
    #[serde(alias = "shutdown_grace_ms")]
    shutdown_grace_ms: Option<u64>,
    #[serde(alias = "proxy_first_byte_timeout_ms")]
    proxy_first_byte_timeout_ms: Option<u64>,
    #[serde(alias = "proxy_max_body_mb")]
    proxy_max_body_mb: Option<usize>,
    #[serde(alias = "max_connections")]
    max_connections: Option<usize>,
    #[serde(alias = "max_connections_per_client")]
    max_connections_per_client: Option<usize>,
    #[serde(alias = "lease_ms")]
    lease_ms: Option<u64>,
    #[serde(alias = "anthropic_warm_max_tokens")]
    anthropic_warm_max_tokens: Option<u8>,
    #[serde(alias = "openai_warm_max_tokens")]
    openai_warm_max_tokens: Option<u8>,
    #[serde(alias = "advertise_url")]
    advertise_url: Option<String>,
    #[serde(alias = "evict_after")]
    evict_after: Option<String>,
    #[serde(alias = "header_read_timeout_ms")]
    header_read_timeout_ms: Option<u64>,
    #[serde(alias = "body_read_timeout_ms")]
    body_read_timeout_ms: Option<u64>,
    /// Prices by model-name prefix, over the built-in list prices.
    prices: Option<std::collections::HashMap<String, PriceEntry>>,
    /// Minimum cacheable tokens by model-name prefix, over the built-in table.
    #[serde(alias = "min_cacheable_tokens")]
    min_cacheable_tokens: Option<std::collections::HashMap<String, u64>>,
    /// The provider's cache TTL, for the policies and the cost estimate.
    #[serde(alias = "cache_ttl_ms")]
    cache_ttl_ms: Option<u64>,
    policy: Option<String>,
    #[serde(alias = "proxy_warming")]
    proxy_warming: Option<OnOff>,
    #[serde(alias = "proxy_policy")]
    proxy_policy: Option<String>,
    #[serde(alias = "max_idle")]
    max_idle: Option<String>,
    lambda: Option<f64>,
    #[serde(alias = "input_price_per_mtok")]
    input_price_per_mtok: Option<f64>,
    #[serde(alias = "prefill_tokens_per_sec")]
    prefill_tokens_per_sec: Option<f64>,
}

/// A model's prices in the config: dollars per million input tokens alone
/// (the default multipliers), or each price.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PriceEntry {
    Input(f64),
    Each {
        input: f64,
        #[serde(alias = "cache-write-5m")]
        cache_write_5m: Option<f64>,
        #[serde(alias = "cache-write-1h")]
        cache_write_1h: Option<f64>,
        #[serde(alias = "cache-read")]
        cache_read: Option<f64>,
        output: Option<f64>,
    },
}

impl PriceEntry {
    /// The prices, or why they are not prices.
    fn prices(self, base: &warming_core::Economics) -> Result<warming_core::ModelPrices, String> {
        let prices = match self {
            Self::Input(input) => warming_core::ModelPrices::from_input(input, base),
            Self::Each {
                input,
                cache_write_5m,
                cache_write_1h,
                cache_read,
                output,
            } => {
                let default = warming_core::ModelPrices::from_input(input, base);
                warming_core::ModelPrices {
                    input,
                    cache_write_5m: cache_write_5m.unwrap_or(default.cache_write_5m),
                    cache_write_1h: cache_write_1h.unwrap_or(default.cache_write_1h),
                    cache_read: cache_read.unwrap_or(default.cache_read),
                    output: output.unwrap_or(default.output),
                }
            }
        };
        let all = [
            prices.input,
            prices.cache_write_5m,
            prices.cache_write_1h,
            prices.cache_read,
            prices.output,
        ];
        match all.iter().find(|p| !p.is_finite() || **p < 0.0) {
            Some(bad) => Err(format!("{bad} is not a price")),
            None => Ok(prices),
        }
    }
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))
}

/// The platform config file, if it exists: `$XDG_CONFIG_HOME/warming/config.toml`
/// or `~/.config/warming/config.toml`.
fn default_config() -> Option<PathBuf> {
    let path = xdg_dir("XDG_CONFIG_HOME", ".config")?.join("warming/config.toml");
    path.is_file().then_some(path)
}

/// An XDG base directory: the variable `var` if set, else `~/<under_home>`.
fn xdg_dir(var: &str, under_home: &str) -> Option<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    set(var)
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|home| PathBuf::from(home).join(under_home)))
}

/// Where the database lives when nobody says.
fn default_db() -> PathBuf {
    match xdg_dir("XDG_DATA_HOME", ".local/share") {
        Some(dir) => {
            let dir = dir.join("warming");
            if std::fs::create_dir_all(&dir).is_ok() {
                return dir.join("warming.db");
            }
            PathBuf::from("warming.db")
        }
        None => PathBuf::from("warming.db"),
    }
}

fn env_secret(name: &str) -> Option<Secret> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new)
}

/// `host:port` as an address: an IP as given, a name (`localhost`) resolved,
/// preferring IPv4 so `localhost` means 127.0.0.1.
fn resolve_listen(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("listen {text:?}: not a host:port address ({e})"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("listen {text:?}: the name resolves to no address"))
}

/// Merges flags/env, the config file and defaults into a server config.
///
/// # Errors
/// A message naming the setting and the problem.
pub fn resolve(args: ServeArgs) -> Result<ServerConfig, String> {
    let file = match args.config.clone().or_else(default_config) {
        Some(path) => read_file(&path)?,
        None => FileConfig::default(),
    };
    let provider = match (args.provider, file.provider) {
        (Some(p), _) => p,
        (None, Some(p)) => p.parse().map_err(|e| format!("config key provider: {e}"))?,
        (None, None) => ProviderKind::Anthropic,
    };
    let upstream = args
        .upstream
        .or(file.upstream)
        .or_else(|| provider.default_upstream().map(str::to_owned))
        .ok_or("the webhook provider needs --upstream (the webhook URL)")?;
    let listen = match args.listen.or(file.listen) {
        Some(text) => resolve_listen(&text)?,
        None => SocketAddr::from(([127, 0, 0, 1], 8517)),
    };
    let db = args.db.or(file.db).unwrap_or_else(default_db);
    // A new database may go in a folder that does not exist yet.
    if let Some(folder) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .map_err(|e| format!("db: cannot create the folder {}: {e}", folder.display()))?;
    }
    let defaults = IntervalLimits::default();
    let min = args
        .min_interval_ms
        .or(file.min_interval_ms)
        .unwrap_or(defaults.min_ms());
    let max = args
        .max_interval_ms
        .or(file.max_interval_ms)
        .unwrap_or(defaults.max_ms());
    if min == 0 || min > max {
        return Err(format!(
            "min-interval-ms ({min}) must be at least 1 and at most max-interval-ms ({max})"
        ));
    }
    let mut config = ServerConfig::new(listen, db);
    config.provider = provider;
    config.upstream = upstream;
    config.anthropic_upstream = args.anthropic_upstream.or(file.anthropic_upstream);
    config.openai_upstream = args.openai_upstream.or(file.openai_upstream);
    if let Some(ms) = args
        .proxy_credentials_ttl_ms
        .or(file.proxy_credentials_ttl_ms)
    {
        config.proxy_credentials_ttl = Duration::from_millis(ms);
    }
    config.limits = IntervalLimits::new(min, max);
    config.token = args.token.or(file.token).map(Secret::new);
    config.public_metrics = args.public_metrics || file.public_metrics.unwrap_or(false);
    config.pricing.self_hosted = args.self_hosted || file.self_hosted.unwrap_or(false);
    config.anthropic_key = env_secret("ANTHROPIC_API_KEY");
    config.openai_key = env_secret("OPENAI_API_KEY");
    if let Some(header) = args.backend_header.or(file.backend_header) {
        config.backend_header = header;
    }
    if let Some(header) = args
        .preferred_backend_header
        .or(file.preferred_backend_header)
    {
        config.preferred_backend_header = header;
    }
    if let Some(headers) = args.session_headers.or(file.session_headers) {
        config.session_headers = headers
            .into_iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
    }
    if let Some(ms) = args.warm_timeout_ms.or(file.warm_timeout_ms) {
        if ms == 0 {
            return Err("warm-timeout-ms must be at least 1: 0 would fail every warm".into());
        }
        config.warm_timeout = Duration::from_millis(ms);
    }
    if let Some(n) = args.warm_concurrency.or(file.warm_concurrency) {
        config.warm_concurrency = n;
    }
    if let Some(ms) = args.shutdown_grace_ms.or(file.shutdown_grace_ms) {
        config.shutdown_grace = Duration::from_millis(ms);
    }
    if let Some(mb) = args.proxy_max_body_mb.or(file.proxy_max_body_mb) {
        if mb == 0 || mb > 1024 {
            return Err("proxy-max-body-mb must be between 1 and 1024".into());
        }
        config.proxy_max_body_bytes = Some(mb * 1024 * 1024);
    }
    if let Some(ms) = args
        .proxy_first_byte_timeout_ms
        .or(file.proxy_first_byte_timeout_ms)
    {
        if ms == 0 {
            return Err("proxy-first-byte-timeout-ms must be at least 1".into());
        }
        config.proxy_first_byte_timeout = Duration::from_millis(ms);
    }
    if let Some(n) = args.max_connections.or(file.max_connections) {
        config.max_connections = n;
    }
    if let Some(n) = args
        .max_connections_per_client
        .or(file.max_connections_per_client)
    {
        config.max_connections_per_client = n;
    }
    for (key, value, slot) in [
        (
            "header-read-timeout-ms",
            args.header_read_timeout_ms.or(file.header_read_timeout_ms),
            &mut config.header_read_timeout,
        ),
        (
            "body-read-timeout-ms",
            args.body_read_timeout_ms.or(file.body_read_timeout_ms),
            &mut config.body_read_timeout,
        ),
    ] {
        match value {
            Some(0) => return Err(format!("{key} must be at least 1")),
            Some(ms) => *slot = Duration::from_millis(ms),
            None => {}
        }
    }
    if let Some(n) = args.history_cap.or(file.history_cap) {
        config.history_cap = n.max(1);
    }
    for (flag, given, slot) in [
        (
            "anthropic-warm-max-tokens",
            args.anthropic_warm_max_tokens
                .or(file.anthropic_warm_max_tokens),
            &mut config.anthropic_warm_max_tokens,
        ),
        (
            "openai-warm-max-tokens",
            args.openai_warm_max_tokens.or(file.openai_warm_max_tokens),
            &mut config.openai_warm_max_tokens,
        ),
    ] {
        match given {
            Some(n @ 0..=1) => *slot = n,
            Some(n) => return Err(format!("{flag} must be 0 or 1, got {n}")),
            None => {}
        }
    }
    if let Some(ms) = args.lease_ms.or(file.lease_ms) {
        if ms < 100 {
            return Err("lease-ms must be at least 100".into());
        }
        config.lease = Duration::from_millis(ms);
    }
    config.advertise_url = args
        .advertise_url
        .or(file.advertise_url)
        .map(|url| url.trim_end_matches('/').to_owned());
    if let Some(mb) = args.template_cache_mb.or(file.template_cache_mb) {
        config.template_cache_bytes = mb.saturating_mul(1 << 20);
    }
    for (model, entry) in file.prices.into_iter().flatten() {
        let prices = entry
            .prices(&config.economics)
            .map_err(|e| format!("config key prices.{model}: {e}"))?;
        config.pricing.overrides.insert(model, prices);
    }
    if let Some(minimums) = file.min_cacheable_tokens {
        config.min_cacheable_overrides = minimums.into_iter().collect();
    }
    if let Some(ms) = args.cache_ttl_ms.or(file.cache_ttl_ms) {
        if ms == 0 {
            return Err("cache-ttl-ms must be at least 1".into());
        }
        config.economics.ttl_ms = ms;
    }
    let policy = |key: &str, name: String| {
        warming_core::Policy::parse(&name).ok_or_else(|| {
            format!("{key} {name:?}: expected fixed, pings:N (N >= 1), breakeven or adaptive")
        })
    };
    if let Some(name) = args.policy.or(file.policy) {
        config.policy = policy("policy", name)?;
    }
    if let Some(name) = args.proxy_policy.or(file.proxy_policy) {
        config.proxy_policy = policy("proxy-policy", name)?;
    }
    if let Some(on_off) = args.proxy_warming.or(file.proxy_warming) {
        config.proxy_warming = on_off == OnOff::On;
    }
    // `0` (none) is a duration for these keys, not an error.
    let duration_or_zero = |key: &str, text: String| match text.trim() {
        "0" => Ok(Duration::ZERO),
        text => warming_transport::client::parse_duration(text)
            .map(Duration::from_millis)
            .map_err(|e| format!("{key}: {e}")),
    };
    if let Some(text) = args.max_idle.or(file.max_idle) {
        config.max_idle = duration_or_zero("max-idle", text)?;
    }
    if let Some(text) = args.evict_after.or(file.evict_after) {
        config.evict_after = duration_or_zero("evict-after", text)?;
    }
    let number = |name: &str, value: Option<f64>| match value {
        Some(v) if !v.is_finite() || v < 0.0 => Err(format!("{name}: {v} must be a number >= 0")),
        other => Ok(other),
    };
    if let Some(lambda) = number("lambda", args.lambda.or(file.lambda))? {
        config.economics.lambda_per_sec = lambda;
    }
    if let Some(price) = number(
        "input-price-per-mtok",
        args.input_price_per_mtok.or(file.input_price_per_mtok),
    )? {
        config.economics.input_price = price / 1e6;
    }
    if let Some(dollars) = number("min-saving", args.min_saving.or(file.min_saving))? {
        config.min_saving = dollars;
    }
    if let Some(dollars) = number(
        "max-spend-per-day",
        args.max_spend_per_day.or(file.max_spend_per_day),
    )? {
        config.max_spend_per_day = dollars;
    }
    if let Some(dollars) = number(
        "max-spend-per-conversation-day",
        args.max_spend_per_conversation_day
            .or(file.max_spend_per_conversation_day),
    )? {
        config.max_spend_per_conversation_day = dollars;
    }
    if let Some(speed) = number(
        "prefill-tokens-per-sec",
        args.prefill_tokens_per_sec.or(file.prefill_tokens_per_sec),
    )? {
        config.economics.prefill_tokens_per_sec = speed.max(1.0);
    }
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn resolve_with(file: &str, flags: &[&str]) -> Result<ServerConfig, String> {
        let dir = std::env::temp_dir().join(format!("warming-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("{n}.toml"));
        std::fs::write(&path, file).unwrap();
        let mut argv = vec!["serve", "--config", path.to_str().unwrap()];
        argv.extend_from_slice(flags);
        resolve(Wrapper::try_parse_from(argv).unwrap().args)
    }

    #[test]
    fn the_readme_example_config_is_valid() {
        let readme = include_str!("../../../README.md");
        let example = readme
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("README has a toml example");
        let config = resolve_with(example, &[]).unwrap();
        assert_eq!(
            config
                .pricing
                .overrides
                .get("claude-sonnet-4-5")
                .map(|p| p.input),
            Some(3.0)
        );
        assert_eq!(config.limits.min_ms(), 10_000);
        let each = &config.pricing.overrides["my-gateway-model"];
        assert_eq!((each.input, each.cache_read, each.output), (2.0, 0.5, 8.0));
        // A price left out takes the default multiplier of the input price.
        assert_eq!(each.cache_write_1h, 4.0);
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = "listen = \"127.0.0.1:9000\"\nmin-interval-ms = 5000\n";
        assert_eq!(
            resolve_with("", &["--listen", "localhost:9200"])
                .unwrap()
                .listen,
            SocketAddr::from(([127, 0, 0, 1], 9200))
        );
        assert!(resolve_with("", &["--listen", "nowhere"])
            .unwrap_err()
            .contains("listen"));
        let config = resolve_with(file, &["--listen", "127.0.0.1:9100"]).unwrap();
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.limits.min_ms(), 5_000);
        assert_eq!(config.limits.max_ms(), 3_540_000);
    }

    #[test]
    fn bad_settings_name_the_key() {
        let err = resolve_with("intervall = 5\n", &[]).unwrap_err();
        assert!(err.contains("intervall"), "{err}");
        let err = resolve_with("provider = \"bedrock\"\n", &[]).unwrap_err();
        assert!(err.contains("provider"), "{err}");
        let err =
            resolve_with("", &["--min-interval-ms", "9", "--max-interval-ms", "5"]).unwrap_err();
        assert!(err.contains("min-interval-ms"), "{err}");
        let err = resolve_with("[prices]\nm = -1.0\n", &[]).unwrap_err();
        assert!(err.contains("prices.m"), "{err}");
        let err =
            resolve_with("[prices]\nm = { input = 1.0, cache-read = -1.0 }\n", &[]).unwrap_err();
        assert!(err.contains("prices.m"), "{err}");
        let err = resolve_with("", &["--max-idle", "soon"]).unwrap_err();
        assert!(err.contains("max-idle"), "{err}");
        let err = resolve_with("", &["--proxy-policy", "pings:0"]).unwrap_err();
        assert!(err.contains("proxy-policy"), "{err}");
        let err = resolve_with("", &["--warm-timeout-ms", "0"]).unwrap_err();
        assert!(err.contains("warm-timeout-ms"), "{err}");
    }

    #[test]
    fn opt_in_warms_by_default_and_every_setting_is_a_flag() {
        let config = resolve_with("", &[]).unwrap();
        assert_eq!(config.policy, warming_core::Policy::Fixed);
        assert_eq!(config.proxy_policy, warming_core::Policy::Adaptive);
        assert!(!config.proxy_warming);
        assert_eq!(config.max_idle, Duration::from_secs(3600));
        let config = resolve_with(
            "",
            &[
                "--max-idle",
                "30m",
                "--proxy-warming",
                "on",
                "--cache-ttl-ms",
                "3600000",
                "--input-price-per-mtok",
                "15",
                "--prefill-tokens-per-sec",
                "800",
            ],
        )
        .unwrap();
        assert_eq!(config.max_idle, Duration::from_secs(1800));
        assert!(config.proxy_warming);
        assert_eq!(config.economics.ttl_ms, 3_600_000);
        assert!((config.economics.input_price - 15e-6).abs() < 1e-12);
        assert!((config.economics.prefill_tokens_per_sec - 800.0).abs() < 1e-9);
        assert_eq!(
            resolve_with("", &["--max-idle", "0"]).unwrap().max_idle,
            Duration::ZERO
        );
    }
}
