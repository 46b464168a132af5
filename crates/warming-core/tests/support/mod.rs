//! A virtual-clock harness around the engine, shared by the core's tests.
#![allow(dead_code)]

use std::sync::Arc;

use serde_json::json;
use warming_core::{
    Config, ConversationId, ConversationState, Event, Policy, SettingsChange, Template, Timestamp,
    Usage, WarmAction, WarmFailure, WarmRecord, WarmReply, WarmRequest, WarmToken, Warmer, Write,
};

/// One output of the engine, from whichever queue, in the order the
/// harness drained them (writes, then warms, then events, per input).
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Write(Write),
    Warm(WarmAction),
    Event(Event),
}

/// An engine plus a clock that only the test moves.
pub struct Harness {
    pub warmer: Warmer,
    pub now: Timestamp,
    /// Outputs drained by a helper that looked for a record, kept for the
    /// next [`drain`](Self::drain).
    drained: Vec<Out>,
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
            drained: Vec::new(),
        }
    }

    pub fn advance(&mut self, ms: u64) {
        self.now = self.now.plus_millis(ms);
    }

    /// Moves the clock to the next deadline and fires it.
    pub fn run_to_deadline(&mut self) -> Vec<Out> {
        let due = self.warmer.poll_timeout().expect("a deadline is armed");
        self.now = self.now.max(due);
        self.warmer.handle_timeout(self.now);
        self.drain()
    }

    pub fn drain(&mut self) -> Vec<Out> {
        let mut out = std::mem::take(&mut self.drained);
        out.extend(drain(&mut self.warmer));
        out
    }

    /// Drains the outputs (kept for the next `drain`) and returns the
    /// history record that answers `token`, if any.
    fn record_answering(&mut self, token: Option<WarmToken>) -> Option<WarmRecord> {
        let new = drain(&mut self.warmer);
        let found = new.iter().find_map(|o| match o {
            Out::Write(Write::Record { record, answers }) if *answers == token => {
                Some(record.clone())
            }
            _ => None,
        });
        self.drained.extend(new);
        found
    }

    /// Reports a warm's answer; its record, or `None` when it was stale.
    pub fn warm_completed(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        token: WarmToken,
        usage: Usage,
    ) -> Option<WarmRecord> {
        let taken = self.warmer.warm_completed(now, id, token, usage);
        let record = self.record_answering(Some(token));
        assert_eq!(taken, record.is_some(), "a taken answer is recorded");
        record
    }

    /// Reports a warm's answer with its details; as `warm_completed`.
    pub fn warm_answered(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        token: WarmToken,
        reply: WarmReply<'_>,
    ) -> Option<WarmRecord> {
        let taken = self.warmer.warm_answered(now, id, token, reply);
        let record = self.record_answering(Some(token));
        assert_eq!(taken, record.is_some(), "a taken answer is recorded");
        record
    }

    /// Reports a warm's failure; its record, or `None` when it was stale.
    pub fn warm_failed(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        token: WarmToken,
        failure: WarmFailure,
    ) -> Option<WarmRecord> {
        let taken = self.warmer.warm_failed(now, id, token, failure);
        let record = self.record_answering(Some(token));
        assert_eq!(taken, record.is_some(), "a taken failure is recorded");
        record
    }

    /// Reports a real turn's usage; its record, or `None` for an unknown
    /// conversation.
    pub fn record_turn(
        &mut self,
        now: Timestamp,
        id: &ConversationId,
        started_at: Timestamp,
        usage: Usage,
    ) -> Option<WarmRecord> {
        let taken = self.warmer.record_turn(now, id, started_at, usage);
        let record = self.record_answering(None);
        assert_eq!(taken, record.is_some(), "a taken turn is recorded");
        record
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

/// Every output waiting, writes first, then warms, then events.
pub fn drain(warmer: &mut Warmer) -> Vec<Out> {
    let mut out: Vec<Out> = std::iter::from_fn(|| warmer.poll_write())
        .map(Out::Write)
        .collect();
    out.extend(std::iter::from_fn(|| warmer.poll_warm()).map(Out::Warm));
    out.extend(std::iter::from_fn(|| warmer.poll_event()).map(Out::Event));
    out
}

pub fn warms(effects: &[Out]) -> Vec<&WarmRequest> {
    effects
        .iter()
        .filter_map(|e| match e {
            Out::Warm(WarmAction::Send(w)) => Some(w),
            _ => None,
        })
        .collect()
}

pub fn notifications(effects: &[Out]) -> Vec<&ConversationState> {
    effects
        .iter()
        .filter_map(|e| match e {
            Out::Event(Event::Changed(s)) => Some(&**s),
            _ => None,
        })
        .collect()
}
