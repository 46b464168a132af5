//! `cargo bench -p warming-storage`: acknowledged settings writes/s with group
//! commit vs one transaction per write (64 concurrent writers, same run), and
//! restore time for 100k and 1M conversations.

use std::sync::Arc;
use std::time::Instant;

use rusqlite::{params, Connection};
use warming_core::{ConversationId, IntervalLimits, Settings};
use warming_storage::{Storage, StorageOptions, Write};

const WRITERS: usize = 64;

fn writes_per_second(max_batch: usize, per_writer: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(
        Storage::open(
            &dir.path().join("bench.db"),
            StorageOptions {
                max_batch,
                ..StorageOptions::default()
            },
        )
        .unwrap(),
    );
    let start = Instant::now();
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let storage = storage.clone();
            std::thread::spawn(move || {
                for i in 0..per_writer {
                    let conversation = ConversationId::new(&format!("w{w}-{}", i % 16)).unwrap();
                    let settings = Settings {
                        enabled: i % 2 == 0,
                        interval_ms: 10_000 + i as u64,
                        policy: None,
                        interval_chosen: true,
                        enrolled: false,
                    };
                    storage
                        .write_blocking(Write::Settings {
                            conversation,
                            settings,
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (WRITERS * per_writer) as f64 / start.elapsed().as_secs_f64()
}

fn restore_seconds(conversations: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restore.db");
    drop(Storage::open(&path, StorageOptions::default()).unwrap());
    {
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO conversations (id, settings, request, model, next_warm_at, backend,
                       last_pct, last_expected_pct, last_warm_at, warm_count)
                     VALUES (?1, ?2, ?3, 'claude-sonnet', ?4, 'replica-1', 99.5, 100.0, ?4, 12)",
                )
                .unwrap();
            let request = r#"{"model":"claude-sonnet","max_tokens":1024,"system":[{"type":"text","text":"You are a helpful assistant.","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"hello"}]}"#;
            for i in 0..conversations {
                let settings = format!(r#"{{"enabled":true,"intervalMs":{}}}"#, 60_000 + i % 1000);
                insert
                    .execute(params![
                        format!("conv-{i:08}"),
                        settings,
                        request,
                        1_700_000_000_000i64 + i as i64
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let start = Instant::now();
    let storage = Storage::open(&path, StorageOptions::default()).unwrap();
    let restored = storage.load_all(&IntervalLimits::default()).unwrap();
    assert_eq!(restored.len(), conversations);
    start.elapsed().as_secs_f64()
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let per_writer = if quick { 5 } else { 100 };
    let single = writes_per_second(1, per_writer);
    let grouped = writes_per_second(StorageOptions::default().max_batch, per_writer);
    println!(
        "acknowledged settings writes/s, {WRITERS} concurrent writers: one transaction per write {single:.0}, group commit {grouped:.0}, ratio {:.1}x",
        grouped / single
    );
    let sizes: &[usize] = if quick {
        &[1_000]
    } else {
        &[100_000, 1_000_000]
    };
    for &n in sizes {
        println!(
            "restore of {n} conversations (open + load_all): {:.2} s",
            restore_seconds(n)
        );
    }
}
