//! `cargo bench -p warming-core --bench templates`: resident bytes per armed
//! conversation with a realistic agent template (a 45 KB system prompt and
//! tools every conversation shares, 2-20 KB of its own history), with the
//! template bodies kept in memory (the engine's default) and detached
//! (`Config::detach_templates`, as `warming serve` runs it), in one run.

use std::sync::Arc;

#[path = "../../../bench/agent_template.rs"]
mod agent_template;

use agent_template::{request, shared_head};
use warming_core::{Config, ConversationId, Policy, SettingsChange, Template, Timestamp, Warmer};

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Arms `n` conversations, each settled with the template `template(i)`
/// gives; returns resident bytes grown per conversation.
fn per_conversation(n: usize, detach: bool, template: impl Fn(usize) -> Template) -> u64 {
    let t0 = Timestamp::from_millis(1_800_000_000_000);
    let before = resident_bytes();
    let mut warmer = Warmer::new(
        Config::builder()
            .policy(Policy::Fixed)
            .detach_templates(detach)
            .build()
            .expect("a valid config"),
    );
    for i in 0..n {
        let id = ConversationId::new(&format!("conv-{i:08}")).unwrap();
        let op = warmer.update_settings(
            t0,
            &id,
            SettingsChange {
                enabled: Some(true),
                ..Default::default()
            },
        );
        warmer.persisted(t0, op, true);
        warmer.turn_settled(t0, &id, Some(Arc::new(template(i))), None);
        // The store would take the body here and let it go.
        while warmer.poll_write().is_some()
            || warmer.poll_warm().is_some()
            || warmer.poll_event().is_some()
        {}
    }
    let grown = resident_bytes().saturating_sub(before);
    assert_eq!(warmer.armed_count(), n);
    drop(warmer);
    grown / n as u64
}

/// Runs one measurement in this process: `measure MODE N`.
fn measure(mode: &str, n: usize) -> u64 {
    let head = shared_head();
    let full = |i: usize| Template::from_stored(request(&head, i), None, None).unwrap();
    match mode {
        "resident" => per_conversation(n, false, full),
        "detached" => per_conversation(n, true, full),
        _ => {
            // At 1M, building and detaching 1M 50 KB bodies takes minutes and
            // ends in the same state: arm detached templates directly.
            let summary = full(0).summary();
            per_conversation(n, true, |_| Template::from_summary(summary.clone()))
        }
    }
}

/// Each measurement in a fresh process: memory one run freed would be
/// reused by the next and hide its growth.
fn in_child(mode: &str, n: usize) -> u64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["measure", mode, &n.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("measure") {
        println!("{}", measure(&args[2], args[3].parse().unwrap()));
        return;
    }
    let quick = !args.iter().any(|a| a == "--bench");
    let head = shared_head();
    println!(
        "template: {} bytes shared, {}..{} bytes per conversation",
        head.len(),
        request(&head, 0).len(),
        request(&head, 11).len()
    );
    let (resident_n, detached_n, summaries_n) = if quick {
        (200, 200, 1_000)
    } else {
        (20_000, 100_000, 1_000_000)
    };
    let resident = in_child("resident", resident_n);
    println!(
        "bodies in memory (engine default), {resident_n} armed: {resident} B per conversation"
    );
    let detached = in_child("detached", detached_n);
    println!("detached (warming serve), {detached_n} armed: {detached} B per conversation");
    let summaries = in_child("summaries", summaries_n);
    println!("detached, {summaries_n} armed: {summaries} B per conversation");
    println!(
        "ratio, detached to bodies in memory: {:.4}",
        detached as f64 / resident.max(1) as f64
    );
}
