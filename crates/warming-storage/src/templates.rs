//! Templates stored as content-addressed blocks
//! ([`warming_service::blocks`]): each conversation row keeps its layout
//! (the small envelope and the names of its blocks) and a summary for the
//! restore; `template_blocks` keeps each block once, with the number of
//! conversations using it, and drops it when none does.

use std::collections::HashSet;
use std::sync::Arc;

use quick_cache::sync::Cache;
use rusqlite::{params, Connection, OptionalExtension};
use warming_core::{ConversationId, Template};
use warming_service::blocks::{BlockHash, Layout};

use crate::ReadError;

/// Weighs a cached block by its bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ByBytes;

impl quick_cache::Weighter<BlockHash, Arc<str>> for ByBytes {
    fn weight(&self, _key: &BlockHash, text: &Arc<str>) -> u64 {
        text.len() as u64 + 32
    }
}

/// Hot blocks, bounded by their bytes (`--template-cache-mb`): a system
/// prompt shared by many conversations is read from disk once.
pub(crate) type BlockCache = Cache<BlockHash, Arc<str>, ByBytes>;

/// A cache of at most `bytes`.
pub(crate) fn block_cache(bytes: u64) -> BlockCache {
    // quick_cache sizes its table by an item estimate: assume 8 KiB blocks.
    let items = usize::try_from(bytes / 8_192).unwrap_or(usize::MAX).max(16);
    Cache::with_weighter(items, bytes.max(1), ByBytes)
}

/// The block names of the conversation's stored layout.
fn stored_hashes(conn: &Connection, conversation: &str) -> rusqlite::Result<Vec<BlockHash>> {
    let layout: Option<String> = conn
        .prepare_cached("SELECT layout FROM conversations WHERE id = ?1")?
        .query_row([conversation], |row| row.get(0))
        .optional()?
        .flatten();
    Ok(layout
        .as_deref()
        .and_then(Layout::from_json)
        .map(|l| l.block_hashes())
        .unwrap_or_default())
}

/// Stores `template` as the conversation's: writes only the blocks not yet
/// stored, counts a use of each new one, releases the blocks its previous
/// template used and this one does not.
pub(crate) fn store(
    conn: &Connection,
    conversation: &ConversationId,
    template: &Template,
) -> rusqlite::Result<()> {
    let Some(text) = template.request_json() else {
        // A detached template has no body to store: keep the stored one.
        tracing::warn!(%conversation, "a template without its body was not stored");
        return Ok(());
    };
    let id = conversation.as_str();
    let (layout, blocks) = Layout::split(text);
    let old: HashSet<BlockHash> = stored_hashes(conn, id)?.into_iter().collect();
    let new: HashSet<BlockHash> = blocks.iter().map(|b| b.hash).collect();
    for block in blocks.iter().filter(|b| !old.contains(&b.hash)) {
        conn.prepare_cached(
            "INSERT INTO template_blocks (hash, body, refs) VALUES (?1, ?2, 1)
             ON CONFLICT(hash) DO UPDATE SET refs = refs + 1",
        )?
        .execute(params![&block.hash.0[..], &*block.text])?;
    }
    release(conn, old.difference(&new))?;
    let summary = template.summary();
    conn.prepare_cached(
        "INSERT INTO conversations (id, request, layout, model, cwd, cacheable_tokens, long_ttl,
           template_bytes)
         VALUES (?1, NULL, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(id) DO UPDATE SET request = NULL, layout = excluded.layout,
           model = excluded.model, cwd = excluded.cwd,
           cacheable_tokens = excluded.cacheable_tokens, long_ttl = excluded.long_ttl,
           template_bytes = excluded.template_bytes",
    )?
    .execute(params![
        id,
        layout.to_json(),
        summary.model,
        summary.cwd,
        i64::try_from(summary.cacheable_tokens).unwrap_or(i64::MAX),
        summary.long_ttl,
        i64::try_from(summary.bytes).unwrap_or(i64::MAX),
    ])?;
    Ok(())
}

/// Releases every block of a conversation about to be deleted.
pub(crate) fn forget(conn: &Connection, conversation: &ConversationId) -> rusqlite::Result<()> {
    let hashes = stored_hashes(conn, conversation.as_str())?;
    release(conn, hashes.iter())
}

/// One use fewer of each block; a block nobody uses is deleted.
fn release<'a>(
    conn: &Connection,
    hashes: impl Iterator<Item = &'a BlockHash>,
) -> rusqlite::Result<()> {
    for hash in hashes {
        conn.prepare_cached("UPDATE template_blocks SET refs = refs - 1 WHERE hash = ?1")?
            .execute([&hash.0[..]])?;
        conn.prepare_cached("DELETE FROM template_blocks WHERE hash = ?1 AND refs <= 0")?
            .execute([&hash.0[..]])?;
    }
    Ok(())
}

/// The conversation's template with its body, assembled from its blocks
/// (through `cache`); `None` if it has none, or a block is missing.
pub(crate) fn read(
    conn: &Connection,
    cache: &BlockCache,
    conversation: &ConversationId,
) -> Result<Option<Template>, ReadError> {
    let row: Option<[Option<String>; 4]> = conn
        .prepare_cached("SELECT layout, request, model, cwd FROM conversations WHERE id = ?1")?
        .query_row([conversation.as_str()], |row| {
            Ok([row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?])
        })
        .optional()?;
    let Some([layout, request, model, cwd]) = row else {
        return Ok(None);
    };
    let text = match (layout.as_deref().and_then(Layout::from_json), request) {
        (Some(layout), _) => {
            let mut missing = None;
            let text = layout.assemble(|hash| {
                if let Some(text) = cache.get(hash) {
                    return Some(text);
                }
                match block(conn, hash) {
                    Ok(Some(text)) => {
                        cache.insert(*hash, text.clone());
                        Some(text)
                    }
                    Ok(None) => None,
                    Err(e) => {
                        missing = Some(e);
                        None
                    }
                }
            });
            if let Some(e) = missing {
                return Err(e.into());
            }
            let Some(text) = text else {
                tracing::warn!(%conversation, "a block of the stored template is missing");
                return Ok(None);
            };
            text
        }
        // Written before templates were blocks and not migrated.
        (None, Some(request)) => request,
        (None, None) => return Ok(None),
    };
    Ok(Template::from_stored(text, model, cwd))
}

fn block(conn: &Connection, hash: &BlockHash) -> rusqlite::Result<Option<Arc<str>>> {
    conn.prepare_cached("SELECT body FROM template_blocks WHERE hash = ?1")?
        .query_row([&hash.0[..]], |row| row.get::<_, String>(0))
        .optional()
        .map(|text| text.map(Arc::from))
}

/// Schema 7: moves every stored request into blocks.
pub(crate) fn migrate_requests_to_blocks(conn: &Connection) -> rusqlite::Result<()> {
    let rows: Vec<(String, String, Option<String>, Option<String>)> = conn
        .prepare("SELECT id, request, model, cwd FROM conversations WHERE request IS NOT NULL")?
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (id, request, model, cwd) in rows {
        let (Ok(conversation), Some(template)) = (
            ConversationId::new(&id),
            Template::from_stored(request, model, cwd),
        ) else {
            // Unreadable before, unreadable now: it restores without one.
            conn.execute(
                "UPDATE conversations SET request = NULL WHERE id = ?1",
                [&id],
            )?;
            continue;
        };
        store(conn, &conversation, &template)?;
    }
    Ok(())
}
