//! `cargo bench -p warming-storage --bench templates`: templates as blocks
//! beside the whole-request rows of schema 6, in one run, with a realistic
//! agent request (`bench/agent_template.rs`):
//! - disk bytes per conversation;
//! - warms built per second (`Storage::template`, through the block cache)
//!   beside reading the whole request of one row;
//! - template writes acknowledged per second (a settle's), blocks beside a
//!   whole-request upsert;
//! - restore of 100k / 1M conversations whose templates are blocks.

#[path = "../../../bench/agent_template.rs"]
mod agent_template;

use std::sync::Arc;
use std::time::Instant;

use agent_template::{request, shared_head};
use rusqlite::{params, Connection};
use warming_core::{ConversationId, IntervalLimits, Template};
use warming_storage::{Storage, StorageOptions, Write};

fn id(i: usize) -> ConversationId {
    ConversationId::new(&format!("conv-{i:08}")).unwrap()
}

/// Writes `n` templates through the storage; returns acknowledged writes/s.
fn write_blocks(storage: &Storage, templates: &[Arc<Template>]) -> f64 {
    let start = Instant::now();
    let acks: Vec<_> = templates
        .iter()
        .enumerate()
        .map(|(i, t)| {
            storage.submit(Write::Template {
                conversation: id(i),
                template: t.clone(),
            })
        })
        .collect();
    for ack in acks {
        ack.blocking_recv().unwrap().unwrap();
    }
    templates.len() as f64 / start.elapsed().as_secs_f64()
}

/// The same rows as schema 6 kept them: the whole request per conversation,
/// in one transaction per 512 like the writer's group commit.
fn write_whole(conn: &mut Connection, templates: &[Arc<Template>]) -> f64 {
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE conversations (id TEXT PRIMARY KEY, request TEXT, model TEXT, cwd TEXT);",
    )
    .unwrap();
    let start = Instant::now();
    for (batch, chunk) in templates.chunks(512).enumerate() {
        let tx = conn.transaction().unwrap();
        for (j, t) in chunk.iter().enumerate() {
            tx.prepare_cached(
                "INSERT INTO conversations (id, request, model, cwd) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET request = excluded.request",
            )
            .unwrap()
            .execute(params![
                id(batch * 512 + j).as_str(),
                t.request_json(),
                t.model(),
                t.cwd()
            ])
            .unwrap();
        }
        tx.commit().unwrap();
    }
    templates.len() as f64 / start.elapsed().as_secs_f64()
}

fn file_bytes(path: &std::path::Path) -> u64 {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
        .unwrap();
    std::fs::metadata(path).unwrap().len()
}

fn restore_seconds(n: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restore.db");
    {
        let storage = Storage::open(&path, StorageOptions::default()).unwrap();
        // A short history each: restore reads layouts and summaries, never
        // the blocks, so their size does not matter here.
        let system = "s".repeat(45_000);
        for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
            let acks: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let t = Template::new(
                        serde_json::json!({"model": "claude-sonnet-4-5", "system": system,
                            "messages": [{"role": "user", "content": format!("hi {i}")},
                                {"role": "assistant", "content": "ok"},
                                {"role": "user", "content": format!("more {i}")}]}),
                        None,
                        None,
                    );
                    storage.submit(Write::Template {
                        conversation: id(i),
                        template: Arc::new(t),
                    })
                })
                .collect();
            for ack in acks {
                ack.blocking_recv().unwrap().unwrap();
            }
        }
    }
    let start = Instant::now();
    let storage = Storage::open(&path, StorageOptions::default()).unwrap();
    let restored = storage.load_all(&IntervalLimits::default()).unwrap();
    assert_eq!(restored.len(), n);
    start.elapsed().as_secs_f64()
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick { 200 } else { 5_000 };
    let head = shared_head();
    let templates: Vec<Arc<Template>> = (0..n)
        .map(|i| Arc::new(Template::from_stored(request(&head, i), None, None).unwrap()))
        .collect();
    let body_bytes: u64 = templates.iter().map(|t| t.bytes()).sum();
    let unique_bytes = body_bytes - n as u64 * head.len() as u64;

    let dir = tempfile::tempdir().unwrap();
    let blocks_path = dir.path().join("blocks.db");
    let storage = Storage::open(&blocks_path, StorageOptions::default()).unwrap();
    let blocks_rate = write_blocks(&storage, &templates);
    let whole_path = dir.path().join("whole.db");
    let whole_rate = write_whole(&mut Connection::open(&whole_path).unwrap(), &templates);
    println!(
        "template writes acknowledged/s, {n} conversations: whole request {whole_rate:.0}, blocks {blocks_rate:.0}, ratio {:.2}",
        blocks_rate / whole_rate
    );

    // Warms built: random conversations, as timers fire.
    let reads = if quick { 500 } else { 50_000 };
    let start = Instant::now();
    for k in 0..reads {
        let t = storage.template(&id((k * 7_919) % n)).unwrap().unwrap();
        std::hint::black_box(t.request_json());
    }
    let blocks_reads = reads as f64 / start.elapsed().as_secs_f64();
    let whole = Connection::open(&whole_path).unwrap();
    let start = Instant::now();
    for k in 0..reads {
        let text: String = whole
            .prepare_cached("SELECT request FROM conversations WHERE id = ?1")
            .unwrap()
            .query_row([id((k * 7_919) % n).as_str()], |r| r.get(0))
            .unwrap();
        std::hint::black_box(Template::from_stored(text, None, None));
    }
    let whole_reads = reads as f64 / start.elapsed().as_secs_f64();
    println!(
        "warm templates read/s: whole request {whole_reads:.0}, blocks through the cache {blocks_reads:.0}, ratio {:.2}",
        blocks_reads / whole_reads
    );
    drop(storage);

    let blocks_disk = file_bytes(&blocks_path);
    let whole_disk = file_bytes(&whole_path);
    println!(
        "disk bytes per conversation: whole request {}, blocks {}, its own unique bytes {} (ratio blocks/whole {:.3})",
        whole_disk / n as u64,
        blocks_disk / n as u64,
        unique_bytes / n as u64,
        blocks_disk as f64 / whole_disk as f64
    );

    for &size in if quick {
        &[1_000][..]
    } else {
        &[100_000, 1_000_000][..]
    } {
        println!(
            "restore of {size} conversations with block templates (open + load_all): {:.2} s",
            restore_seconds(size)
        );
    }
}
