//! Templates stored as blocks: each shared part once, freed when unused,
//! read back byte for byte, and older databases moved into them.

use std::sync::Arc;

use rusqlite::Connection;
use serde_json::json;
use warming_core::{IntervalLimits, Template};
use warming_storage::{Storage, StorageOptions, Write};

use crate::{id, temp_db};

/// An agent request: a long system prompt and tools every conversation
/// shares, then the conversation's own turns.
fn agent_request(user: &str, turns: usize) -> Template {
    let system = "You are a careful coding agent. ".repeat(1_500);
    let mut messages = vec![json!({"role": "user", "content": format!("{user}: fix the build")})];
    for i in 0..turns {
        messages.push(json!({"role": "assistant", "content": format!("{user} step {i}")}));
        messages.push(json!({"role": "user", "content": format!("{user} ok {i}")}));
    }
    Template::new(
        json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "bash", "description": "runs a command", "input_schema": {"type": "object"}}],
            "messages": messages}),
        None,
        Some("/work".into()),
    )
}

fn blocks_stored(path: &std::path::Path) -> (i64, i64) {
    let conn = Connection::open(path).unwrap();
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM template_blocks",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

fn save(storage: &Storage, conversation: &str, template: &Template) {
    storage
        .write_blocking(Write::Template {
            conversation: id(conversation),
            template: Arc::new(template.clone()),
        })
        .unwrap();
}

#[test]
fn shared_parts_are_stored_once_and_read_back_byte_for_byte() {
    let (_dir, path) = temp_db();
    let storage = Storage::open(&path, StorageOptions::default()).unwrap();
    let alice = agent_request("alice", 0);
    let bob = agent_request("bob", 0);
    save(&storage, "alice", &alice);
    save(&storage, "bob", &bob);
    // System and tools once, plus each first message.
    let (count, bytes) = blocks_stored(&path);
    assert_eq!(count, 4);
    let system_bytes = alice.request().unwrap()["system"].to_string().len() as i64;
    assert!(
        bytes < system_bytes + 1_000,
        "{bytes} bytes for a {system_bytes}-byte system prompt"
    );
    // The warm is built from exactly the request that was settled.
    for (name, template) in [("alice", &alice), ("bob", &bob)] {
        let read = storage.template(&id(name)).unwrap().unwrap();
        assert_eq!(read.request_json(), template.request_json());
        assert_eq!(read.model(), Some("claude-sonnet-4-5"));
        assert_eq!(read.cwd(), Some("/work"));
    }
    // The restore gets what the engine decides with, not the body.
    let restored = storage.load_all(&IntervalLimits::default()).unwrap();
    let t = restored[0].template.as_ref().unwrap();
    assert!(t.is_detached());
    assert_eq!(
        t.cacheable_tokens_estimate(),
        alice.cacheable_tokens_estimate()
    );
    assert_eq!(t.bytes(), alice.bytes());
}

#[test]
fn a_next_turn_adds_only_its_messages_and_a_delete_frees_what_only_it_used() {
    let (_dir, path) = temp_db();
    let storage = Storage::open(&path, StorageOptions::default()).unwrap();
    save(&storage, "alice", &agent_request("alice", 0));
    save(&storage, "bob", &agent_request("bob", 0));
    assert_eq!(blocks_stored(&path).0, 4);
    // Alice's next turn: two new messages, the rest shared with her last.
    let next = agent_request("alice", 1);
    save(&storage, "alice", &next);
    assert_eq!(blocks_stored(&path).0, 6);
    // A turn that rewrote history (a compacted conversation) releases the
    // messages no template uses any more.
    let compacted = agent_request("alice-compacted", 0);
    save(&storage, "alice", &compacted);
    assert_eq!(blocks_stored(&path).0, 4);
    storage
        .write_blocking(Write::Delete {
            conversation: id("alice"),
        })
        .unwrap();
    assert_eq!(blocks_stored(&path).0, 3, "bob's blocks stay");
    assert_eq!(
        storage
            .template(&id("bob"))
            .unwrap()
            .unwrap()
            .request_json(),
        agent_request("bob", 0).request_json()
    );
    storage
        .write_blocking(Write::Delete {
            conversation: id("bob"),
        })
        .unwrap();
    assert_eq!(blocks_stored(&path), (0, 0));
}

#[test]
fn a_version_6_database_moves_its_requests_into_blocks() {
    let (_dir, path) = temp_db();
    drop(Storage::open(&path, StorageOptions::default()).unwrap());
    // What version 6 wrote: the whole request in each conversation's row.
    let templates = [agent_request("alice", 2), agent_request("bob", 0)];
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE template_blocks; ALTER TABLE conversations DROP COLUMN layout;
             ALTER TABLE conversations DROP COLUMN cacheable_tokens;
             ALTER TABLE conversations DROP COLUMN long_ttl;
             ALTER TABLE conversations DROP COLUMN template_bytes;
             ALTER TABLE conversations DROP COLUMN ledger;
             ALTER TABLE conversations DROP COLUMN explicit_cache;
             PRAGMA user_version = 6;",
        )
        .unwrap();
        for (name, t) in ["alice", "bob"].iter().zip(&templates) {
            conn.execute(
                "INSERT INTO conversations (id, settings, request, model, cwd, next_warm_at)
                 VALUES (?1, '{\"enabled\":true,\"intervalMs\":60000}', ?2, ?3, ?4, 5000)",
                rusqlite::params![name, t.request_json().unwrap(), t.model(), t.cwd()],
            )
            .unwrap();
        }
    }
    let storage = Storage::open(&path, StorageOptions::default()).unwrap();
    for (name, t) in ["alice", "bob"].iter().zip(&templates) {
        assert_eq!(
            storage.template(&id(name)).unwrap().unwrap().request_json(),
            t.request_json()
        );
    }
    let restored = storage.load_all(&IntervalLimits::default()).unwrap();
    assert_eq!(restored.len(), 2);
    assert!(restored
        .iter()
        .all(|r| r.template.as_ref().unwrap().is_detached()));
    assert!(restored.iter().all(|r| r.settings.unwrap().enabled));
    let conn = Connection::open(&path).unwrap();
    let left: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM conversations WHERE request IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "every request moved into blocks");
    // Alice's 5 messages, Bob's first, one shared system prompt and tools.
    assert_eq!(blocks_stored(&path).0, 8);
}
