//! `cargo bench -p warming-storage-postgres` (needs `WARMING_POSTGRES_URL`,
//! e.g. from `eval "$(scripts/postgres.sh start)"`): the database work of
//! completed warms, per second, with 1, 2 and 3 instances' writers on one
//! database, beside a bare `FOR UPDATE SKIP LOCKED` claim loop (batches of
//! 10, 4 clients) on a queue table of the same size, in the same run.
//!
//! A completed warm is what an instance writes for it: the history row, the
//! conversation's stats, its next schedule (and, every so often, the trim
//! of its history), written behind as the service does. No provider is in
//! the loop: this is the database's share of a warm, to set against the
//! database's ceiling for claiming due work.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use warming_core::{ConversationId, Timestamp, Usage, WarmRecord, WarmTrigger};
use warming_service::{Store, Write};
use warming_storage_postgres::{PgOptions, PgStorage};

const CONVERSATIONS: usize = 6_000;
const RUN: Duration = Duration::from_secs(10);
/// Writes queued before waiting for their commit: the service writes
/// behind, so its queue is this deep at most by the writer's batch size.
const CHUNK: usize = 1_024;

fn main() {
    let Ok(url) = std::env::var("WARMING_POSTGRES_URL") else {
        eprintln!("WARMING_POSTGRES_URL is not set: start one with scripts/postgres.sh; skipped");
        return;
    };
    let bare = bare_claims_per_second(&fresh_database(&url, "bench_bare"));
    println!("bare SKIP LOCKED claims/s (batches of 10, 4 clients): {bare:.0}");
    for instances in 1..=3 {
        let db = fresh_database(&url, &format!("bench_warms_{instances}"));
        let rate = warms_per_second(&db, instances);
        println!(
            "{instances} instance(s): {rate:.0} warms/s completed ({:.2}x the bare claim loop)",
            rate / bare
        );
    }
}

/// Creates (or re-creates) database `name` beside the one in `url`.
fn fresh_database(url: &str, name: &str) -> String {
    let mut admin = Client::connect(url, NoTls).expect("connect");
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin
            .batch_execute(&statement)
            .expect("create the bench database");
    }
    let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
    format!("{base}/{name}")
}

fn bare_claims_per_second(url: &str) -> f64 {
    let mut client = Client::connect(url, NoTls).expect("connect");
    client
        .batch_execute(&format!(
            "CREATE TABLE due (id TEXT PRIMARY KEY, due_at TIMESTAMPTZ NOT NULL,
               lease_owner TEXT, lease_until TIMESTAMPTZ, version BIGINT NOT NULL DEFAULT 0);
             CREATE INDEX due_by_time ON due(due_at);
             INSERT INTO due (id, due_at)
               SELECT 'c-' || i, now() FROM generate_series(1, {CONVERSATIONS}) i;"
        ))
        .expect("the queue table");
    let claimed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, claimed, stop) = (url.to_owned(), claimed.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut client = Client::connect(&url, NoTls).expect("connect");
                let claim = client
                    .prepare(
                        "WITH c AS (SELECT id FROM due WHERE due_at <= now() ORDER BY due_at
                           LIMIT 10 FOR UPDATE SKIP LOCKED)
                         UPDATE due SET due_at = now(),
                           lease_owner = 'bench', lease_until = now() + interval '10 seconds',
                           version = version + 1
                         FROM c WHERE due.id = c.id",
                    )
                    .expect("prepare");
                while !stop.load(Ordering::Relaxed) {
                    let mut tx = client.transaction().expect("begin");
                    let n = tx.execute(&claim, &[]).expect("claim");
                    tx.commit().expect("commit");
                    claimed.fetch_add(n, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("a claiming client");
    }
    claimed.load(Ordering::Relaxed) as f64 / RUN.as_secs_f64()
}

fn warms_per_second(url: &str, instances: usize) -> f64 {
    let options = PgOptions {
        // Small enough that trims delete rows within the run.
        history_cap: 20,
        ..PgOptions::default()
    };
    let stores: Vec<_> = (0..instances)
        .map(|_| Arc::new(PgStorage::open(url, options).expect("open")))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let ids: Vec<ConversationId> = (0..CONVERSATIONS)
        .map(|i| ConversationId::new(&format!("c-{i}")).expect("id"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        stores[i % instances].submit_behind(schedule(id, 0));
    }
    for store in &stores {
        runtime.block_on(store.flush()).expect("arm");
    }
    let completed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(instance, store)| {
            let (store, completed, stop) = (store.clone(), completed.clone(), stop.clone());
            let mine: Vec<ConversationId> = ids
                .iter()
                .skip(instance)
                .step_by(instances)
                .cloned()
                .collect();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                let mut round = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    for chunk in mine.chunks(CHUNK) {
                        for id in chunk {
                            store.submit_behind(Write::Warm(warm(id, round)));
                            store.submit_behind(schedule(id, round + 1));
                        }
                        runtime.block_on(store.flush()).expect("commit");
                        completed.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    let start = Instant::now();
    let before = completed.load(Ordering::Relaxed);
    std::thread::sleep(RUN);
    let done = completed.load(Ordering::Relaxed) - before;
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("a writer");
    }
    done as f64 / elapsed.as_secs_f64()
}

fn schedule(id: &ConversationId, round: u64) -> Write {
    Write::Schedule {
        conversation: id.clone(),
        next_warm_at: Some(Timestamp::from_millis(1_000 * round)),
    }
}

fn warm(id: &ConversationId, round: u64) -> WarmRecord {
    let at = Timestamp::from_millis(1_000 * round);
    WarmRecord::answered(
        id.clone(),
        WarmTrigger::Scheduled,
        (at, at, Timestamp::from_millis(1_000 * round + 40)),
        Usage::anthropic(3, 4_000, 0),
        Some("backend-a".into()),
    )
}
