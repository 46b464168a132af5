//! Small traces whose every figure is known in closed form.

use warming_core::{Economics, Policy};
use warming_sim::{simulate, Scenario, SimConfig, Trace, Turn};

/// $3 per million input tokens, 5-minute TTL, 5 000 tokens/s prefill.
const P: u64 = 10_000;
const READ: f64 = 0.1 * 3e-6 * P as f64; // 0.003
const WRITE: f64 = 1.25 * 3e-6 * P as f64; // 0.0375
const PREFILL_S: f64 = P as f64 / 5_000.0; // 2 s

fn config(lambda: f64) -> SimConfig {
    SimConfig {
        economics: Economics {
            lambda_per_sec: lambda,
            ..Economics::default()
        },
        interval_ms: 240_000,
        horizon_ms: 3_600_000,
        ..SimConfig::default()
    }
}

/// One conversation: a turn at 0 and one at 600 s (the TTL is 300 s).
fn two_turns() -> Trace {
    Trace {
        conversations: vec![vec![
            Turn {
                at_ms: 0,
                prefix_tokens: P,
            },
            Turn {
                at_ms: 600_000,
                prefix_tokens: P,
            },
        ]],
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn no_warming_misses_the_turn_after_the_ttl() {
    let o = simulate(&two_turns(), Scenario::NoWarming, &config(0.01));
    assert!(close(o.token_cost, 2.0 * WRITE), "{o:?}");
    assert!(close(o.latency_lost_s, PREFILL_S));
    assert!(close(o.total_cost, 2.0 * WRITE + 0.01 * PREFILL_S));
    assert_eq!((o.returning_turns, o.hits, o.warms), (1, 0, 0));
}

#[test]
fn fixed_hits_and_then_warms_the_forgotten_conversation_until_the_horizon() {
    let o = simulate(&two_turns(), Scenario::Policy(Policy::Fixed), &config(0.01));
    // Warms at 240 and 480 s keep the cache for the turn at 600 s (a read);
    // then one every 240 s for the hour after: 15 more.
    assert_eq!(o.warms, 17);
    assert!(close(o.token_cost, WRITE + 17.0 * READ + READ), "{o:?}");
    assert_eq!(o.hits, 1);
    assert!(close(o.latency_lost_s, 0.0));
}

#[test]
fn one_ping_per_gap_is_not_enough_for_a_600_s_gap() {
    let o = simulate(
        &two_turns(),
        Scenario::Policy(Policy::Pings(1)),
        &config(0.01),
    );
    // The warm at 240 s keeps the cache to 540 s only; the turn misses;
    // after it, one more warm.
    assert_eq!(o.warms, 2);
    assert!(close(o.token_cost, WRITE + READ + WRITE + READ), "{o:?}");
    assert_eq!(o.hits, 0);
    assert!(close(o.latency_lost_s, PREFILL_S));
}

#[test]
fn two_pings_bridge_the_gap() {
    let o = simulate(
        &two_turns(),
        Scenario::Policy(Policy::Pings(2)),
        &config(0.0),
    );
    assert_eq!(o.warms, 4);
    assert_eq!(o.hits, 1);
    assert!(
        close(o.token_cost, WRITE + 2.0 * READ + READ + 2.0 * READ),
        "{o:?}"
    );
}

#[test]
fn breakeven_stops_after_the_warms_one_miss_would_cost() {
    // Tokens only: a miss costs 1.15 x P, a warm 0.1 x P: 11 warms fit.
    let o = simulate(
        &two_turns(),
        Scenario::Policy(Policy::Breakeven),
        &config(0.0),
    );
    assert_eq!(o.warms, 2 + 11);
    assert_eq!(o.hits, 1);
}

#[test]
fn the_oracle_warms_exactly_through_gaps_that_end_in_a_return() {
    let o = simulate(&two_turns(), Scenario::Oracle, &config(0.01));
    assert_eq!(o.warms, 2);
    assert!(close(o.token_cost, WRITE + 2.0 * READ + READ), "{o:?}");
    // With returns that come too late to be worth bridging, it takes the miss.
    let late = Trace {
        conversations: vec![vec![
            Turn {
                at_ms: 0,
                prefix_tokens: P,
            },
            Turn {
                at_ms: 4 * 3_600_000,
                prefix_tokens: P,
            },
        ]],
    };
    let o = simulate(&late, Scenario::Oracle, &config(0.0));
    assert_eq!((o.warms, o.hits), (0, 0));
}

#[test]
fn the_one_hour_cache_writes_dearer_and_keeps_longer() {
    let o = simulate(&two_turns(), Scenario::OneHourCache, &config(0.01));
    assert!(close(o.token_cost, 2.0 * 3e-6 * P as f64 + READ), "{o:?}");
    assert_eq!((o.hits, o.warms), (1, 0));
}

#[test]
fn adaptive_does_not_warm_conversations_that_never_come_back() {
    // 200 one-turn conversations, then one that returns: fixed burns warms
    // on all of them until the horizon; adaptive learns they do not return.
    let mut conversations: Vec<Vec<Turn>> = (0..200)
        .map(|i| {
            vec![Turn {
                at_ms: i * 1_000,
                prefix_tokens: P,
            }]
        })
        .collect();
    conversations.push(vec![
        Turn {
            at_ms: 300_000,
            prefix_tokens: P,
        },
        Turn {
            at_ms: 420_000,
            prefix_tokens: P,
        },
    ]);
    let trace = Trace { conversations };
    let fixed = simulate(&trace, Scenario::Policy(Policy::Fixed), &config(0.0));
    let adaptive = simulate(&trace, Scenario::Policy(Policy::Adaptive), &config(0.0));
    let none = simulate(&trace, Scenario::NoWarming, &config(0.0));
    assert!(
        adaptive.warms * 20 < fixed.warms,
        "{adaptive:?} vs {fixed:?}"
    );
    assert!(
        adaptive.total_cost <= none.total_cost * 1.05,
        "{adaptive:?} vs {none:?}"
    );
}

#[test]
fn the_warm_up_leaves_out_gaps_that_begin_in_it_for_every_scenario() {
    // Two conversations: the first gap (0 -> 600 s) begins in the warm-up
    // (the first half of the 1 200 s trace), the second (700 -> 1 200 s)
    // after it. Only the second conversation's gap, its first turn's write
    // and the warms it needs count.
    let trace = Trace {
        conversations: vec![
            two_turns().conversations[0].clone(),
            vec![
                Turn {
                    at_ms: 700_000,
                    prefix_tokens: P,
                },
                Turn {
                    at_ms: 1_200_000,
                    prefix_tokens: P,
                },
            ],
        ],
    };
    let warm_up = SimConfig {
        warm_up: 0.5,
        ..config(0.01)
    };
    let none = simulate(&trace, Scenario::NoWarming, &warm_up);
    assert!(close(none.token_cost, 2.0 * WRITE), "{none:?}");
    assert_eq!((none.returning_turns, none.hits), (1, 0));
    // The second gap is 500 s: one warm (at 940 s) bridges it, and its
    // turn reads. The gaps after each conversation's last turn (from 600 s
    // and 1 200 s) begin after the warm-up: one warm each.
    let one = simulate(&trace, Scenario::Policy(Policy::Pings(1)), &warm_up);
    assert_eq!((one.returning_turns, one.hits, one.warms), (1, 1, 3));
    assert!(close(one.token_cost, WRITE + 3.0 * READ + READ), "{one:?}");
    let cold = simulate(&trace, Scenario::Policy(Policy::Pings(1)), &config(0.01));
    assert_eq!((cold.returning_turns, cold.warms), (2, 4));
    // The warm-up is a share of the trace's own span: a trace on the Unix
    // epoch's clock gives the same figures.
    let mut epoch = trace.clone();
    for turn in epoch.conversations.iter_mut().flatten() {
        turn.at_ms += 1_700_000_000_000;
    }
    let shifted = simulate(&epoch, Scenario::Policy(Policy::Pings(1)), &warm_up);
    assert_eq!(shifted, one);
}

#[test]
fn choosing_the_cache_per_conversation_moves_long_gaps_to_the_one_hour_cache() {
    // "slow" returns every 20 minutes, "quick" every 2: the 5-minute
    // cache needs five warms per gap for the first, none for the second.
    let every = |gap_ms: u64| -> Vec<Turn> {
        (0..8)
            .map(|i| Turn {
                at_ms: i * gap_ms,
                prefix_tokens: P,
            })
            .collect()
    };
    let trace = |turns: Vec<Turn>| Trace {
        conversations: vec![turns],
    };
    let (slow, quick) = (trace(every(1_200_000)), trace(every(120_000)));
    let cost = |t: &Trace, s: Scenario| simulate(t, s, &config(0.01));
    let chosen = cost(&slow, Scenario::TtlChoice);
    let adaptive = cost(&slow, Scenario::Policy(Policy::Adaptive));
    let one_hour = cost(&slow, Scenario::OneHourCache);
    // It moves once the core's plan says the 1-hour cache costs less: its
    // gaps cost a miss or $0.015 of warms each, the move writes the prefix
    // once ($0.057), and after four gaps the move amortised over them
    // ($0.01425 a gap) is the cheaper. From then on its returns hit without
    // warms (adaptive alone, with one conversation to learn from, takes
    // misses).
    assert_eq!((chosen.hits, chosen.warms), (3, 0), "{chosen:?}");
    assert_eq!(chosen.plans.none, 1, "it ends kept by the provider");
    assert!(
        chosen.total_cost < adaptive.total_cost,
        "{chosen:?} vs {adaptive:?}"
    );
    assert!(
        chosen.total_cost >= one_hour.total_cost,
        "hindsight is cheaper still"
    );
    // A conversation with short gaps stays where it was: the same figures.
    let quick_chosen = cost(&quick, Scenario::TtlChoice);
    let quick_adaptive = cost(&quick, Scenario::Policy(Policy::Adaptive));
    assert_eq!(quick_chosen.warms, quick_adaptive.warms);
    assert!(close(quick_chosen.total_cost, quick_adaptive.total_cost));
    assert_eq!(quick_chosen.scenario, "adaptive+1h");
}
