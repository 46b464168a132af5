//! `cargo bench -p warming-core`: events/s of a mixed workload over 100k and
//! 1M conversations, and resident bytes per armed conversation.
//!
//! The baseline measured in the same run is a bare `HashMap` update per
//! event (the least any engine must do to track per-conversation state), so
//! the figures travel across machines as ratios.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use warming_core::{
    Config, ConversationId, Policy, SettingsChange, Template, Timestamp, Usage, WarmAction, Warmer,
};

const EVENTS: usize = 2_000_000;
static COMPLETIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn ids(n: usize) -> Vec<ConversationId> {
    (0..n)
        .map(|i| ConversationId::new(&format!("conv-{i:08}")).unwrap())
        .collect()
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Builds an engine with `n` enabled, armed conversations.
fn armed_engine(ids: &[ConversationId], t0: Timestamp) -> Warmer {
    // One shared template: the figure is the engine's own bookkeeping; a
    // real template is the request body itself and costs what it costs.
    let template = Arc::new(Template::new(
        serde_json::json!({"model": "m", "system": "s"}),
        None,
        None,
    ));
    // `fixed`: the engine's own cost, every deadline firing; the policies'
    // decisions are measured by `warming simulate`.
    let mut warmer = Warmer::new(
        Config::builder()
            .policy(Policy::Fixed)
            .build()
            .expect("a valid config"),
    );
    for id in ids {
        let op = warmer.update_settings(
            t0,
            id,
            SettingsChange {
                enabled: Some(true),
                ..Default::default()
            },
        );
        warmer.persisted(t0, op, true);
        warmer.turn_settled(t0, id, Some(template.clone()), None);
        while warmer.poll_write().is_some()
            || warmer.poll_warm().is_some()
            || warmer.poll_event().is_some()
        {}
    }
    warmer
}

/// Runs the mixed workload; returns the number of inputs fed.
fn mixed(warmer: &mut Warmer, ids: &[ConversationId], mut now: Timestamp) -> usize {
    let n = ids.len();
    let mut inputs = 0;
    let mut warms = Vec::new();
    for i in 0..EVENTS {
        let id = &ids[(i.wrapping_mul(7_919)) % n];
        match i % 10 {
            0..=2 => warmer.turn_started(now, id),
            3..=5 => warmer.turn_settled(now, id, None, None),
            6 => {
                let op = warmer.update_settings(
                    now,
                    id,
                    SettingsChange {
                        interval_ms: Some(60_000.0 + (i % 100) as f64 * 1_000.0),
                        ..Default::default()
                    },
                );
                warmer.persisted(now, op, true);
                inputs += 1;
            }
            7 => {
                let _ = warmer.warm_now(now, id);
            }
            _ => {
                now = now.plus_millis(50);
                warmer.handle_timeout(now);
            }
        }
        inputs += 1;
        while let Some(write) = warmer.poll_write() {
            black_box(write);
        }
        while let Some(action) = warmer.poll_warm() {
            if let WarmAction::Send(w) = action {
                warms.push((w.conversation, w.token));
            }
        }
        while let Some(event) = warmer.poll_event() {
            black_box(event);
        }
        COMPLETIONS.fetch_add(warms.len(), std::sync::atomic::Ordering::Relaxed);
        for (id, token) in warms.drain(..) {
            warmer.warm_completed(now, &id, token, Usage::anthropic(3, 4_000, 0));
            inputs += 1;
            while let Some(write) = warmer.poll_write() {
                black_box(write);
            }
            while let Some(event) = warmer.poll_event() {
                black_box(event);
            }
        }
    }
    inputs
}

fn baseline(ids: &[ConversationId]) -> usize {
    let mut map: HashMap<ConversationId, (u64, bool)> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        map.insert(id.clone(), (i as u64, false));
    }
    let n = ids.len();
    for i in 0..EVENTS {
        let id = &ids[(i.wrapping_mul(7_919)) % n];
        if let Some(entry) = map.get_mut(id) {
            entry.0 += 1;
            entry.1 = !entry.1;
        }
    }
    black_box(map.len());
    EVENTS
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: stay quick there.
    let quick = !std::env::args().any(|a| a == "--bench");
    let sizes: &[usize] = if quick {
        &[1_000]
    } else {
        &[100_000, 1_000_000]
    };
    let t0 = Timestamp::from_millis(1_700_000_000_000);
    println!("warming-core engine benchmark ({EVENTS} lifecycle/command events per run, plus the warms they fire)");
    for &n in sizes {
        let ids = ids(n);

        let start = Instant::now();
        let base_events = baseline(&ids);
        let base_rate = base_events as f64 / start.elapsed().as_secs_f64();

        let before = resident_bytes();
        let mut warmer = armed_engine(&ids, t0);
        let after = resident_bytes();
        let armed = warmer.armed_count().max(1);
        let per_armed = after.saturating_sub(before) as f64 / armed as f64;

        let start = Instant::now();
        let events = mixed(&mut warmer, &ids, t0);
        let rate = events as f64 / start.elapsed().as_secs_f64();
        println!(
            "{n:>9} conversations: {:>6.2} M events/s (baseline HashMap update {:>6.2} M/s, ratio {:.2}); {per_armed:.0} B resident per armed conversation ({armed} armed)",
            rate / 1e6,
            base_rate / 1e6,
            rate / base_rate,
        );
        println!(
            "{:>9} of those inputs were warm completions (timers firing in deadline order)",
            COMPLETIONS.swap(0, std::sync::atomic::Ordering::Relaxed)
        );
    }
}
