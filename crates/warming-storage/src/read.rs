//! Reads: the restore pass at start and history pages.

use std::sync::Arc;

use rusqlite::{params, Connection, Row};
use warming_core::{
    ConversationId, IntervalLimits, Restored, Template, TemplateSummary, Timestamp, Usage,
    WarmKind, WarmOutcome, WarmRecord, WarmStats, WarmTrigger,
};

use crate::ReadError;

fn timestamp(ms: Option<i64>) -> Option<Timestamp> {
    ms.and_then(|ms| u64::try_from(ms).ok())
        .map(Timestamp::from_millis)
}

fn count(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// The columns `restore_row` reads, in its order.
const RESTORED_COLUMNS: &str = "id, settings, request, model, cwd, next_warm_at, backend,
    last_pct, last_expected_pct, last_warm_at, warm_count, last_error, depth, gaps, idle_since,
    layout IS NOT NULL, cacheable_tokens, long_ttl, template_bytes, ledger, explicit_cache";

/// Every conversation with its settings, template, schedule, backend and
/// stats, in one pass. Rows with an invalid id are skipped with a warning;
/// damaged settings or templates fall back to defaults / none.
pub(crate) fn load_all(
    conn: &Connection,
    limits: &IntervalLimits,
) -> Result<Vec<Restored>, ReadError> {
    let mut stmt = conn.prepare(&format!("SELECT {RESTORED_COLUMNS} FROM conversations"))?;
    let mut rows = stmt.query([])?;
    let mut restored = Vec::new();
    while let Some(row) = rows.next()? {
        let raw_id: String = row.get(0)?;
        let Ok(conversation) = ConversationId::new(&raw_id) else {
            tracing::warn!(id = %raw_id.escape_debug(), "skipping a stored conversation with an invalid id");
            continue;
        };
        restored.push(restore_row(conversation, row, limits)?);
    }
    Ok(restored)
}

/// One conversation, if stored.
pub(crate) fn load_one(
    conn: &Connection,
    conversation: &ConversationId,
    limits: &IntervalLimits,
) -> Result<Option<Restored>, ReadError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {RESTORED_COLUMNS} FROM conversations WHERE id = ?1"
    ))?;
    let mut rows = stmt.query([conversation.as_str()])?;
    match rows.next()? {
        Some(row) => Ok(Some(restore_row(conversation.clone(), row, limits)?)),
        None => Ok(None),
    }
}

fn restore_row(
    conversation: ConversationId,
    row: &Row<'_>,
    limits: &IntervalLimits,
) -> rusqlite::Result<Restored> {
    let settings = row
        .get::<_, Option<String>>(1)?
        .map(|raw| warming_service::stored::settings_from_json(&raw, limits));
    let request: Option<String> = row.get(2)?;
    let (model, cwd) = (row.get(3)?, row.get(4)?);
    // Stored as blocks: restored detached, from its summary, without
    // reading the body (the service reads it back for each warm).
    let template = if row.get::<_, bool>(15)? {
        Some(Template::from_summary(TemplateSummary {
            model,
            cwd,
            cacheable_tokens: count(row.get(16)?),
            long_ttl: row.get::<_, Option<bool>>(17)?.unwrap_or(false),
            explicit_cache: row.get::<_, Option<bool>>(20)?.unwrap_or(false),
            bytes: count(row.get(18)?),
        }))
    } else {
        request.and_then(|raw| Template::from_stored(raw, model, cwd))
    };
    Ok(Restored {
        conversation,
        settings,
        template,
        next_warm_at: timestamp(row.get(5)?),
        backend: row.get(6)?,
        stats: WarmStats {
            last_pct: row.get(7)?,
            last_expected_pct: row.get(8)?,
            last_warm_at: timestamp(row.get(9)?),
            warm_count: count(row.get(10)?),
            last_error: row.get::<_, Option<String>>(11)?.map(Arc::from),
            ledger: row
                .get::<_, Option<String>>(19)?
                .and_then(|raw| serde_json::from_str(&raw).ok())
                .unwrap_or_default(),
        },
        depth: row.get::<_, Option<u32>>(12)?.unwrap_or(0),
        gaps: row
            .get::<_, Option<String>>(13)?
            .and_then(|raw| serde_json::from_str(&raw).ok())
            .unwrap_or_default(),
        idle_since: timestamp(row.get(14)?),
    })
}

/// The newest `limit` warms of a conversation, newest first.
pub(crate) fn history(
    conn: &Connection,
    conversation: &ConversationId,
    limit: usize,
) -> Result<Vec<WarmRecord>, ReadError> {
    let mut stmt = conn.prepare_cached(
        "SELECT started_at, finished_at, trigger, outcome, expired, input_tokens,
                cache_read_tokens, cache_write_tokens, pct, expected_pct, backend, error, due_at,
                kind, output_tokens
         FROM warm_history WHERE conversation = ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![conversation.as_str(), limit], |row| {
        let input: Option<i64> = row.get(5)?;
        let usage = input.map(|input| {
            Usage::anthropic(
                count(Some(input)),
                count(row.get(6).ok().flatten()),
                count(row.get(7).ok().flatten()),
            )
            .with_output(count(row.get(14).ok().flatten()))
        });
        let kind: Option<String> = row.get(13)?;
        let trigger: String = row.get(2)?;
        let outcome: String = row.get(3)?;
        let started_at = timestamp(row.get(0)?).unwrap_or_default();
        Ok(WarmRecord {
            conversation_id: conversation.clone(),
            // Rows from schema 1 have no due time: take the start.
            due_at: timestamp(row.get(12)?).unwrap_or(started_at),
            started_at,
            finished_at: timestamp(row.get(1)?).unwrap_or_default(),
            trigger: WarmTrigger::parse(&trigger).unwrap_or(WarmTrigger::Scheduled),
            outcome: WarmOutcome::parse(&outcome).unwrap_or(WarmOutcome::Failed),
            expired: row.get(4)?,
            usage,
            pct: row.get(8)?,
            expected_pct: row.get(9)?,
            backend: row.get::<_, Option<String>>(10)?.map(Arc::from),
            error: row.get::<_, Option<String>>(11)?.map(Arc::from),
            kind: None,
            refreshes: None,
        }
        .with_kind(kind.as_deref().and_then(WarmKind::parse)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
