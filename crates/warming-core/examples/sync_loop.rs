//! Driving a `Warmer` by hand on a virtual clock: the whole contract in one
//! loop (`cargo run -p warming-core --example sync_loop`). The store
//! acknowledges writes at once; the provider is a cache with a 5-minute TTL.

use warming_core::{
    Config, ConversationId, Event, SettingsChange, Template, Timestamp, Usage, WarmAction, Warmer,
    Write,
};

struct Cache {
    expires_at: Timestamp,
    prefix_tokens: u64,
}

impl Cache {
    /// A request reads the prefix if still cached, else writes it.
    fn serve(&mut self, now: Timestamp) -> Usage {
        let hit = now < self.expires_at;
        self.expires_at = now.plus_millis(300_000);
        if hit {
            Usage::anthropic(3, self.prefix_tokens, 0)
        } else {
            Usage::anthropic(3, 0, self.prefix_tokens)
        }
    }
}

fn main() {
    let mut warmer = Warmer::new(Config::default());
    let (expires_at, prefix_tokens) = (Timestamp::from_millis(0), 1_500);
    let mut cache = Cache {
        expires_at,
        prefix_tokens,
    };
    let chat = ConversationId::new("chat-1").expect("a valid id");
    let mut now = Timestamp::from_millis(1_800_000_000_000);

    // Warming on; the write is acknowledged at once.
    let change = SettingsChange {
        enabled: Some(true),
        ..SettingsChange::default()
    };
    let op = warmer.update_settings(now, &chat, change);
    warmer.persisted(now, op, true);

    // A turn: the app calls the provider, then reports it with its request.
    warmer.turn_started(now, &chat);
    cache.serve(now);
    let system = "You are a careful assistant for this code base. ".repeat(120);
    let request = serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Summarise the plan."}]});
    let template = Template::new(request, None, None);
    warmer.turn_settled(now, &chat, Some(template.into()), None);

    // The user reads for 20 minutes. The loop carries out what each input
    // asked for, then sleeps (here: jumps) to the next deadline.
    let back_at = now.plus_millis(20 * 60_000);
    loop {
        drain(&mut warmer, &mut cache, now);
        match warmer.poll_timeout().filter(|&due| due < back_at) {
            Some(due) => {
                now = due;
                warmer.handle_timeout(now);
            }
            None => break,
        }
    }

    // The next turn reads the cache that the warms kept.
    let usage = cache.serve(back_at);
    println!(
        "back after 20 minutes: {} tokens read from the cache",
        usage.cache_read_tokens
    );
    assert!(usage.cache_read_tokens > 0, "the cache went cold");
}

/// Carries out everything the last input asked for: the writes first (a
/// warm may read what they store), then the warms, then the events.
fn drain(warmer: &mut Warmer, cache: &mut Cache, now: Timestamp) {
    loop {
        if let Some(write) = warmer.poll_write() {
            match write {
                // Acknowledged at once, as a store would once committed.
                Write::Settings { ack, .. }
                | Write::Backend { ack, .. }
                | Write::Delete { ack, .. } => {
                    warmer.persisted(now, ack, true);
                }
                Write::Record { record, .. } => println!(
                    "{now} {:?}: {:?}, {:.1}% read from the cache",
                    record.trigger,
                    record.outcome,
                    record.pct.unwrap_or(0.0)
                ),
                // This app keeps nothing on disk: a restart starts afresh.
                Write::Template { .. } | Write::Schedule { .. } | Write::Rhythm { .. } => {}
                // A later release's write: say so rather than drop it.
                other => eprintln!("{now} a write this example does not know: {other:?}"),
            }
        } else if let Some(action) = warmer.poll_warm() {
            match action {
                WarmAction::Send(warm) => {
                    let usage = cache.serve(now);
                    warmer.warm_completed(now, &warm.conversation, warm.token, usage);
                }
                // Nothing here runs concurrently: no warm is in flight when
                // another input comes, and the app's own generation has
                // ended before the next input.
                WarmAction::Abort { .. } | WarmAction::AbortGeneration { .. } => {}
                other => eprintln!("{now} an action this example does not know: {other:?}"),
            }
        } else if let Some(event) = warmer.poll_event() {
            match event {
                Event::Changed(state) => println!("{now} next warm at {:?}", state.next_warm_at),
                Event::TurnReturned { idle_ms, warms, .. } => {
                    println!("{now} back after {idle_ms} ms, {warms} warms in the gap")
                }
                other => eprintln!("{now} an event this example does not know: {other:?}"),
            }
        } else {
            return;
        }
    }
}
