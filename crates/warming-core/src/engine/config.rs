//! The engine's configuration: private fields, set through a builder that
//! refuses what cannot work, read through getters.

use std::time::Duration;

use crate::{Economics, EngineSupport, IntervalLimits, Policy};

/// How the engine behaves; every setting has a documented default. Built
/// with [`Config::builder`], which checks what it is given, or
/// [`Config::default`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Bounds every interval is clamped into.
    pub(crate) limits: IntervalLimits,
    /// First retry delay after a failed warm, in ms; it doubles with each
    /// further failure and never exceeds the interval. Default 5 s.
    pub(crate) retry_base_ms: u64,
    /// Delay before the first warm of a restored conversation whose next warm
    /// passed while the service was down, in ms. Default 1 s: prompt, but
    /// each missed conversation warms once, not once per missed interval.
    pub(crate) restore_delay_ms: u64,
    /// The policy of conversations a person enabled and that do not choose
    /// their own. Default [`Policy::Fixed`]: someone who turns warming on
    /// expects warms, with no evidence needed.
    pub(crate) policy: Policy,
    /// The policy of conversations enabled by blanket enrolment
    /// ([`Warmer::enroll`], e.g. every proxied conversation) rather than one
    /// by one. Default [`Policy::Adaptive`]: nobody asked for these warms, so
    /// they must pay for themselves.
    pub(crate) enrolled_policy: Policy,
    /// The spend guard: a conversation idle this long stops warming, under
    /// every policy, until its next turn, a manual warm or re-enabling.
    /// `0` disables the guard. Default 1 hour.
    pub(crate) max_idle_ms: u64,
    /// Prices, TTL and the value of time, for the policies.
    pub(crate) economics: Economics,
    /// Minimum cacheable tokens by model-name prefix, before the built-in
    /// table ([`crate::MINIMUM_CACHEABLE_TOKENS`]). Default none.
    pub(crate) min_cacheable_overrides: Vec<(String, u64)>,
    /// The deployment's own prices by model-name prefix, before the list.
    /// Default none.
    pub(crate) price_overrides: Vec<(String, crate::ModelPrices)>,
    /// List prices by model-name prefix (the service hands it the
    /// providers' published prices). Default none: every model is priced
    /// as an estimate from `economics`.
    pub(crate) list_prices: Vec<(String, crate::ModelPrices)>,
    /// The upstream is the deployment's own engine (llama.cpp, vLLM, ...):
    /// its tokens are not billed, so states say their money is engine time
    /// ([`crate::PriceSource::Engine`]). Default false.
    pub(crate) self_hosted: bool,
    /// The least a hit must save, in dollars, for a conversation to be
    /// warmed: a prefix whose miss costs less is not warmed
    /// ([`crate::StopReason::SmallSaving`]). `0` warms any prefix. Default 0.
    pub(crate) min_saving: f64,
    /// The most warms may cost in a UTC day, in dollars, server-wide (at
    /// each conversation's model prices): once reached, timed warms stop
    /// ([`crate::StopReason::SpendCap`]) until the day turns. `0` sets no
    /// cap. Default 0.
    pub(crate) max_spend_per_day: f64,
    /// The most one conversation's warms may cost in a UTC day, in
    /// dollars: once reached, its timed warms stop
    /// ([`crate::StopReason::ConversationSpendCap`]) until the day turns.
    /// `0` sets no cap. Default 0.
    pub(crate) max_spend_per_conversation_day: f64,
    /// Keep only [detached](Template::detach) templates in memory: the
    /// body goes out in [`Write::Template`](crate::Write::Template) and every
    /// [`WarmRequest::template`] is detached, so the embedder reads the body
    /// back from its store before sending a warm. For services holding many
    /// conversations with long prompts. Default `false`: warms carry their
    /// body and the embedder needs no store.
    pub(crate) detach_templates: bool,
    /// Where a provider's longer retention keeps a prefix for less than
    /// replays would cost ([`crate::choose_plan`]), the embedder may ask
    /// for it on the conversation's next request (a proxy rewriting it):
    /// the plan says [`KeepAlive::Upgrade`](crate::KeepAlive::Upgrade).
    /// Default `false`: requests are never rewritten, and the plan says
    /// what it would save.
    pub(crate) upgrade_cache: bool,
    /// What the deployment's own engine can do instead of a replay: every
    /// conversation's plan follows it ([`crate::KeepAlive::Resident`],
    /// [`crate::KeepAlive::Saved`]). Default [`EngineSupport::None`].
    pub(crate) engine_support: EngineSupport,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: IntervalLimits::default(),
            retry_base_ms: 5_000,
            restore_delay_ms: 1_000,
            policy: Policy::Fixed,
            enrolled_policy: Policy::Adaptive,
            max_idle_ms: 3_600_000,
            economics: Economics::default(),
            min_cacheable_overrides: Vec::new(),
            price_overrides: Vec::new(),
            list_prices: Vec::new(),
            self_hosted: false,
            min_saving: 0.0,
            max_spend_per_day: 0.0,
            max_spend_per_conversation_day: 0.0,
            detach_templates: false,
            upgrade_cache: false,
            engine_support: EngineSupport::None,
        }
    }
}

/// A setting [`ConfigBuilder::build`] refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    /// The setting, as the builder's method names it.
    pub setting: &'static str,
    /// Why, in words.
    pub reason: &'static str,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.setting, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Builds a [`Config`] from its defaults; [`build`](Self::build) checks it.
///
/// ```
/// use warming_core::{Config, Policy};
/// let config = Config::builder()
///     .policy(Policy::Pings(2))
///     .max_idle(Some(std::time::Duration::from_secs(1_800)))
///     .build()
///     .unwrap();
/// assert_eq!(config.policy(), Policy::Pings(2));
/// assert!(Config::builder().max_spend_per_day(f64::NAN).build().is_err());
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ConfigBuilder {
    config: Config,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        impl ConfigBuilder {
            $(
                $(#[$doc])*
                pub fn $name(mut self, value: $ty) -> Self {
                    self.config.$name = value;
                    self
                }
            )*
        }
        impl Config {
            $(
                $(#[$doc])*
                #[must_use]
                pub fn $name(&self) -> $ty {
                    self.$name.clone()
                }
            )*
        }
    };
}

setters! {
    /// Bounds every interval is clamped into.
    limits: IntervalLimits;
    /// The policy of conversations a person enabled. Default
    /// [`Policy::Fixed`].
    policy: Policy;
    /// The policy of conversations enabled by blanket enrolment. Default
    /// [`Policy::Adaptive`].
    enrolled_policy: Policy;
    /// Prices, TTL and the value of time, for the policies.
    economics: Economics;
    /// Minimum cacheable tokens by model-name prefix, before the built-in
    /// table.
    min_cacheable_overrides: Vec<(String, u64)>;
    /// The deployment's own prices by model-name prefix, before the list.
    price_overrides: Vec<(String, crate::ModelPrices)>;
    /// List prices by model-name prefix; default none (estimates).
    list_prices: Vec<(String, crate::ModelPrices)>;
    /// The upstream is the deployment's own engine: money is engine time.
    self_hosted: bool;
    /// The least a hit must save, dollars, for a conversation to be warmed.
    /// Finite, `>= 0`.
    min_saving: f64;
    /// The most warms may cost in a UTC day, dollars, server-wide; `0`: no
    /// cap. Finite, `>= 0`.
    max_spend_per_day: f64;
    /// The most one conversation's warms may cost in a UTC day, dollars;
    /// `0`: no cap. Finite, `>= 0`.
    max_spend_per_conversation_day: f64;
    /// Keep only detached templates in memory (the embedder stores bodies).
    detach_templates: bool;
    /// The embedder may ask providers for their longer retention on a
    /// conversation's next request, where it is cheaper than replays.
    upgrade_cache: bool;
    /// What the deployment's own engine can do instead of a replay.
    engine_support: EngineSupport;
}

/// Milliseconds of a duration, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ConfigBuilder {
    /// First retry delay after a failed warm (doubling, at most an
    /// interval). Default 5 s; at least 1 ms.
    pub fn retry_base(mut self, delay: Duration) -> Self {
        self.config.retry_base_ms = millis(delay);
        self
    }

    /// Delay before the first warm of a restored conversation whose next
    /// warm passed while the service was down. Default 1 s.
    pub fn restore_delay(mut self, delay: Duration) -> Self {
        self.config.restore_delay_ms = millis(delay);
        self
    }

    /// A conversation idle this long stops warming (the spend guard);
    /// `None`: never. Default 1 h.
    pub fn max_idle(mut self, idle: Option<Duration>) -> Self {
        self.config.max_idle_ms = idle.map_or(0, millis);
        self
    }
}

impl Config {
    /// First retry delay after a failed warm.
    #[must_use]
    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms)
    }

    /// Delay before the first warm of a restored, overdue conversation.
    #[must_use]
    pub fn restore_delay(&self) -> Duration {
        Duration::from_millis(self.restore_delay_ms)
    }

    /// How long idle stops warming; `None`: never.
    #[must_use]
    pub fn max_idle(&self) -> Option<Duration> {
        (self.max_idle_ms > 0).then(|| Duration::from_millis(self.max_idle_ms))
    }

    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }
}

impl ConfigBuilder {
    /// The configuration, if every setting can work.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first setting that cannot: a money
    /// amount that is negative or not a number, a zero retry delay, prices
    /// or a TTL that are negative or not numbers.
    pub fn build(self) -> Result<Config, ConfigError> {
        let c = &self.config;
        let dollars = [
            ("min_saving", c.min_saving),
            ("max_spend_per_day", c.max_spend_per_day),
            (
                "max_spend_per_conversation_day",
                c.max_spend_per_conversation_day,
            ),
        ];
        for (setting, value) in dollars {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError {
                    setting,
                    reason: "must be a finite amount of dollars, 0 or more",
                });
            }
        }
        if c.retry_base_ms == 0 {
            return Err(ConfigError {
                setting: "retry_base",
                reason: "must be at least 1 ms",
            });
        }
        let prices_valid = |table: &[(String, crate::ModelPrices)]| {
            table.iter().all(|(_, p)| {
                [
                    p.input,
                    p.cache_write_5m,
                    p.cache_write_1h,
                    p.cache_read,
                    p.output,
                ]
                .iter()
                .all(|v| v.is_finite() && *v >= 0.0)
            })
        };
        if !prices_valid(&c.price_overrides) || !prices_valid(&c.list_prices) {
            return Err(ConfigError {
                setting: "prices",
                reason: "every price must be a finite number of dollars, 0 or more",
            });
        }
        if !c.economics.is_valid() {
            return Err(ConfigError {
                setting: "economics",
                reason: "prices, multipliers and rates must be finite and 0 or more, the TTL \
                         at least 1 ms",
            });
        }
        Ok(self.config)
    }
}
