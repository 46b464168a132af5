//! The config file (TOML): every key optional, unknown keys refused.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::args::OnOff;

/// The config file: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct FileConfig {
    pub(super) listen: Option<String>,
    pub(super) db: Option<PathBuf>,
    pub(super) provider: Option<String>,
    pub(super) upstream: Option<String>,
    #[serde(alias = "anthropic_upstream")]
    pub(super) anthropic_upstream: Option<String>,
    #[serde(alias = "openai_upstream")]
    pub(super) openai_upstream: Option<String>,
    #[serde(alias = "gemini_upstream")]
    pub(super) gemini_upstream: Option<String>,
    #[serde(alias = "vertex_upstream")]
    pub(super) vertex_upstream: Option<String>,
    #[serde(alias = "proxy_credentials_ttl_ms")]
    pub(super) proxy_credentials_ttl_ms: Option<u64>,
    #[serde(alias = "min_interval_ms")]
    pub(super) min_interval_ms: Option<u64>,
    #[serde(alias = "max_interval_ms")]
    pub(super) max_interval_ms: Option<u64>,
    pub(super) token: Option<String>,
    #[serde(alias = "public_metrics")]
    pub(super) public_metrics: Option<bool>,
    #[serde(alias = "self_hosted")]
    pub(super) self_hosted: Option<bool>,
    #[serde(alias = "backend_header")]
    pub(super) backend_header: Option<String>,
    #[serde(alias = "preferred_backend_header")]
    pub(super) preferred_backend_header: Option<String>,
    #[serde(alias = "min_saving")]
    pub(super) min_saving: Option<f64>,
    #[serde(alias = "max_spend_per_day")]
    pub(super) max_spend_per_day: Option<f64>,
    #[serde(alias = "max_spend_per_conversation_day")]
    pub(super) max_spend_per_conversation_day: Option<f64>,
    #[serde(alias = "session_headers")]
    pub(super) session_headers: Option<Vec<String>>,
    #[serde(alias = "warm_timeout_ms")]
    pub(super) warm_timeout_ms: Option<u64>,
    #[serde(alias = "warm_concurrency")]
    pub(super) warm_concurrency: Option<usize>,
    #[serde(alias = "history_cap")]
    pub(super) history_cap: Option<usize>,
    #[serde(alias = "template_cache_mb")]
    pub(super) template_cache_mb: Option<u64>,
    #[serde(alias = "shutdown_grace_ms")]
    pub(super) shutdown_grace_ms: Option<u64>,
    #[serde(alias = "proxy_first_byte_timeout_ms")]
    pub(super) proxy_first_byte_timeout_ms: Option<u64>,
    #[serde(alias = "proxy_max_body_mb")]
    pub(super) proxy_max_body_mb: Option<usize>,
    #[serde(alias = "max_connections")]
    pub(super) max_connections: Option<usize>,
    #[serde(alias = "max_connections_per_client")]
    pub(super) max_connections_per_client: Option<usize>,
    #[serde(alias = "lease_ms")]
    pub(super) lease_ms: Option<u64>,
    #[serde(alias = "anthropic_warm_max_tokens")]
    pub(super) anthropic_warm_max_tokens: Option<u8>,
    #[serde(alias = "openai_warm_max_tokens")]
    pub(super) openai_warm_max_tokens: Option<u8>,
    #[serde(alias = "advertise_url")]
    pub(super) advertise_url: Option<String>,
    #[serde(alias = "evict_after")]
    pub(super) evict_after: Option<String>,
    #[serde(alias = "header_read_timeout_ms")]
    pub(super) header_read_timeout_ms: Option<u64>,
    #[serde(alias = "body_read_timeout_ms")]
    pub(super) body_read_timeout_ms: Option<u64>,
    /// Prices by model-name prefix, over the built-in list prices.
    pub(super) prices: Option<std::collections::HashMap<String, PriceEntry>>,
    /// Minimum cacheable tokens by model-name prefix, over the built-in table.
    #[serde(alias = "min_cacheable_tokens")]
    pub(super) min_cacheable_tokens: Option<std::collections::HashMap<String, u64>>,
    /// The provider's cache TTL, for the policies and the cost estimate.
    #[serde(alias = "cache_ttl_ms")]
    pub(super) cache_ttl_ms: Option<u64>,
    pub(super) policy: Option<String>,
    #[serde(alias = "proxy_warming")]
    pub(super) proxy_warming: Option<OnOff>,
    #[serde(alias = "upgrade_cache")]
    pub(super) upgrade_cache: Option<super::args::AutoOff>,
    #[serde(alias = "explicit_caches")]
    pub(super) explicit_caches: Option<super::args::ExpireDelete>,
    pub(super) engine: Option<super::args::EngineKind>,
    #[serde(alias = "engine_save_dir")]
    pub(super) engine_save_dir: Option<std::path::PathBuf>,
    #[serde(alias = "engine_save_mb")]
    pub(super) engine_save_mb: Option<u64>,
    #[serde(alias = "proxy_policy")]
    pub(super) proxy_policy: Option<String>,
    #[serde(alias = "max_idle")]
    pub(super) max_idle: Option<String>,
    pub(super) lambda: Option<f64>,
    #[serde(alias = "input_price_per_mtok")]
    pub(super) input_price_per_mtok: Option<f64>,
    #[serde(alias = "prefill_tokens_per_sec")]
    pub(super) prefill_tokens_per_sec: Option<f64>,
}

/// A model's prices in the config: dollars per million input tokens alone
/// (the default multipliers), or each price.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum PriceEntry {
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
        /// The longer retention's length, seconds (0: none).
        #[serde(alias = "long-ttl-secs")]
        long_ttl_secs: Option<u64>,
        /// An explicit cache's storage per million tokens an hour.
        #[serde(alias = "storage-per-hour")]
        storage_per_hour: Option<f64>,
    },
}

impl PriceEntry {
    /// The prices, or why they are not prices.
    pub(super) fn prices(
        self,
        base: &warming_core::Economics,
    ) -> Result<warming_core::ModelPrices, String> {
        let prices = match self {
            Self::Input(input) => warming_core::ModelPrices::from_input(input, base),
            Self::Each {
                input,
                cache_write_5m,
                cache_write_1h,
                cache_read,
                output,
                long_ttl_secs,
                storage_per_hour,
            } => {
                let default = warming_core::ModelPrices::from_input(input, base);
                warming_core::ModelPrices {
                    input,
                    cache_write_5m: cache_write_5m.unwrap_or(default.cache_write_5m),
                    cache_write_1h: cache_write_1h.unwrap_or(default.cache_write_1h),
                    cache_read: cache_read.unwrap_or(default.cache_read),
                    output: output.unwrap_or(default.output),
                    long_ttl_secs: long_ttl_secs.unwrap_or(default.long_ttl_secs),
                    storage_per_hour: storage_per_hour.unwrap_or(default.storage_per_hour),
                }
            }
        };
        let all = [
            prices.input,
            prices.cache_write_5m,
            prices.cache_write_1h,
            prices.cache_read,
            prices.output,
            prices.storage_per_hour,
        ];
        match all.iter().find(|p| !p.is_finite() || **p < 0.0) {
            Some(bad) => Err(format!("{bad} is not a price")),
            None => Ok(prices),
        }
    }
}

pub(super) fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))
}
