//! The writer thread: applies writes in arrival order, many per transaction.

use std::sync::mpsc::Receiver;

use rusqlite::{params, Connection, Transaction};
use warming_core::{ConversationId, WarmOutcome, WarmRecord, WarmTrigger};
pub use warming_service::Write;
use warming_storage_shared::jobs::{answer, next_batch, writes};

use crate::WriteError;

/// A write waiting for the writer, with whoever waits for its commit.
pub(crate) type Job = warming_storage_shared::jobs::Job<WriteError>;

/// How the writer batches and trims.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterConfig {
    /// Most writes committed in one transaction.
    pub max_batch: usize,
    /// Most history rows kept per conversation.
    pub history_cap: usize,
}

/// Runs until a `Stop` job or until every sender is gone.
pub(crate) fn run(mut conn: Connection, jobs: Receiver<Job>, config: WriterConfig) {
    while let Ok(first) = jobs.recv() {
        let batch = next_batch(&jobs, first, config.max_batch);
        let results = commit_batch(&mut conn, &batch, config.history_cap);
        if answer(batch, results) {
            break;
        }
    }
}

/// Applies a batch in one transaction. The common case (every write valid)
/// runs straight through; if any write fails, the batch is rolled back and
/// replayed with one savepoint per write, so a bad write fails alone. A
/// failed commit fails them all.
fn commit_batch(
    conn: &mut Connection,
    batch: &[Job],
    history_cap: usize,
) -> Vec<Result<(), WriteError>> {
    let all_failed = |e: rusqlite::Error| vec![Err(WriteError::Sqlite(e.to_string())); batch.len()];
    let fast = (|| {
        let tx = conn.transaction()?;
        for write in writes(batch) {
            apply(&tx, write, history_cap)?;
        }
        tx.commit()
    })();
    if fast.is_ok() {
        return vec![Ok(()); batch.len()];
    }
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return all_failed(e),
    };
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let result = match job {
            Job::Write(write, _) => apply_isolated(&mut tx, write, history_cap),
            Job::Flush(_) | Job::Stop => Ok(()),
        };
        results.push(result);
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => all_failed(e),
    }
}

fn apply_isolated(
    tx: &mut Transaction<'_>,
    write: &Write,
    history_cap: usize,
) -> Result<(), WriteError> {
    let to_error = |e: rusqlite::Error| WriteError::Sqlite(e.to_string());
    let savepoint = tx.savepoint().map_err(to_error)?;
    apply(&savepoint, write, history_cap).map_err(to_error)?;
    savepoint.commit().map_err(to_error)
}

fn apply(conn: &Connection, write: &Write, history_cap: usize) -> rusqlite::Result<()> {
    match write {
        Write::Settings {
            conversation,
            settings,
        } => upsert(
            conn,
            UPSERT_SETTINGS,
            conversation,
            warming_service::stored::settings_to_json(settings),
        ),
        Write::Backend {
            conversation,
            backend,
        } => upsert(conn, UPSERT_BACKEND, conversation, &**backend),
        Write::Template {
            conversation,
            template,
        } => crate::templates::store(conn, conversation, template),
        Write::Schedule {
            conversation,
            next_warm_at,
        } => {
            let at = next_warm_at.map(|t| millis_to_sql(t.as_millis()));
            upsert(conn, UPSERT_SCHEDULE, conversation, at)
        }
        Write::Warm(record) => append_warm(conn, record, history_cap),
        Write::Rhythm {
            conversation,
            depth,
            gaps,
            idle_since,
        } => {
            let gaps = serde_json::to_string(gaps).unwrap_or_default();
            conn.prepare_cached(
                "INSERT INTO conversations (id, depth, gaps, idle_since) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET
                   depth = excluded.depth, gaps = excluded.gaps, idle_since = excluded.idle_since",
            )?
            .execute(params![
                conversation.as_str(),
                depth,
                gaps,
                millis_to_sql(idle_since.as_millis())
            ])?;
            Ok(())
        }
        Write::Ledger {
            conversation,
            ledger,
        } => {
            // An update, not an upsert: a deleted conversation stays gone.
            let ledger = serde_json::to_string(ledger).unwrap_or_default();
            conn.prepare_cached("UPDATE conversations SET ledger = ?2 WHERE id = ?1")?
                .execute(params![conversation.as_str(), ledger])?;
            Ok(())
        }
        Write::Delete { conversation } => {
            crate::templates::forget(conn, conversation)?;
            let id = conversation.as_str();
            conn.prepare_cached("DELETE FROM warm_history WHERE conversation = ?1")?
                .execute([id])?;
            conn.prepare_cached("DELETE FROM conversations WHERE id = ?1")?
                .execute([id])?;
            Ok(())
        }
        Write::Meta { key, value } => {
            conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
            Ok(())
        }
    }
}

/// Statements that set one column of a conversation's row, creating it.
const UPSERT_SETTINGS: &str = "INSERT INTO conversations (id, settings) VALUES (?1, ?2)
     ON CONFLICT(id) DO UPDATE SET settings = excluded.settings";
const UPSERT_BACKEND: &str = "INSERT INTO conversations (id, backend) VALUES (?1, ?2)
     ON CONFLICT(id) DO UPDATE SET backend = excluded.backend";
const UPSERT_SCHEDULE: &str = "INSERT INTO conversations (id, next_warm_at) VALUES (?1, ?2)
     ON CONFLICT(id) DO UPDATE SET next_warm_at = excluded.next_warm_at";

fn upsert(
    conn: &Connection,
    sql: &'static str,
    conversation: &ConversationId,
    value: impl rusqlite::ToSql,
) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?
        .execute(params![conversation.as_str(), value])?;
    Ok(())
}

fn append_warm(conn: &Connection, r: &WarmRecord, history_cap: usize) -> rusqlite::Result<()> {
    let id = r.conversation_id.as_str();
    conn.prepare_cached("INSERT OR IGNORE INTO conversations (id) VALUES (?1)")?
        .execute([id])?;
    let usage = r.usage.unwrap_or_default();
    let tokens = |n: u64| r.usage.map(|_| i64::try_from(n).unwrap_or(i64::MAX));
    conn.prepare_cached(
        "INSERT INTO warm_history (conversation, started_at, finished_at, trigger, outcome,
           expired, input_tokens, cache_read_tokens, cache_write_tokens, pct, expected_pct,
           backend, error, due_at, kind, output_tokens)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        id,
        millis_to_sql(r.started_at.as_millis()),
        millis_to_sql(r.finished_at.as_millis()),
        r.trigger.as_str(),
        r.outcome.as_str(),
        r.expired,
        tokens(usage.input_tokens),
        tokens(usage.cache_read_tokens),
        tokens(usage.cache_write_tokens),
        r.pct,
        r.expected_pct,
        r.backend.as_deref(),
        r.error.as_deref(),
        millis_to_sql(r.due_at.as_millis()),
        r.kind.map(warming_core::WarmKind::as_str),
        tokens(usage.output_tokens),
    ])?;
    if r.trigger == WarmTrigger::Turn || r.outcome == WarmOutcome::Stopped {
        // A turn's usage, or a policy's stop, is history only; the stats
        // are the warms'.
    } else if r.outcome == WarmOutcome::Failed {
        conn.prepare_cached("UPDATE conversations SET last_error = ?2 WHERE id = ?1")?
            .execute(params![id, r.error.as_deref()])?;
    } else {
        conn.prepare_cached(
            "UPDATE conversations SET last_pct = ?2, last_expected_pct = ?3, last_warm_at = ?4,
               warm_count = warm_count + 1, last_error = NULL
             WHERE id = ?1",
        )?
        .execute(params![
            id,
            r.pct,
            r.expected_pct,
            millis_to_sql(r.finished_at.as_millis())
        ])?;
    }
    // Keep the newest `history_cap` rows of this conversation.
    conn.prepare_cached(
        "DELETE FROM warm_history WHERE conversation = ?1 AND seq <= (
           SELECT seq FROM warm_history WHERE conversation = ?1
           ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
    )?
    .execute(params![id, i64::try_from(history_cap).unwrap_or(i64::MAX)])?;
    Ok(())
}

/// SQLite integers are signed; epoch milliseconds fit for 292 million years.
pub(crate) fn millis_to_sql(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}
