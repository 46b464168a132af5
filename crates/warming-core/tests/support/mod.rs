//! A virtual-clock harness around the engine, shared by the core's tests.
#![allow(dead_code)]

use std::sync::Arc;

use serde_json::json;
use warming_core::{
    Config, ConversationId, ConversationState, Effect, Policy, SettingsChange, Template, Timestamp,
    WarmRequest, Warmer,
};

/// An engine plus a clock that only the test moves.
pub struct Harness {
    pub warmer: Warmer,
    pub now: Timestamp,
}

pub const T0: u64 = 1_700_000_000_000;

pub fn id(raw: &str) -> ConversationId {
    ConversationId::new(raw).unwrap()
}

pub fn template(tag: &str) -> Arc<Template> {
    Arc::new(Template::new(
        json!({"model": "claude-test", "system": tag, "messages": [{"role": "user", "content": "hi"}]}),
        None,
        None,
    ))
}

impl Harness {
    /// An engine with the `fixed` policy: warms every interval, so the
    /// behaviour tests see the schedule itself. Policies have their own tests.
    pub fn new() -> Self {
        Self::with_config(
            Config::builder()
                .policy(Policy::Fixed)
                .build()
                .expect("a valid config"),
        )
    }

    pub fn with_config(config: Config) -> Self {
        Self {
            warmer: Warmer::new(config),
            now: Timestamp::from_millis(T0),
        }
    }

    pub fn advance(&mut self, ms: u64) {
        self.now = self.now.plus_millis(ms);
    }

    /// Moves the clock to the next deadline and fires it.
    pub fn run_to_deadline(&mut self) -> Vec<Effect> {
        let due = self.warmer.poll_timeout().expect("a deadline is armed");
        self.now = self.now.max(due);
        self.warmer.handle_timeout(self.now);
        self.drain()
    }

    pub fn drain(&mut self) -> Vec<Effect> {
        std::iter::from_fn(|| self.warmer.poll_effect()).collect()
    }

    pub fn state(&self, raw: &str) -> ConversationState {
        self.warmer.state(&id(raw))
    }

    /// Enables warming and confirms the write.
    pub fn enable(&mut self, raw: &str) {
        self.set(
            raw,
            SettingsChange {
                enabled: Some(true),
                ..Default::default()
            },
        );
    }

    /// Changes settings and confirms the write.
    pub fn set(&mut self, raw: &str, change: SettingsChange) {
        let op = self.warmer.update_settings(self.now, &id(raw), change);
        self.warmer.persisted(self.now, op, true);
    }

    pub fn settle(&mut self, raw: &str, tag: &str) {
        self.warmer
            .turn_settled(self.now, &id(raw), Some(template(tag)), None);
    }
}

pub fn warms(effects: &[Effect]) -> Vec<&WarmRequest> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Warm(w) => Some(w),
            _ => None,
        })
        .collect()
}

pub fn notifications(effects: &[Effect]) -> Vec<&ConversationState> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify(s) => Some(s),
            _ => None,
        })
        .collect()
}
