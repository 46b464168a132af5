//! Every scenario at every λ: the comparison the policies are judged by.

use serde::Serialize;
use warming_core::Policy;

use crate::run::{simulate, Outcome, Scenario, SimConfig};
use crate::trace::Trace;

/// The scenarios compared, simple rules first.
#[must_use]
pub fn scenarios() -> Vec<Scenario> {
    let mut all = vec![
        Scenario::NoWarming,
        Scenario::OneHourCache,
        Scenario::Policy(Policy::Fixed),
    ];
    all.extend([1, 2, 3, 5, 10].map(|n| Scenario::Policy(Policy::Pings(n))));
    all.extend([
        Scenario::Policy(Policy::Breakeven),
        Scenario::Policy(Policy::Adaptive),
        Scenario::TtlChoice,
        Scenario::Oracle,
    ]);
    all
}

/// Whether a scenario is one of the simple rules adaptive must match.
fn is_simple(name: &str) -> bool {
    matches!(name, "none" | "1h-cache" | "fixed") || name.starts_with("pings:")
}

/// All scenarios at one λ.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Dollars per second of waiting.
    pub lambda: f64,
    /// Each scenario's figures.
    pub outcomes: Vec<Outcome>,
    /// The cheapest simple rule in hindsight (none, 1h-cache, fixed, pings:N).
    pub best_simple: String,
    /// Adaptive's total cost divided by the best simple rule's.
    pub adaptive_vs_best_simple: f64,
    /// Adaptive's total cost divided by the oracle's.
    pub adaptive_vs_oracle: f64,
}

impl Row {
    /// The outcome of a scenario by name.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.scenario == name)
    }
}

/// A whole sweep over one trace.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The trace's name.
    pub trace: String,
    /// Conversations in it.
    pub conversations: usize,
    /// Turns in it.
    pub turns: usize,
    /// The interval warms use, ms.
    pub interval_ms: u64,
    /// Share of the trace played before counting began.
    pub warm_up: f64,
    /// One row per λ.
    pub rows: Vec<Row>,
}

/// Runs every scenario at every λ; `progress(done, total)` after each run.
#[must_use]
pub fn sweep(
    trace: &Trace,
    name: &str,
    lambdas: &[f64],
    base: &SimConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Report {
    let all = scenarios();
    let total = all.len() * lambdas.len();
    let mut done = 0;
    let mut rows = Vec::new();
    for &lambda in lambdas {
        let mut config = *base;
        config.economics.lambda_per_sec = lambda;
        let outcomes: Vec<Outcome> = all
            .iter()
            .map(|&scenario| {
                let outcome = simulate(trace, scenario, &config);
                done += 1;
                progress(done, total);
                outcome
            })
            .collect();
        let best = outcomes
            .iter()
            .filter(|o| is_simple(&o.scenario))
            .min_by(|a, b| a.total_cost.total_cmp(&b.total_cost))
            .expect("simple rules are always run");
        let total_of = |name: &str| {
            outcomes
                .iter()
                .find(|o| o.scenario == name)
                .map_or(f64::NAN, |o| o.total_cost)
        };
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 1.0 };
        rows.push(Row {
            lambda,
            best_simple: best.scenario.clone(),
            adaptive_vs_best_simple: ratio(total_of("adaptive"), best.total_cost),
            adaptive_vs_oracle: ratio(total_of("adaptive"), total_of("oracle")),
            outcomes,
        });
    }
    Report {
        trace: name.to_owned(),
        conversations: trace.conversations.len(),
        turns: trace.turns(),
        interval_ms: base.interval_ms,
        warm_up: base.warm_up,
        rows,
    }
}

/// `replay/none/upgrade` counts, or `-` for a scenario the engine did not
/// run.
fn plan_mix(plans: &crate::run::Plans) -> String {
    if plans.replay + plans.none + plans.upgrade == 0 {
        return "-".into();
    }
    format!("{}/{}/{}", plans.replay, plans.none, plans.upgrade)
}

impl Report {
    /// The human table.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = format!(
            "{}: {} conversations, {} turns, warms every {} s, first {:.0}% of the trace played uncounted\n",
            self.trace,
            self.conversations,
            self.turns,
            self.interval_ms / 1000,
            self.warm_up * 100.0
        );
        for row in &self.rows {
            let oracle = row.get("oracle").map_or(f64::NAN, |o| o.total_cost);
            out.push_str(&format!(
                "\nλ = ${:.4}/s  (${:.0}/h)\n{:<12} {:>11} {:>12} {:>11} {:>9} {:>8} {:>8}  {}\n",
                row.lambda,
                row.lambda * 3600.0,
                "policy",
                "token $",
                "latency s",
                "total $",
                "/oracle",
                "hits",
                "warms",
                "plans at the end (replay/none/upgrade)"
            ));
            for o in &row.outcomes {
                out.push_str(&format!(
                    "{:<12} {:>11.4} {:>12.1} {:>11.4} {:>9.3} {:>7.1}% {:>8}  {}\n",
                    o.scenario,
                    o.token_cost,
                    o.latency_lost_s,
                    o.total_cost,
                    if oracle > 0.0 {
                        o.total_cost / oracle
                    } else {
                        1.0
                    },
                    o.hit_rate() * 100.0,
                    o.warms,
                    plan_mix(&o.plans)
                ));
            }
            out.push_str(&format!(
                "best simple rule: {}; adaptive costs {:.3}x of it, {:.3}x of the oracle\n",
                row.best_simple, row.adaptive_vs_best_simple, row.adaptive_vs_oracle
            ));
        }
        out
    }
}
