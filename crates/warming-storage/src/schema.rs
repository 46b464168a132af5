//! Opening a database file safely and migrating its schema.

use std::io::Read;
use std::path::Path;

use rusqlite::Connection;

use crate::OpenError;

/// One schema step: SQL, then (for steps that move data) a Rust pass.
struct Migration {
    sql: &'static str,
    data: Option<fn(&Connection) -> rusqlite::Result<()>>,
}

const fn sql(sql: &'static str) -> Migration {
    Migration { sql, data: None }
}

/// Migrations in order; `PRAGMA user_version` counts how many ran.
const MIGRATIONS: &[Migration] = &[
    // 1: conversations with their settings, template, schedule, backend and
    // the stats of their warms, plus the warm history.
    sql("CREATE TABLE conversations (
        id                TEXT PRIMARY KEY NOT NULL,
        settings          TEXT,
        request           TEXT,
        model             TEXT,
        cwd               TEXT,
        next_warm_at      INTEGER,
        backend           TEXT,
        last_pct          REAL,
        last_expected_pct REAL,
        last_warm_at      INTEGER,
        warm_count        INTEGER NOT NULL DEFAULT 0,
        last_error        TEXT
    );
    CREATE TABLE warm_history (
        seq                INTEGER PRIMARY KEY,
        conversation       TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        started_at         INTEGER NOT NULL,
        finished_at        INTEGER NOT NULL,
        trigger            TEXT NOT NULL,
        outcome            TEXT NOT NULL,
        expired            INTEGER NOT NULL,
        input_tokens       INTEGER,
        cache_read_tokens  INTEGER,
        cache_write_tokens INTEGER,
        pct                REAL,
        expected_pct       REAL,
        backend            TEXT,
        error              TEXT
    );
    CREATE INDEX warm_history_by_conversation ON warm_history(conversation, seq);"),
    // 2: when each warm was due, so lateness is visible.
    sql("ALTER TABLE warm_history ADD COLUMN due_at INTEGER;"),
    // 3: small values of the whole service (the learned return prior).
    sql("CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);"),
    // 4: each conversation's rhythm, for the adaptive policy after a restart.
    sql(
        "ALTER TABLE conversations ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE conversations ADD COLUMN gaps TEXT;",
    ),
    // 5: when each conversation's idle time began, for the idle cap.
    sql("ALTER TABLE conversations ADD COLUMN idle_since INTEGER;"),
    // 6: which request each warm sent, and the output it generated.
    sql("ALTER TABLE warm_history ADD COLUMN kind TEXT;
     ALTER TABLE warm_history ADD COLUMN output_tokens INTEGER;"),
    // 7: templates as content-addressed blocks, each stored once; every
    // stored request moves into them. A rowid table: blocks of a few KB
    // would spill to whole overflow pages in a WITHOUT ROWID one (4x the
    // disk, measured).
    Migration {
        sql: "CREATE TABLE template_blocks (
            hash BLOB PRIMARY KEY NOT NULL,
            body TEXT NOT NULL,
            refs INTEGER NOT NULL
        );
        ALTER TABLE conversations ADD COLUMN layout TEXT;
        ALTER TABLE conversations ADD COLUMN cacheable_tokens INTEGER;
        ALTER TABLE conversations ADD COLUMN long_ttl INTEGER;
        ALTER TABLE conversations ADD COLUMN template_bytes INTEGER;
        ALTER TABLE conversations ADD COLUMN explicit_cache INTEGER;",
        data: Some(crate::templates::migrate_requests_to_blocks),
    },
    // 8: what each conversation's warms spent and its returns saved (the
    // core's ledger, as JSON).
    sql("ALTER TABLE conversations ADD COLUMN ledger TEXT;"),
    // 9: whether each template reads an explicit cache (Gemini's
    // `cachedContent`), kept beside its summary like `long_ttl`. Migration
    // 7 adds it already (its data step writes templates as this build
    // does): only a database past 7 lacks it.
    Migration {
        sql: "",
        data: Some(add_explicit_cache),
    },
];

/// Adds `conversations.explicit_cache` where migration 7 ran before it
/// existed.
fn add_explicit_cache(conn: &Connection) -> rusqlite::Result<()> {
    let present: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('conversations') WHERE name = 'explicit_cache'",
        [],
        |row| row.get(0),
    )?;
    if !present {
        conn.execute_batch("ALTER TABLE conversations ADD COLUMN explicit_cache INTEGER;")?;
    }
    Ok(())
}

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Refuses a file that exists, is not empty and is not SQLite, before SQLite
/// gets a chance to write to it.
fn check_header(path: &Path) -> Result<(), OpenError> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(OpenError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut header = [0u8; 16];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(source) => {
                return Err(OpenError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }
    if read == 0 || &header == SQLITE_HEADER {
        Ok(())
    } else {
        Err(OpenError::NotSqlite {
            path: path.to_owned(),
        })
    }
}

/// Creates the file readable by its owner only: templates hold prompts.
fn create_private(path: &Path) -> Result<(), OpenError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(OpenError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Opens a connection with the settings every connection uses.
pub fn connect(path: &Path) -> Result<Connection, OpenError> {
    let sqlite = |source| OpenError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open(path).map_err(sqlite)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sqlite)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(sqlite)?;
    Ok(conn)
}

/// Opens (creating if absent) and migrates the database at `path`.
///
/// # Errors
/// [`OpenError::NotSqlite`] and [`OpenError::NewerSchema`] leave the file
/// byte for byte as it was.
pub fn open_and_migrate(path: &Path) -> Result<Connection, OpenError> {
    check_header(path)?;
    create_private(path)?;
    let sqlite = |source| OpenError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let mut conn = connect(path)?;
    // Read the version before anything writes (switching to WAL does).
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sqlite)?;
    if found > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sqlite)?;
    // FULL: a commit is on disk before it is acknowledged. Group commit
    // pays one fsync per batch, not per write.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite)?;
    let start = usize::try_from(found).unwrap_or(0);
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(start) {
        let tx = conn.transaction().map_err(sqlite)?;
        tx.execute_batch(migration.sql).map_err(sqlite)?;
        if let Some(data) = migration.data {
            data(&tx).map_err(sqlite)?;
        }
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
    }
    Ok(conn)
}
