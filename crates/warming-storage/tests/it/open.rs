use rusqlite::Connection;
use warming_storage::{OpenError, Storage, StorageOptions, SCHEMA_VERSION};

use crate::temp_db;

#[test]
fn a_new_file_is_created_migrated_and_private() {
    let (_dir, path) = temp_db();
    drop(Storage::open(&path, StorageOptions::default()).unwrap());
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "database readable by others: {mode:o}");
    }
    // Opening again migrates nothing and keeps working.
    drop(Storage::open(&path, StorageOptions::default()).unwrap());
}

#[test]
fn an_empty_file_is_treated_as_a_new_database() {
    let (_dir, path) = temp_db();
    std::fs::write(&path, b"").unwrap();
    assert!(Storage::open(&path, StorageOptions::default()).is_ok());
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_unchanged() {
    let (_dir, path) = temp_db();
    let content = b"these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &content).unwrap();
    let err = Storage::open(&path, StorageOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::NotSqlite { .. }), "{err}");
    assert!(err.to_string().contains("not a SQLite database"));
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert!(!path.with_extension("db-wal").exists());
}

#[test]
fn a_newer_schema_is_refused_and_left_unchanged() {
    let (_dir, path) = temp_db();
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE future (x); INSERT INTO future VALUES (1);")
            .unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Storage::open(&path, StorageOptions::default()).unwrap_err();
    match &err {
        OpenError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("wrong error: {other}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_version_1_database_is_migrated_and_keeps_its_rows() {
    use std::sync::Arc;
    use warming_core::{Timestamp, WarmOutcome, WarmRecord, WarmTrigger};
    use warming_storage::Write;

    let (_dir, path) = temp_db();
    {
        let storage = Storage::open(&path, StorageOptions::default()).unwrap();
        let record = WarmRecord {
            conversation_id: crate::id("old"),
            due_at: Timestamp::from_millis(900),
            started_at: Timestamp::from_millis(1_000),
            finished_at: Timestamp::from_millis(1_200),
            trigger: WarmTrigger::Scheduled,
            outcome: WarmOutcome::Failed,
            expired: false,
            usage: None,
            pct: None,
            expected_pct: None,
            backend: None,
            error: Some(Arc::from("boom")),
            kind: None,
            refreshes: None,
        };
        storage.write_blocking(Write::Warm(record)).unwrap();
    }
    // Turn the file back into what version 1 wrote.
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE warm_history DROP COLUMN due_at; DROP TABLE meta;
             ALTER TABLE conversations DROP COLUMN depth; ALTER TABLE conversations DROP COLUMN gaps;
             ALTER TABLE conversations DROP COLUMN idle_since;
             ALTER TABLE warm_history DROP COLUMN kind; ALTER TABLE warm_history DROP COLUMN output_tokens;
             DROP TABLE template_blocks; ALTER TABLE conversations DROP COLUMN layout;
             ALTER TABLE conversations DROP COLUMN cacheable_tokens;
             ALTER TABLE conversations DROP COLUMN long_ttl;
             ALTER TABLE conversations DROP COLUMN template_bytes;
             ALTER TABLE conversations DROP COLUMN ledger;
             ALTER TABLE conversations DROP COLUMN explicit_cache;
             PRAGMA user_version = 1;",
        )
            .unwrap();
    }
    let storage = Storage::open(&path, StorageOptions::default()).unwrap();
    let history = storage.history(&crate::id("old"), 10).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].error.as_deref(), Some("boom"));
    // Rows from before the migration have no due time: their start stands in.
    assert_eq!(history[0].due_at, Timestamp::from_millis(1_000));
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn a_version_8_database_gains_the_explicit_cache_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warming.db");
    drop(Storage::open(&path, StorageOptions::default()).unwrap());
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE conversations DROP COLUMN explicit_cache; PRAGMA user_version = 8;",
        )
        .unwrap();
    }
    drop(Storage::open(&path, StorageOptions::default()).unwrap());
    let conn = Connection::open(&path).unwrap();
    let present: bool = conn
        .query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('conversations') \
             WHERE name = 'explicit_cache'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(present);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}
