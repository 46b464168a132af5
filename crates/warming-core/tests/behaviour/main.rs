//! One test (or a few) per numbered behaviour of the core
//! (`docs/BEHAVIOUR.md`), on a virtual clock, one module per concern.

#[path = "../support/mod.rs"]
mod support;

mod engine_plans;
mod events;
mod keep_alive;
mod lifecycle;
mod memory;
mod policies;
mod settings;
mod warms;

/// What every module of these tests uses.
mod prelude {
    pub use std::sync::Arc;
    pub use std::time::Duration;

    pub use crate::support::{id, notifications, template, warms, Harness, Out, T0};
    pub use warming_core::{
        Config, ConversationId, Event, EventDisposition, IntervalLimits, Restored, RuntimeEvent,
        RuntimeEventKind, Settings, SettingsChange, Timestamp, Usage, WarmAction, WarmFailure,
        WarmNowError, WarmOutcome, WarmStats, WarmTrigger, Write,
    };

    /// A warm that read the whole 5k-token prefix from the cache.
    pub const HIT: Usage = Usage::anthropic(3, 5_000, 0);
    /// A warm that found the cache cold and wrote the prefix.
    pub const MISS: Usage = Usage::anthropic(3, 0, 5_000);

    /// The virtual clock's start plus `offset_ms`.
    pub fn at(offset_ms: u64) -> Timestamp {
        Timestamp::from_millis(T0 + offset_ms)
    }

    // 15
    pub fn event(kind: RuntimeEventKind, turn: Option<&str>) -> RuntimeEvent {
        RuntimeEvent {
            conversation: id("t"),
            kind,
            turn_id: turn.map(String::from),
        }
    }

    // 16
    pub fn restored(raw: &str, enabled: bool, next: Option<Timestamp>) -> Restored {
        Restored {
            conversation: ConversationId::new(raw).unwrap(),
            settings: Some(Settings {
                enabled,
                interval_ms: 60_000,
                interval_chosen: true,
                ..Settings::defaults(&IntervalLimits::default())
            }),
            template: Some((*template("restored")).clone()),
            next_warm_at: next,
            backend: Some("b9".into()),
            stats: WarmStats {
                warm_count: 7,
                last_pct: Some(99.0),
                ..WarmStats::default()
            },
            depth: 4,
            gaps: vec![400_000, 410_000],
            idle_since: None,
        }
    }
}
