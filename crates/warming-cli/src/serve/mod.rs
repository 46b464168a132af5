//! `warming serve`: flags > environment > config file > defaults.
//!
//! - `args.rs`: the flags; `file.rs`: the config file; `paths.rs`: default
//!   locations; here: merging them into the `ServerConfig`.

mod args;
mod file;
mod paths;

pub use args::{OnOff, ServeArgs};
use file::{read_file, FileConfig};
use paths::{default_config, default_db};

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{ProviderKind, Secret, ServerConfig};
use warming_core::IntervalLimits;
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
    config.gemini_upstream = args.gemini_upstream.or(file.gemini_upstream);
    config.vertex_upstream = args.vertex_upstream.or(file.vertex_upstream);
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
    config.gemini_key = env_secret("GEMINI_API_KEY").or_else(|| env_secret("GOOGLE_API_KEY"));
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
    if let Some(end) = args.explicit_caches.or(file.explicit_caches) {
        config.delete_explicit_caches = end == args::ExpireDelete::Delete;
    }
    if let Some(engine) = args.engine.or(file.engine) {
        config.engine_llama_cpp = engine == args::EngineKind::LlamaCpp;
        // The deployment's own engine: its money is engine time.
        config.pricing.self_hosted = true;
    }
    if let Some(dir) = args.engine_save_dir.or(file.engine_save_dir) {
        config.engine_save_dir = Some(dir);
    }
    if let Some(mb) = args.engine_save_mb.or(file.engine_save_mb) {
        config.engine_save_bytes = mb.saturating_mul(1_000_000);
    }
    if let Some(auto_off) = args.upgrade_cache.or(file.upgrade_cache) {
        config.upgrade_cache = auto_off == args::AutoOff::Auto;
    }
    // `0` (none) is a duration for these keys, not an error.
    let duration_or_zero = |key: &str, text: String| match text.trim() {
        "0" => Ok(Duration::ZERO),
        text => crate::client::parse_duration(text)
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
        let readme = include_str!("../../../../README.md");
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
