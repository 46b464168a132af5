//! What may stop a timed warm: the spend guard, the minimum cacheable
//! length and the conversation's policy; and recording a stop.

use std::sync::Arc;

use super::Warmer;
use crate::{
    decide, minimum_cacheable_tokens, GapView, StopReason, Timestamp, WarmOutcome, WarmRecord,
    WarmTrigger, Write,
};

impl Warmer {
    /// What stops a timed warm under every policy: the spend guard (idle
    /// for `max_idle_ms`) and a prefix too short for the provider to cache.
    pub(super) fn guard_allows(&self, slot: u32, now: Timestamp) -> Result<(), StopReason> {
        let c = &self.conversations[slot as usize];
        let max_idle_ms = self.config.max_idle_ms;
        let idle_ms = c.idle_since.map_or(0, |since| now.millis_since(since));
        if max_idle_ms > 0 && idle_ms >= max_idle_ms {
            return Err(StopReason::IdleCap { max_idle_ms });
        }
        self.spend_cap_allows(slot)?;
        if let Some(template) = &c.template {
            let model = template.model().unwrap_or_default();
            let minimum = minimum_cacheable_tokens(model, &self.config.min_cacheable_overrides);
            let estimate = template.cacheable_tokens_estimate();
            // An explicit cache holds its prefix apart from the request
            // (which names it only); the provider refused it at creation
            // had it been too short.
            if estimate < minimum && !template.explicit_cache() {
                return Err(StopReason::BelowMinimum { estimate, minimum });
            }
            let min_saving = self.config.min_saving;
            if min_saving > 0.0 {
                let saving = c
                    .economics(&self.config)
                    .miss_avoided_cost(c.prefix_or_estimate());
                if saving < min_saving {
                    return Err(StopReason::SmallSaving { saving, min_saving });
                }
            }
        }
        Ok(())
    }

    /// Stops timed warming of a conversation for `reason`: recorded in
    /// history (when it was due), the schedule cleared, subscribers told.
    pub(super) fn stop(
        &mut self,
        slot: u32,
        reason: StopReason,
        (trigger, due_at): (WarmTrigger, Timestamp),
        now: Timestamp,
    ) {
        if reason.is_spend_cap() {
            self.capped(slot);
        }
        let c = self.conv(slot);
        c.stopped = Some(reason);
        let conversation = c.id.clone();
        let record = WarmRecord::unanswered(
            conversation.clone(),
            trigger,
            (due_at, now, now),
            WarmOutcome::Stopped,
            Arc::from(reason.to_string()),
            c.backend.clone(),
        );
        self.out.writes.push_back(Write::Record {
            record,
            answers: None,
        });
        self.out.writes.push_back(Write::Schedule {
            conversation,
            next_warm_at: None,
        });
        self.notify(slot);
    }

    /// Asks the conversation's policy whether its next timed warm is sent.
    pub(super) fn policy_allows(&self, slot: u32, now: Timestamp) -> Result<(), StopReason> {
        let c = &self.conversations[slot as usize];
        let view = GapView {
            idle_ms: c.gap_start.map_or(0, |start| now.millis_since(start)),
            warms_in_gap: c.warms_in_gap,
            interval_ms: c.interval_ms(&self.config.limits),
            prefix_tokens: c.prefix_tokens,
            depth: c.depth,
            own_gaps: &c.own_gaps,
            warm_output_tokens: c.last_warm_output,
        };
        decide(
            c.policy(&self.config),
            &c.economics(&self.config),
            &self.prior,
            &view,
        )
    }
}
