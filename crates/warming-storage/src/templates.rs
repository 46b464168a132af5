//! Templates stored as content-addressed blocks
//! ([`warming_storage_shared::blocks`]): each conversation row keeps its layout
//! (the small envelope and the names of its blocks) and a summary for the
//! restore; `template_blocks` keeps each block once, with the number of
//! conversations using it, and drops it when none does.

use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};
use warming_core::{ConversationId, Template};
use warming_storage_shared::blocks::{BlockCache, BlockHash, Layout, TemplateWrite};

use crate::ReadError;

/// The conversation's stored layout, if any.
fn stored_layout(conn: &Connection, conversation: &str) -> rusqlite::Result<Option<Layout>> {
    let layout: Option<String> = conn
        .prepare_cached("SELECT layout FROM conversations WHERE id = ?1")?
        .query_row([conversation], |row| row.get(0))
        .optional()?
        .flatten();
    Ok(layout.as_deref().and_then(Layout::from_json))
}

/// Stores `template` as the conversation's, following [`TemplateWrite`]:
/// writes only the blocks not yet stored, releases the blocks its previous
/// template used and this one does not.
pub(crate) fn store(
    conn: &Connection,
    conversation: &ConversationId,
    template: &Template,
) -> rusqlite::Result<()> {
    let id = conversation.as_str();
    let Some(plan) = TemplateWrite::plan(stored_layout(conn, id)?.as_ref(), template) else {
        // A detached template has no body to store: keep the stored one.
        tracing::warn!(%conversation, "a template without its body was not stored");
        return Ok(());
    };
    for block in &plan.add {
        conn.prepare_cached(
            "INSERT INTO template_blocks (hash, body, refs) VALUES (?1, ?2, 1)
             ON CONFLICT(hash) DO UPDATE SET refs = refs + 1",
        )?
        .execute(params![&block.hash.0[..], &*block.text])?;
    }
    release(conn, plan.release.iter())?;
    let summary = template.summary();
    conn.prepare_cached(
        "INSERT INTO conversations (id, request, layout, model, cwd, cacheable_tokens, long_ttl,
           template_bytes, explicit_cache)
         VALUES (?1, NULL, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(id) DO UPDATE SET request = NULL, layout = excluded.layout,
           model = excluded.model, cwd = excluded.cwd,
           cacheable_tokens = excluded.cacheable_tokens, long_ttl = excluded.long_ttl,
           template_bytes = excluded.template_bytes, explicit_cache = excluded.explicit_cache",
    )?
    .execute(params![
        id,
        plan.layout.to_json(),
        summary.model,
        summary.cwd,
        i64::try_from(summary.cacheable_tokens).unwrap_or(i64::MAX),
        summary.long_ttl,
        i64::try_from(summary.bytes).unwrap_or(i64::MAX),
        summary.explicit_cache,
    ])?;
    Ok(())
}

/// Releases every block of a conversation about to be deleted.
pub(crate) fn forget(conn: &Connection, conversation: &ConversationId) -> rusqlite::Result<()> {
    let hashes = stored_layout(conn, conversation.as_str())?
        .map(|l| l.block_hashes())
        .unwrap_or_default();
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
