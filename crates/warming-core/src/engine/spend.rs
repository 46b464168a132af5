//! The daily spend caps, server-wide and per conversation: what warms cost
//! today (UTC), and which conversations a cap stopped, to resume them when
//! the day turns.

use super::money::MoneyToday;
use super::Warmer;
use crate::{StopReason, Timestamp};

/// Milliseconds in a day: days are UTC days of the input clock.
const DAY_MS: u64 = 86_400_000;

impl Warmer {
    /// Counts a warm's cost in today's spend, the server's and `slot`'s
    /// (in its ledger, which the stores keep).
    pub(super) fn spent(&mut self, slot: u32, dollars: f64) {
        let dollars = dollars.max(0.0);
        self.spend.dollars += dollars;
        let day = self.spend.day;
        let ledger = today(&mut self.conv(slot).stats.ledger, day);
        ledger.spent_today_dollars += dollars;
    }

    /// Counts what a return saved in today's figures, the server's and
    /// `slot`'s.
    pub(super) fn saved(&mut self, slot: u32, dollars: f64) {
        let dollars = dollars.max(0.0);
        self.spend.saved += dollars;
        let day = self.spend.day;
        today(&mut self.conv(slot).stats.ledger, day).saved_today_dollars += dollars;
    }

    /// What warms spent and returns saved today (UTC), server-wide, in
    /// dollars: the counts of the engine's day, restored with the
    /// conversations after a restart.
    #[must_use]
    pub fn money_today(&self) -> MoneyToday {
        MoneyToday {
            spent_dollars: self.spend.dollars,
            saved_dollars: self.spend.saved,
        }
    }

    /// A restored conversation's spend of today counts in the server's
    /// (a restart, or conversations adopted from another instance).
    pub(super) fn restored_spend(&mut self, slot: u32) {
        let ledger = &self.conversations[slot as usize].stats.ledger;
        if ledger.day == self.spend.day {
            self.spend.dollars += ledger.spent_today_dollars.max(0.0);
            self.spend.saved += ledger.saved_today_dollars.max(0.0);
        }
    }

    /// The caps, if one is reached: a timed warm of `slot` is not sent.
    /// A warm that would take today's spend past a cap is not sent either:
    /// a cap is never overshot by the warm that crosses it.
    pub(super) fn spend_cap_allows(&self, slot: u32) -> Result<(), StopReason> {
        let next = self.next_warm_cost(slot);
        let cap = self.config.max_spend_per_day;
        if cap > 0.0 && self.spend.dollars + next > cap {
            return Err(StopReason::SpendCap { max_per_day: cap });
        }
        let cap = self.config.max_spend_per_conversation_day;
        let c = &self.conversations[slot as usize];
        let ledger = &c.stats.ledger;
        let spent_today = if ledger.day == self.spend.day {
            ledger.spent_today_dollars
        } else {
            0.0
        };
        if cap > 0.0 && spent_today + next > cap {
            return Err(StopReason::ConversationSpendCap { max_per_day: cap });
        }
        Ok(())
    }

    /// What `slot`'s next warm is expected to cost: a read of its prefix
    /// (the last warm's or turn's, else the template's estimate) and the
    /// output the last warm generated; for an explicit cache, the storage
    /// an interval buys.
    fn next_warm_cost(&self, slot: u32) -> f64 {
        let c = &self.conversations[slot as usize];
        let prefix = c.prefix_or_estimate();
        if c.template
            .as_deref()
            .is_some_and(crate::Template::explicit_cache)
        {
            return c.extension_cost(&self.config, prefix);
        }
        c.economics(&self.config).usage_cost(&crate::Usage {
            cache_read_tokens: prefix,
            output_tokens: c.last_warm_output,
            ..crate::Usage::default()
        })
    }

    /// Keeps a conversation the cap stopped, to resume it tomorrow.
    pub(super) fn capped(&mut self, slot: u32) {
        self.spend.capped.push(slot);
    }

    /// A new day: the spend starts at zero and the conversations the cap
    /// stopped are warmed again (each as if re-armed now).
    pub(super) fn roll_day(&mut self, now: Timestamp) {
        let day = now.as_millis() / DAY_MS;
        if day == self.spend.day {
            return;
        }
        self.spend.day = day;
        self.spend.dollars = 0.0;
        self.spend.saved = 0.0;
        for slot in std::mem::take(&mut self.spend.capped) {
            let c = self.conv(slot);
            if c.stopped.is_some_and(|r| r.is_spend_cap()) && !c.deleted {
                c.stopped = None;
                self.reconcile(slot, now, true);
                self.notify(slot);
            }
        }
    }

    /// When the day turns, if a conversation waits for it.
    pub(super) fn next_day_start(&self) -> Option<Timestamp> {
        (!self.spend.capped.is_empty())
            .then(|| Timestamp::from_millis((self.spend.day + 1) * DAY_MS))
    }
}

/// `ledger`'s figures of `day`: reset first when they are of an earlier day.
fn today(ledger: &mut crate::Ledger, day: u64) -> &mut crate::Ledger {
    if ledger.day != day {
        ledger.day = day;
        ledger.spent_today_dollars = 0.0;
        ledger.saved_today_dollars = 0.0;
    }
    ledger
}
