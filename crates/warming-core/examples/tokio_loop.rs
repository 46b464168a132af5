//! A `Warmer` in a tokio task: sleep until the next deadline or a command,
//! carry out its outputs, repeat. Run: `cargo run -p warming-core --example tokio_loop`.
//!
//! One conversation with a 200 ms interval is warmed for a second by a
//! provider that answers after 20 ms; warms are spawned, and their outcome
//! comes back to the loop, which alone touches the `Warmer`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use warming_core::{
    Config, ConversationId, Event, IntervalLimits, SettingsChange, Template, Timestamp, Usage,
    WarmAction, WarmToken, Warmer, Write,
};

fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// A provider call: 20 ms, then a cache hit of 8 000 tokens.
async fn send_warm() -> Usage {
    tokio::time::sleep(Duration::from_millis(20)).await;
    Usage::anthropic(3, 8_000, 0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let config = Config::builder()
        .limits(IntervalLimits::new(100, 60_000))
        .build()
        .expect("a valid config");
    let mut warmer = Warmer::new(config);
    let chat = ConversationId::new("chat-1").expect("a valid id");
    let change = SettingsChange {
        enabled: Some(true),
        interval_ms: Some(200.0),
        ..SettingsChange::default()
    };
    let op = warmer.update_settings(now(), &chat, change);
    warmer.persisted(now(), op, true);
    let system = "You are a careful assistant for this code base. ".repeat(120);
    let request = serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Summarise the plan."}]});
    warmer.turn_settled(
        now(),
        &chat,
        Some(Template::new(request, None, None).into()),
        None,
    );

    let (done_tx, mut done) = mpsc::unbounded_channel::<(ConversationId, WarmToken, Usage)>();
    let stop = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(stop);
    let mut warms = 0;
    loop {
        warmer.handle_timeout(now());
        // The writes first (a warm may read what they store), then the
        // warms, then the events.
        while let Some(write) = warmer.poll_write() {
            match write {
                Write::Settings { ack, .. }
                | Write::Backend { ack, .. }
                | Write::Delete { ack, .. } => {
                    warmer.persisted(now(), ack, true);
                }
                Write::Record { record, answers } => {
                    warms += usize::from(answers.is_some());
                    println!(
                        "warm {warms}: {:?}, hit {:.1}%",
                        record.outcome,
                        record.pct.unwrap_or(0.0)
                    );
                }
                // Nothing is kept on disk in this example.
                Write::Template { .. } | Write::Schedule { .. } | Write::Rhythm { .. } => {}
                other => eprintln!("a write this example does not know: {other:?}"),
            }
        }
        while let Some(action) = warmer.poll_warm() {
            match action {
                WarmAction::Send(warm) => {
                    let tx = done_tx.clone();
                    tokio::spawn(async move {
                        let usage = send_warm().await;
                        let _ = tx.send((warm.conversation, warm.token, usage));
                    });
                }
                // The warm task's answer is sent all the same; the engine
                // ignores an aborted warm's outcome by its token.
                WarmAction::Abort { .. } => {}
                // No generation of the app's own runs here.
                WarmAction::AbortGeneration { .. } => {}
                other => eprintln!("an action this example does not know: {other:?}"),
            }
        }
        while let Some(event) = warmer.poll_event() {
            match event {
                Event::Changed(state) => println!("next warm at {:?}", state.next_warm_at),
                Event::TurnReturned { .. } => {}
                other => eprintln!("an event this example does not know: {other:?}"),
            }
        }
        let sleep = warmer.poll_timeout().map_or(Duration::from_secs(60), |at| {
            Duration::from_millis(at.millis_since(now()))
        });
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(sleep) => {}
            Some((id, token, usage)) = done.recv() => {
                warmer.warm_completed(now(), &id, token, usage);
            }
        }
    }
    assert!(
        warms >= 3,
        "only {warms} warms in a second at a 200 ms interval"
    );
}
