//! Driving a `Warmer` by hand on a virtual clock: the whole contract in one
//! loop (`cargo run -p warming-core --example sync_loop`). The store
//! acknowledges writes at once; the provider is a cache with a 5-minute TTL.

use warming_core::{
    Config, ConversationId, Effect, SettingsChange, Template, Timestamp, Usage, Warmer,
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
        while let Some(effect) = warmer.poll_effect() {
            match effect {
                Effect::Warm(warm) => {
                    let usage = cache.serve(now);
                    if let Some(record) =
                        warmer.warm_completed(now, &warm.conversation, warm.token, usage)
                    {
                        println!(
                            "{now} warm: {:?}, {:.1}% read from the cache",
                            record.outcome,
                            record.pct.unwrap_or(0.0)
                        );
                    }
                }
                // Writes: acknowledged at once, as a store would once committed.
                Effect::PersistSettings { op, .. }
                | Effect::PersistBackend { op, .. }
                | Effect::PersistDelete { op, .. } => {
                    warmer.persisted(now, op, true);
                }
                Effect::Notify(state) => println!("{now} next warm at {:?}", state.next_warm_at),
                // Nothing here runs concurrently: no warm is in flight when
                // another input comes, and the app's own generation has
                // ended before the next input.
                Effect::AbortWarm { .. } | Effect::AbortGeneration { .. } => {}
                // This app keeps nothing on disk: a restart starts afresh.
                Effect::SaveTemplate { .. }
                | Effect::SaveSchedule { .. }
                | Effect::SaveRhythm { .. } => {}
                // Records also come back from `warm_completed`, printed above.
                Effect::RecordWarm(_) => {}
                Effect::TurnReturned { idle_ms, warms, .. } => {
                    println!("{now} back after {idle_ms} ms, {warms} warms in the gap")
                }
                // A later release's effect: say so rather than drop it.
                other => eprintln!("{now} an effect this example does not know: {other:?}"),
            }
        }
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
