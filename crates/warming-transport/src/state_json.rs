//! A conversation's state as the contract serves it over HTTP and pushes it
//! over the surface: camelCase, with the extensions' defaults for a state
//! written before they existed. The core keeps the numbers; this is their
//! one wire format, read back by peers and the CLI.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use warming_core::{
    ConversationId, ConversationState, KeepAlive, Ledger, Plan, PlanReason, Policy, PriceSource,
    StopReason, Timestamp, TurnReads,
};

/// [`ConversationState`] on the wire (`ConversationState` in `docs/API.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateJson {
    conversation_id: ConversationId,
    #[serde(default = "known_by_default")]
    known: bool,
    enabled: bool,
    interval_ms: u64,
    active: bool,
    last_pct: Option<f64>,
    last_expected_pct: Option<f64>,
    last_warm_at: Option<Timestamp>,
    next_warm_at: Option<Timestamp>,
    backend: Option<Arc<str>>,
    last_error: Option<Arc<str>>,
    warm_count: u64,
    #[serde(default)]
    ledger: Ledger,
    #[serde(default)]
    net_dollars: f64,
    #[serde(default)]
    priced: PriceSource,
    policy: Policy,
    stopped_reason: Option<String>,
    /// The stop, typed (tagged by `code`), so programs branch on it
    /// instead of parsing `stoppedReason`.
    #[serde(rename = "stop", default)]
    stopped: Option<StopReason>,
    #[serde(default)]
    turns: TurnReads,
    /// How its prefix is kept while its user is away (an extension).
    #[serde(default)]
    keep_alive: PlanJson,
}

/// The keep-alive plan on the wire: `{"plan", "why", "reason",
/// "costPerIdleHour", "upgradedAt"}`: `why` in words, `reason` typed
/// (tagged by `code`) for programs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanJson {
    /// `replay`, `none`, `upgrade` or `extend`.
    pub plan: KeepAlive,
    /// Why, in words.
    #[serde(default)]
    pub why: String,
    /// Why, typed.
    pub reason: PlanReason,
    /// Expected dollars per idle hour.
    pub cost_per_idle_hour: f64,
    /// When a request was rewritten to ask for the longer retention.
    pub upgraded_at: Option<Timestamp>,
}

impl Default for PlanJson {
    /// A state from before plans: replays, for want of gaps.
    fn default() -> Self {
        Self {
            plan: KeepAlive::Replay,
            why: String::new(),
            reason: PlanReason::TooFewGaps,
            cost_per_idle_hour: 0.0,
            upgraded_at: None,
        }
    }
}

impl PlanJson {
    fn of(state: &ConversationState) -> Self {
        Self {
            plan: state.plan.keep_alive,
            why: state.plan.why.to_string(),
            reason: state.plan.why,
            cost_per_idle_hour: state.plan.cost_per_idle_hour,
            upgraded_at: state.upgraded_at,
        }
    }
}

/// A state from before `known` existed described a known conversation.
const fn known_by_default() -> bool {
    true
}

impl From<&ConversationState> for StateJson {
    fn from(s: &ConversationState) -> Self {
        Self {
            conversation_id: s.conversation_id.clone(),
            known: s.known,
            enabled: s.enabled,
            interval_ms: s.interval_ms,
            active: s.active,
            last_pct: s.last_pct,
            last_expected_pct: s.last_expected_pct,
            last_warm_at: s.last_warm_at,
            next_warm_at: s.next_warm_at,
            backend: s.backend.clone(),
            last_error: s.last_error.clone(),
            warm_count: s.warm_count,
            ledger: s.ledger,
            net_dollars: s.net_dollars,
            priced: s.priced,
            policy: s.policy,
            stopped_reason: s.stopped_reason.clone(),
            stopped: s.stopped,
            turns: s.turns,
            keep_alive: PlanJson::of(s),
        }
    }
}

impl From<ConversationState> for StateJson {
    fn from(s: ConversationState) -> Self {
        Self::from(&s)
    }
}

impl From<StateJson> for ConversationState {
    fn from(s: StateJson) -> Self {
        Self {
            conversation_id: s.conversation_id,
            known: s.known,
            enabled: s.enabled,
            interval_ms: s.interval_ms,
            active: s.active,
            last_pct: s.last_pct,
            last_expected_pct: s.last_expected_pct,
            last_warm_at: s.last_warm_at,
            next_warm_at: s.next_warm_at,
            backend: s.backend,
            last_error: s.last_error,
            warm_count: s.warm_count,
            ledger: s.ledger,
            net_dollars: s.net_dollars,
            priced: s.priced,
            policy: s.policy,
            stopped_reason: s.stopped_reason,
            stopped: s.stopped,
            turns: s.turns,
            plan: Plan {
                keep_alive: s.keep_alive.plan,
                why: s.keep_alive.reason,
                cost_per_idle_hour: s.keep_alive.cost_per_idle_hour,
            },
            upgraded_at: s.keep_alive.upgraded_at,
        }
    }
}

/// Serialises a [`ConversationState`] in its wire format, for `serde`'s
/// `serialize_with` and `json!`.
///
/// # Errors
/// The serializer's.
pub fn serialize<S: serde::Serializer>(
    state: &ConversationState,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    StateJson::from(state).serialize(serializer)
}

/// Reads a [`ConversationState`] from its wire format, for `serde`'s
/// `deserialize_with`.
///
/// # Errors
/// The deserializer's.
pub fn deserialize<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<ConversationState, D::Error> {
    StateJson::deserialize(deserializer).map(ConversationState::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reads_back_as_it_was_served() {
        let mut state = warming_core::Warmer::new(warming_core::Config::default())
            .state(&ConversationId::new("c").unwrap());
        state.next_warm_at = Some(Timestamp::from_millis(5));
        state.stopped = Some(StopReason::Refused);
        let json = serde_json::to_value(StateJson::from(&state)).unwrap();
        assert_eq!(json["conversationId"], "c");
        assert_eq!(json["nextWarmAt"], 5);
        assert_eq!(json["stop"]["code"], "refused");
        let back: StateJson = serde_json::from_value(json).unwrap();
        assert_eq!(ConversationState::from(back), state);
    }

    #[test]
    fn a_state_from_before_the_extensions_reads_with_their_defaults() {
        let old = serde_json::json!({"conversationId": "c", "enabled": true,
            "intervalMs": 240000, "active": false, "lastPct": null,
            "lastExpectedPct": null, "lastWarmAt": null, "nextWarmAt": null,
            "backend": null, "lastError": null, "warmCount": 0,
            "policy": "fixed", "stoppedReason": null});
        let state = ConversationState::from(serde_json::from_value::<StateJson>(old).unwrap());
        assert!(state.known);
        assert_eq!(state.stopped, None);
    }
}
