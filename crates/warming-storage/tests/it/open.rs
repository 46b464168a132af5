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
