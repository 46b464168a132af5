//! The reader thread: the restore pass, history pages, one conversation,
//! template bodies and meta values, on a connection of its own.
//!
//! A thread rather than calls from the service's tasks: the `postgres`
//! client runs its own runtime, which must not be entered from an async
//! task; the port's blocking reads wait on this thread's answer instead.

use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

use postgres::{Client, Row};
use warming_core::{
    ConversationId, IntervalLimits, Restored, Template, TemplateSummary, Timestamp, Usage,
    WarmKind, WarmOutcome, WarmRecord, WarmStats, WarmTrigger,
};
use warming_service::StoreError;
use warming_storage_shared::blocks::{BlockCache, Layout};

/// What the reader is asked, with where to answer.
pub(crate) enum Read {
    All(
        IntervalLimits,
        SyncSender<Result<Vec<Restored>, StoreError>>,
    ),
    One(
        ConversationId,
        IntervalLimits,
        SyncSender<Result<Option<Restored>, StoreError>>,
    ),
    History(
        ConversationId,
        i64,
        SyncSender<Result<Vec<WarmRecord>, StoreError>>,
    ),
    Template(
        ConversationId,
        SyncSender<Result<Option<Template>, StoreError>>,
    ),
    Meta(String, SyncSender<Result<Option<String>, StoreError>>),
}

/// The columns `restored` reads, in its order.
pub(crate) const RESTORED_COLUMNS: &str =
    "id, settings, layout IS NOT NULL, model, cwd, cacheable_tokens,
    long_ttl, template_bytes, next_warm_at, backend, last_pct, last_expected_pct, last_warm_at,
    warm_count, last_error, depth, gaps, idle_since, ledger, explicit_cache";

/// Most template reads answered by one query.
const TEMPLATES_PER_QUERY: usize = 256;

/// Answers reads until every sender is gone. Template reads waiting
/// together (warms firing together) are answered by one query.
impl Read {
    /// Answers the read with `error`.
    fn fail(self, error: StoreError) {
        // A reader that went away needs no answer.
        match self {
            Self::All(_, reply) => drop(reply.send(Err(error))),
            Self::One(_, _, reply) => drop(reply.send(Err(error))),
            Self::History(_, _, reply) => drop(reply.send(Err(error))),
            Self::Template(_, reply) => drop(reply.send(Err(error))),
            Self::Meta(_, reply) => drop(reply.send(Err(error))),
        }
    }
}

/// Answers reads until every sender is gone; while the database is away
/// each read is answered [`StoreError::Unavailable`] and the next one
/// connects again.
pub(crate) fn run(mut connection: crate::Connection, reads: Receiver<Read>, blocks: BlockCache) {
    let mut waiting = std::collections::VecDeque::new();
    while let Some(read) = waiting.pop_front().or_else(|| reads.recv().ok()) {
        let client = match connection.get() {
            Ok(client) => client,
            Err(unavailable) => {
                read.fail(unavailable);
                continue;
            }
        };
        answer(client, &reads, &blocks, &mut waiting, read);
    }
}

/// Answers one read (and the template reads waiting with it).
fn answer(
    client: &mut Client,
    reads: &Receiver<Read>,
    blocks: &BlockCache,
    waiting: &mut std::collections::VecDeque<Read>,
    read: Read,
) {
    // A call that failed because the connection went is the database's
    // absence (retry shortly), not the call's fault.
    let failed = |client: &Client, e: postgres::Error| {
        if client.is_closed() {
            StoreError::Unavailable(warming_service::Cause::new(e))
        } else {
            crate::store_error(e)
        }
    };
    match read {
        Read::All(limits, reply) => {
            let sql = format!("SELECT {RESTORED_COLUMNS} FROM conversations");
            let answer = match client.query(&sql, &[]) {
                Ok(rows) => Ok(rows
                    .iter()
                    .filter_map(|row| restored(row, &limits))
                    .collect()),
                Err(e) => Err(failed(client, e)),
            };
            let _ = reply.send(answer);
        }
        Read::One(id, limits, reply) => {
            let sql = format!("SELECT {RESTORED_COLUMNS} FROM conversations WHERE id = $1");
            let answer = match client.query_opt(&sql, &[&id.as_str()]) {
                Ok(row) => Ok(row.and_then(|row| restored(&row, &limits))),
                Err(e) => Err(failed(client, e)),
            };
            let _ = reply.send(answer);
        }
        Read::History(id, limit, reply) => {
            let answer = history(client, &id, limit).map_err(|e| failed(client, e));
            let _ = reply.send(answer);
        }
        Read::Template(id, reply) => {
            let mut asked = vec![(id, reply)];
            while asked.len() < TEMPLATES_PER_QUERY {
                match reads.try_recv() {
                    Ok(Read::Template(id, reply)) => asked.push((id, reply)),
                    Ok(other) => waiting.push_back(other),
                    Err(_) => break,
                }
            }
            let ids: Vec<&str> = asked.iter().map(|(id, _)| id.as_str()).collect();
            match templates(client, blocks, &ids) {
                Ok(mut found) => {
                    for (id, reply) in asked {
                        let _ = reply.send(Ok(found.remove(id.as_str())));
                    }
                }
                Err(e) => {
                    let e = failed(client, e);
                    for (_, reply) in asked {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
        Read::Meta(key, reply) => {
            let answer = match client.query_opt("SELECT value FROM meta WHERE key = $1", &[&key]) {
                Ok(row) => Ok(row.map(|r| r.get(0))),
                Err(e) => Err(failed(client, e)),
            };
            let _ = reply.send(answer);
        }
    }
}

fn timestamp(ms: Option<i64>) -> Option<Timestamp> {
    ms.and_then(|ms| u64::try_from(ms).ok())
        .map(Timestamp::from_millis)
}

fn count(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// One conversation row as the engine restores it; `None` (with a warning)
/// for an invalid id.
pub(crate) fn restored(row: &Row, limits: &IntervalLimits) -> Option<Restored> {
    let raw: String = row.get(0);
    let Ok(conversation) = ConversationId::new(&raw) else {
        tracing::warn!(id = %raw.escape_debug(), "skipping a stored conversation with an invalid id");
        return None;
    };
    let template = row.get::<_, bool>(2).then(|| {
        Template::from_summary(TemplateSummary {
            model: row.get(3),
            cwd: row.get(4),
            cacheable_tokens: count(row.get(5)),
            long_ttl: row.get::<_, Option<bool>>(6).unwrap_or(false),
            explicit_cache: row.get::<_, Option<bool>>(19).unwrap_or(false),
            bytes: count(row.get(7)),
        })
    });
    Some(Restored {
        conversation,
        settings: row
            .get::<_, Option<String>>(1)
            .map(|raw| warming_service::stored::settings_from_json(&raw, limits)),
        template,
        next_warm_at: timestamp(row.get(8)),
        backend: row.get(9),
        stats: WarmStats {
            last_pct: row.get(10),
            last_expected_pct: row.get(11),
            last_warm_at: timestamp(row.get(12)),
            warm_count: count(row.get(13)),
            last_error: row.get::<_, Option<String>>(14).map(Arc::from),
            ledger: row
                .get::<_, Option<&str>>(18)
                .and_then(|raw| serde_json::from_str(raw).ok())
                .unwrap_or_default(),
        },
        depth: u32::try_from(row.get::<_, i32>(15)).unwrap_or(0),
        gaps: row
            .get::<_, Option<String>>(16)
            .and_then(|raw| serde_json::from_str(&raw).ok())
            .unwrap_or_default(),
        idle_since: timestamp(row.get(17)),
    })
}

fn history(
    client: &mut Client,
    conversation: &ConversationId,
    limit: i64,
) -> Result<Vec<WarmRecord>, postgres::Error> {
    let rows = client.query(
        "SELECT started_at, finished_at, trigger, outcome, expired, input_tokens,
                cache_read_tokens, cache_write_tokens, pct, expected_pct, backend, error, due_at,
                kind, output_tokens
         FROM warm_history WHERE conversation = $1 ORDER BY seq DESC LIMIT $2",
        &[&conversation.as_str(), &limit],
    )?;
    Ok(rows
        .iter()
        .map(|row| {
            let usage = row.get::<_, Option<i64>>(5).map(|input| {
                Usage::anthropic(count(Some(input)), count(row.get(6)), count(row.get(7)))
                    .with_output(count(row.get(14)))
            });
            let started_at = timestamp(row.get(0)).unwrap_or_default();
            WarmRecord {
                conversation_id: conversation.clone(),
                due_at: timestamp(row.get(12)).unwrap_or(started_at),
                started_at,
                finished_at: timestamp(row.get(1)).unwrap_or_default(),
                trigger: WarmTrigger::parse(row.get(2)).unwrap_or(WarmTrigger::Scheduled),
                outcome: WarmOutcome::parse(row.get(3)).unwrap_or(WarmOutcome::Failed),
                expired: row.get(4),
                usage,
                pct: row.get(8),
                expected_pct: row.get(9),
                backend: row.get::<_, Option<String>>(10).map(Arc::from),
                error: row.get::<_, Option<String>>(11).map(Arc::from),
                kind: None,
                refreshes: None,
            }
            .with_kind(row.get::<_, Option<&str>>(13).and_then(WarmKind::parse))
        })
        .collect())
}

/// The templates of `ids` with their bodies, by id, assembled from their
/// blocks through the cache of hot ones; an id without one is left out.
fn templates(
    client: &mut Client,
    cache: &BlockCache,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, Template>, postgres::Error> {
    let rows = client.query(
        "SELECT id, layout, model, cwd FROM conversations WHERE id = ANY($1)",
        &[&ids],
    )?;
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let id: String = row.get(0);
        let Some(layout) = row.get::<_, Option<&str>>(1).and_then(Layout::from_json) else {
            continue;
        };
        let mut failure = None;
        let text = layout.assemble(|hash| {
            if let Some(text) = cache.get(hash) {
                return Some(text);
            }
            let key: &[u8] = &hash.0;
            match client.query_opt("SELECT body FROM template_blocks WHERE hash = $1", &[&key]) {
                Ok(found) => {
                    let text: Arc<str> = Arc::from(found?.get::<_, &str>(0));
                    cache.insert(*hash, text.clone());
                    Some(text)
                }
                Err(e) => {
                    failure = Some(e);
                    None
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let Some(text) = text else {
            tracing::warn!(conversation = %id, "a block of the stored template is missing");
            continue;
        };
        if let Some(template) = Template::from_stored(text, row.get(2), row.get(3)) {
            found.insert(id, template);
        }
    }
    Ok(found)
}
