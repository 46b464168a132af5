//! Money in the engine's UTC day: what it counts, and what it reports.

/// Dollars spent on warms, and saved by returns, in the current day.
#[derive(Debug, Default)]
pub(crate) struct DailySpend {
    /// The day (`ms / DAY_MS`) the figure is for.
    pub(crate) day: u64,
    /// Dollars spent that day.
    pub(crate) dollars: f64,
    /// Dollars returns saved that day.
    pub(crate) saved: f64,
    /// Slots the cap stopped that day.
    pub(crate) capped: Vec<u32>,
}

/// What warms spent and returns saved in the engine's UTC day, server-wide
/// ([`Warmer::money_today`](crate::Warmer::money_today)).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct MoneyToday {
    /// Dollars the day's warms cost, at the models' prices.
    pub spent_dollars: f64,
    /// Dollars the day's returns saved: misses avoided, priced as re-writes.
    pub saved_dollars: f64,
}

impl MoneyToday {
    /// Saved minus spent.
    #[must_use]
    pub fn net_dollars(&self) -> f64 {
        self.saved_dollars - self.spent_dollars
    }
}
