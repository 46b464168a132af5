//! What warming spent and saved on one conversation: the one tally behind
//! its state, the CLI, the dashboard and the stores.

use serde::{Deserialize, Serialize};

/// What warming spent on a conversation's warms and what its returning
/// turns saved, at the conversation's model's prices
/// ([`economics_for`](crate::economics_for)).
///
/// ```
/// use warming_core::Ledger;
/// let ledger = Ledger {
///     spent_dollars: 0.03,
///     saved_dollars: 0.345,
///     misses_avoided: 1,
///     ..Ledger::default()
/// };
/// assert!((ledger.net_dollars() - 0.315).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Ledger {
    /// Dollars its warms cost (every answered warm, hit or not).
    pub spent_dollars: f64,
    /// Seconds the upstream took to answer its warms: what warming costs a
    /// self-hosted engine, whose tokens are not billed.
    pub warm_seconds: f64,
    /// Turns that came back after more than the cache's TTL and found the
    /// prefix warm: each would have re-written it.
    pub misses_avoided: u64,
    /// Dollars those turns did not pay: re-writing the prefix minus
    /// reading it.
    pub saved_dollars: f64,
    /// Seconds of prefill those turns did not wait for (the prefix at the
    /// configured prefill speed).
    pub saved_prefill_seconds: f64,
    /// Dollars its warms cost on `day`: what the daily spend caps count,
    /// kept with the rest so a restart does not forget it.
    pub spent_today_dollars: f64,
    /// Dollars its returns saved on `day`.
    pub saved_today_dollars: f64,
    /// The UTC day of the `*_today_dollars` figures, in days since
    /// 1970-01-01.
    pub day: u64,
    /// Replays not sent because the provider kept the prefix itself (its
    /// requests ask for the longer retention): those an interval apart
    /// over each idle gap, up to the idle cap.
    pub replays_avoided: u64,
    /// Dollars the longer retention cost over the short one on its turns'
    /// writes, for the conversations whose requests warming upgraded (in
    /// `spent_dollars` too).
    pub retention_premium_dollars: f64,
    /// Seconds of the deployment's own engine not spent on replays: each
    /// replay a residency check found needless, and those a saved prefix
    /// made needless over its gap, at what its last replay of a resident
    /// prefix took (none counted before one is seen). Also counted in
    /// `replays_avoided`.
    pub engine_seconds_saved: f64,
    /// Warms no return repaid: those of idle gaps that ended in no miss
    /// avoided (the user came back before the cache would have expired,
    /// or the turn did not read what they kept). Their cost is in
    /// `spent_dollars` like every warm's; this says how many bought
    /// nothing. Warms since the last turn are judged when the user
    /// returns.
    pub unrepaid_warms: u64,
}

impl Ledger {
    /// Saved minus spent, in dollars: what warming was worth.
    #[must_use]
    pub fn net_dollars(&self) -> f64 {
        self.saved_dollars - self.spent_dollars
    }

    /// Adds `other`'s figures to these (a total over conversations; the
    /// day's figures are added when both are of the same day).
    pub fn add(&mut self, other: &Self) {
        if self.day == other.day {
            self.spent_today_dollars += other.spent_today_dollars;
            self.saved_today_dollars += other.saved_today_dollars;
        }
        self.spent_dollars += other.spent_dollars;
        self.warm_seconds += other.warm_seconds;
        self.misses_avoided += other.misses_avoided;
        self.saved_dollars += other.saved_dollars;
        self.saved_prefill_seconds += other.saved_prefill_seconds;
        self.replays_avoided += other.replays_avoided;
        self.retention_premium_dollars += other.retention_premium_dollars;
        self.engine_seconds_saved += other.engine_seconds_saved;
        self.unrepaid_warms += other.unrepaid_warms;
    }
}
