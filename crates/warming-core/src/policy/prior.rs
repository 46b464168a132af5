//! What warming learns online from every conversation: how often users
//! return, at each turn depth, and after how long.

/// Turn depths tracked apart; deeper turns share the last slot.
pub const DEPTHS: usize = 8;
/// Gap buckets of the prior: log-spaced, 1 s x 1.5^i.
const BUCKETS: usize = 40;

fn bucket_edge_ms(i: usize) -> f64 {
    1_000.0 * 1.5f64.powi(i as i32)
}

/// What warming has learned from every conversation: how often a turn at
/// each depth is followed by another, and how long users stay away before
/// they return. Learned online; the caller may persist it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReturnPrior {
    /// Turns settled, by depth (1-based, capped).
    pub turns: [u64; DEPTHS],
    /// Turns followed by another turn, by depth.
    pub returns: [u64; DEPTHS],
    /// Returns by gap bucket.
    pub gaps: [u64; BUCKETS],
}

impl Default for ReturnPrior {
    fn default() -> Self {
        Self {
            turns: [0; DEPTHS],
            returns: [0; DEPTHS],
            gaps: [0; BUCKETS],
        }
    }
}

fn depth_slot(depth: u32) -> usize {
    (depth.max(1) as usize - 1).min(DEPTHS - 1)
}

impl ReturnPrior {
    /// A turn at `depth` settled and its first TTL is over (the engine
    /// waits that long, so fresh turns do not read as users who left).
    pub fn observe_turn(&mut self, depth: u32) {
        self.turns[depth_slot(depth)] += 1;
    }

    /// The user came back `gap_ms` after a turn at `depth`.
    pub fn observe_return(&mut self, depth: u32, gap_ms: u64) {
        self.returns[depth_slot(depth)] += 1;
        let bucket = (0..BUCKETS)
            .find(|&i| (gap_ms as f64) < bucket_edge_ms(i + 1))
            .unwrap_or(BUCKETS - 1);
        self.gaps[bucket] += 1;
    }

    /// Chance that a turn at `depth` is followed by another: the observed
    /// rate with one pseudo-return and one pseudo-end (uniform prior).
    #[must_use]
    pub fn return_probability(&self, depth: u32) -> f64 {
        let slot = depth_slot(depth);
        // Depths with few turns borrow from all depths pooled.
        let pooled_turns: u64 = self.turns.iter().sum();
        let pooled_returns: u64 = self.returns.iter().sum();
        let pooled = (pooled_returns as f64 + 1.0) / (pooled_turns as f64 + 2.0);
        let (r, t) = (self.returns[slot] as f64, self.turns[slot] as f64);
        ((r + 2.0 * pooled) / (t + 2.0)).clamp(0.0, 1.0)
    }

    /// What was learned since `earlier` (a copy of this prior taken
    /// before): the counts added meanwhile, to merge into a prior shared
    /// with other instances ([`add`](Self::add)).
    ///
    /// ```
    /// use warming_core::ReturnPrior;
    /// let mut mine = ReturnPrior::default();
    /// mine.observe_turn(1);
    /// let synced = mine.clone();
    /// mine.observe_turn(1);
    /// mine.observe_return(1, 30_000);
    /// let mut shared = ReturnPrior::default();
    /// shared.add(&mine.since(&synced));
    /// assert_eq!((shared.turns[0], shared.returns[0]), (1, 1));
    /// ```
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let minus = |now: &[u64], then: &[u64], out: &mut [u64]| {
            for ((o, n), t) in out.iter_mut().zip(now).zip(then) {
                *o = n.saturating_sub(*t);
            }
        };
        let mut delta = Self::default();
        minus(&self.turns, &earlier.turns, &mut delta.turns);
        minus(&self.returns, &earlier.returns, &mut delta.returns);
        minus(&self.gaps, &earlier.gaps, &mut delta.gaps);
        delta
    }

    /// Adds `other`'s counts to this prior's.
    pub fn add(&mut self, other: &Self) {
        let plus = |out: &mut [u64], more: &[u64]| {
            for (o, m) in out.iter_mut().zip(more) {
                *o = o.saturating_add(*m);
            }
        };
        plus(&mut self.turns, &other.turns);
        plus(&mut self.returns, &other.returns);
        plus(&mut self.gaps, &other.gaps);
    }

    /// The prior as JSON, to persist it.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::json!({"turns": &self.turns[..], "returns": &self.returns[..], "gaps": &self.gaps[..]})
            .to_string()
    }

    /// A prior from [`to_json`](Self::to_json); anything unreadable gives an
    /// empty prior (it is relearned), never an error.
    #[must_use]
    pub fn from_json(raw: &str) -> Self {
        let value: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
        let mut prior = Self::default();
        let fill = |key: &str, out: &mut [u64]| {
            if let Some(items) = value.get(key).and_then(serde_json::Value::as_array) {
                for (slot, item) in out.iter_mut().zip(items) {
                    *slot = item.as_u64().unwrap_or(0);
                }
            }
        };
        fill("turns", &mut prior.turns);
        fill("returns", &mut prior.returns);
        fill("gaps", &mut prior.gaps);
        prior
    }

    /// Share of returns that came back within `t_ms`, with half a pseudo-count
    /// per bucket so an empty prior is log-uniform, not certain.
    #[must_use]
    pub fn gap_cdf(&self, t_ms: f64) -> f64 {
        let weight = |i: usize| self.gaps[i] as f64 + 0.5;
        let total: f64 = (0..BUCKETS).map(weight).sum();
        let mut below = 0.0;
        for i in 0..BUCKETS {
            let (lo, hi) = (bucket_edge_ms(i), bucket_edge_ms(i + 1));
            if t_ms >= hi {
                below += weight(i);
            } else {
                if t_ms > lo {
                    below += weight(i) * (t_ms / lo).ln() / (hi / lo).ln();
                }
                break;
            }
        }
        below / total
    }
}
