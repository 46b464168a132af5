//! The writer thread: applies writes in arrival order, many per transaction
//! (group commit), and acknowledges each once its transaction committed.

use std::sync::mpsc::Receiver;

use postgres::{Client, Statement, Transaction};
use warming_core::Template;
use warming_service::{StoreError, Write};
use warming_storage_shared::blocks::{BlockHash, Layout, TemplateWrite};
use warming_storage_shared::jobs::{answer, fail_all, next_batch};

use crate::warm_run::{ms, RunStatements, TrimClock, WarmRun};

/// A write waiting for the writer, with whoever waits for its commit.
pub(crate) type Job = warming_storage_shared::jobs::Job<StoreError>;

/// How the writer batches and trims.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterConfig {
    /// Most writes committed in one transaction.
    pub max_batch: usize,
    /// Most history rows kept per conversation.
    pub history_cap: i64,
}

/// Every statement the writer runs, prepared once per connection.
struct Statements {
    settings: Statement,
    backend: Statement,
    rhythm: Statement,
    layout_of: Statement,
    add_block: Statement,
    release_block: Statement,
    drop_unused_block: Statement,
    template: Statement,
    delete_history: Statement,
    delete: Statement,
    meta: Statement,
    notify: Statement,
    run: RunStatements,
}

impl Statements {
    fn prepare(client: &mut Client) -> Result<Self, postgres::Error> {
        let upsert = |column: &str| {
            format!(
                "INSERT INTO conversations (id, {column}) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET {column} = EXCLUDED.{column}"
            )
        };
        Ok(Self {
            settings: client.prepare(&upsert("settings"))?,
            backend: client.prepare(&upsert("backend"))?,
            rhythm: client.prepare(
                "INSERT INTO conversations (id, depth, gaps, idle_since) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET depth = EXCLUDED.depth, gaps = EXCLUDED.gaps,
                   idle_since = EXCLUDED.idle_since",
            )?,
            layout_of: client.prepare("SELECT layout FROM conversations WHERE id = $1")?,
            add_block: client.prepare(
                "INSERT INTO template_blocks (hash, body, refs) VALUES ($1, $2, 1)
                 ON CONFLICT (hash) DO UPDATE SET refs = template_blocks.refs + 1",
            )?,
            release_block: client
                .prepare("UPDATE template_blocks SET refs = refs - 1 WHERE hash = $1")?,
            drop_unused_block: client
                .prepare("DELETE FROM template_blocks WHERE hash = $1 AND refs <= 0")?,
            template: client.prepare(
                "INSERT INTO conversations (id, layout, model, cwd, cacheable_tokens, long_ttl,
                   template_bytes, explicit_cache)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET layout = EXCLUDED.layout, model = EXCLUDED.model,
                   cwd = EXCLUDED.cwd, cacheable_tokens = EXCLUDED.cacheable_tokens,
                   long_ttl = EXCLUDED.long_ttl, template_bytes = EXCLUDED.template_bytes,
                   explicit_cache = EXCLUDED.explicit_cache",
            )?,
            delete_history: client.prepare("DELETE FROM warm_history WHERE conversation = $1")?,
            delete: client.prepare("DELETE FROM conversations WHERE id = $1")?,
            meta: client.prepare(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            )?,
            notify: client.prepare(&format!(
                "SELECT pg_notify('{UPDATES_CHANNEL}', id) FROM unnest($1::text[]) AS id"
            ))?,
            run: RunStatements::prepare(client)?,
        })
    }
}

/// Runs until a `Stop` job or until every sender is gone. While the
/// database is away, each batch is answered [`StoreError::Unavailable`]
/// (nothing written) and the next one connects again.
pub(crate) fn run(mut connection: crate::Connection, jobs: Receiver<Job>, config: WriterConfig) {
    let mut statements = match connection
        .get()
        .map_err(|e| e.to_string())
        .and_then(|client| Statements::prepare(client).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot prepare the storage statements");
            fail_all(&jobs, &StoreError::Closed);
            return;
        }
    };
    // The connection generation the statements were prepared on.
    let mut prepared_on = 0;
    let mut trims = TrimClock::new(config.history_cap);
    while let Ok(first) = jobs.recv() {
        let batch = next_batch(&jobs, first, config.max_batch);
        let results = match prepared(&mut connection, &mut statements, &mut prepared_on) {
            Ok(client) => {
                let results =
                    commit_batch(client, &statements, &batch, &mut trims, config.history_cap);
                if connection.is_lost() {
                    // Lost mid-batch: say so, nothing of it was committed.
                    results
                        .into_iter()
                        .map(|r| {
                            r.map_err(|e| StoreError::Unavailable(warming_service::Cause::new(e)))
                        })
                        .collect()
                } else {
                    results
                }
            }
            Err(unavailable) => vec![Err(unavailable); batch.len()],
        };
        if answer(batch, results) {
            break;
        }
    }
}

/// The writer's client, connected again and its statements prepared again
/// if the database dropped the connection they were prepared on (until
/// they are, every batch tries again).
fn prepared<'a>(
    connection: &'a mut crate::Connection,
    statements: &mut Statements,
    prepared_on: &mut u64,
) -> Result<&'a mut Client, StoreError> {
    let (client, generation) = connection.connected()?;
    if generation != *prepared_on {
        *statements = Statements::prepare(client)
            .map_err(|e| StoreError::Unavailable(warming_service::Cause::new(e)))?;
        *prepared_on = generation;
    }
    Ok(client)
}

/// Applies a batch in one transaction, warms and schedules a run at a time
/// ([`WarmRun`]); if any write fails, the batch is replayed one write at a
/// time with a savepoint each, so a bad write fails alone. A failed commit
/// fails them all.
fn commit_batch(
    client: &mut Client,
    statements: &Statements,
    batch: &[Job],
    trims: &mut TrimClock,
    history_cap: i64,
) -> Vec<Result<(), StoreError>> {
    let failed = crate::store_error;
    let all_failed = |e: postgres::Error| vec![Err(failed(e)); batch.len()];
    let fast = (|| {
        let mut tx = client.transaction()?;
        let mut run = WarmRun::default();
        for job in batch {
            let Job::Write(write, _) = job else { continue };
            if !run.add(write) {
                if !run.is_empty() {
                    run.apply(&mut tx, &statements.run, trims, history_cap)?;
                }
                apply(&mut tx, statements, write, trims, history_cap)?;
            }
        }
        if !run.is_empty() {
            run.apply(&mut tx, &statements.run, trims, history_cap)?;
        }
        notify(&mut tx, statements, batch)?;
        tx.commit()
    })();
    if fast.is_ok() {
        return vec![Ok(()); batch.len()];
    }
    let mut tx = match client.transaction() {
        Ok(tx) => tx,
        Err(e) => return all_failed(e),
    };
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let result = match job {
            Job::Write(write, _) => (|| {
                let mut savepoint = tx.savepoint("write")?;
                apply(&mut savepoint, statements, write, trims, history_cap)?;
                savepoint.commit()
            })()
            .map_err(failed),
            Job::Flush(_) | Job::Stop => Ok(()),
        };
        results.push(result);
    }
    if let Err(e) = notify(&mut tx, statements, batch) {
        return all_failed(e);
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => all_failed(e),
    }
}

/// The channel other instances listen on for changed conversations.
pub(crate) const UPDATES_CHANNEL: &str = "warming_updates";

/// Tells other instances which conversations the batch changed: each id
/// once, delivered when (and only if) the transaction commits, so a
/// listener reading the row sees the change. The payload is the id alone.
fn notify(tx: &mut Transaction<'_>, s: &Statements, batch: &[Job]) -> Result<(), postgres::Error> {
    let mut ids: Vec<&str> = batch
        .iter()
        .filter_map(|job| match job {
            Job::Write(write, _) => write.conversation().map(|c| c.as_str()),
            _ => None,
        })
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    ids.sort_unstable();
    ids.dedup();
    tx.execute(&s.notify, &[&ids])?;
    Ok(())
}

/// Applies one write: warms, schedules and ledgers as a run of one (the
/// one way they are written), the rest statement by statement.
fn apply(
    tx: &mut Transaction<'_>,
    s: &Statements,
    write: &Write,
    trims: &mut TrimClock,
    history_cap: i64,
) -> Result<(), postgres::Error> {
    match write {
        Write::Warm(_) | Write::Schedule { .. } | Write::Ledger { .. } => {
            let mut one = WarmRun::default();
            one.add(write);
            one.apply(tx, &s.run, trims, history_cap)?;
        }
        Write::Settings {
            conversation,
            settings,
        } => {
            tx.execute(
                &s.settings,
                &[
                    &conversation.as_str(),
                    &warming_service::stored::settings_to_json(settings),
                ],
            )?;
        }
        Write::Backend {
            conversation,
            backend,
        } => {
            tx.execute(&s.backend, &[&conversation.as_str(), &&**backend])?;
        }
        Write::Template {
            conversation,
            template,
        } => store_template(tx, s, conversation.as_str(), template)?,
        Write::Rhythm {
            conversation,
            depth,
            gaps,
            idle_since,
        } => {
            let gaps = serde_json::to_string(gaps).unwrap_or_default();
            let depth = i32::try_from(*depth).unwrap_or(i32::MAX);
            tx.execute(
                &s.rhythm,
                &[
                    &conversation.as_str(),
                    &depth,
                    &gaps,
                    &ms(idle_since.as_millis()),
                ],
            )?;
        }
        Write::Delete { conversation } => {
            let id = conversation.as_str();
            let hashes = stored_layout(tx, s, id)?
                .map(|l| l.block_hashes())
                .unwrap_or_default();
            release(tx, s, &hashes)?;
            tx.execute(&s.delete_history, &[&id])?;
            tx.execute(&s.delete, &[&id])?;
        }
        Write::Meta { key, value } => {
            tx.execute(&s.meta, &[key, value])?;
        }
    }
    Ok(())
}

fn stored_layout(
    tx: &mut Transaction<'_>,
    s: &Statements,
    id: &str,
) -> Result<Option<Layout>, postgres::Error> {
    let layout: Option<String> = tx
        .query_opt(&s.layout_of, &[&id])?
        .and_then(|row| row.get(0));
    Ok(layout.as_deref().and_then(Layout::from_json))
}

fn release(
    tx: &mut Transaction<'_>,
    s: &Statements,
    hashes: &[BlockHash],
) -> Result<(), postgres::Error> {
    for hash in hashes {
        let key: &[u8] = &hash.0;
        tx.execute(&s.release_block, &[&key])?;
        tx.execute(&s.drop_unused_block, &[&key])?;
    }
    Ok(())
}

/// Stores the template as blocks, following [`TemplateWrite`] as the
/// SQLite adapter does.
fn store_template(
    tx: &mut Transaction<'_>,
    s: &Statements,
    id: &str,
    template: &Template,
) -> Result<(), postgres::Error> {
    let Some(plan) = TemplateWrite::plan(stored_layout(tx, s, id)?.as_ref(), template) else {
        tracing::warn!(
            conversation = id,
            "a template without its body was not stored"
        );
        return Ok(());
    };
    for block in &plan.add {
        let key: &[u8] = &block.hash.0;
        tx.execute(&s.add_block, &[&key, &&*block.text])?;
    }
    release(tx, s, &plan.release)?;
    let summary = template.summary();
    tx.execute(
        &s.template,
        &[
            &id,
            &plan.layout.to_json(),
            &summary.model,
            &summary.cwd,
            &ms(summary.cacheable_tokens),
            &summary.long_ttl,
            &ms(summary.bytes),
            &summary.explicit_cache,
        ],
    )?;
    Ok(())
}
