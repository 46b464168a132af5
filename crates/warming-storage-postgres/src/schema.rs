//! The PostgreSQL schema and its migrations, versioned like SQLite's.

use postgres::Client;

/// Migrations in order; `warming_schema.version` counts how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: the same tables as SQLite's schema 7 (templates as blocks).
    "CREATE TABLE conversations (
        id                TEXT PRIMARY KEY,
        settings          TEXT,
        layout            TEXT,
        model             TEXT,
        cwd               TEXT,
        cacheable_tokens  BIGINT,
        long_ttl          BOOLEAN,
        template_bytes    BIGINT,
        next_warm_at      BIGINT,
        backend           TEXT,
        last_pct          DOUBLE PRECISION,
        last_expected_pct DOUBLE PRECISION,
        last_warm_at      BIGINT,
        warm_count        BIGINT NOT NULL DEFAULT 0,
        last_error        TEXT,
        depth             INTEGER NOT NULL DEFAULT 0,
        gaps              TEXT,
        idle_since        BIGINT
    );
    CREATE TABLE warm_history (
        seq                BIGSERIAL PRIMARY KEY,
        conversation       TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        due_at             BIGINT,
        started_at         BIGINT NOT NULL,
        finished_at        BIGINT NOT NULL,
        trigger            TEXT NOT NULL,
        outcome            TEXT NOT NULL,
        expired            BOOLEAN NOT NULL,
        input_tokens       BIGINT,
        cache_read_tokens  BIGINT,
        cache_write_tokens BIGINT,
        output_tokens      BIGINT,
        pct                DOUBLE PRECISION,
        expected_pct       DOUBLE PRECISION,
        backend            TEXT,
        error              TEXT,
        kind               TEXT
    );
    CREATE INDEX warm_history_by_conversation ON warm_history(conversation, seq);
    CREATE TABLE template_blocks (
        hash BYTEA PRIMARY KEY,
        body TEXT NOT NULL,
        refs BIGINT NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 2: several instances on one database (`cluster`): who is alive, on
    // the database's clock, and who holds which conversation.
    "CREATE TABLE instances (
        id          TEXT PRIMARY KEY,
        url         TEXT NOT NULL,
        lease_until TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE owners (
        conversation TEXT PRIMARY KEY,
        owner        TEXT NOT NULL
    );
    CREATE INDEX owners_by_owner ON owners(owner);",
    // 3: what each conversation's warms spent and its returns saved (the
    // core's ledger, as JSON).
    "ALTER TABLE conversations ADD COLUMN ledger TEXT;",
    // 4: whether each template reads an explicit cache (Gemini's
    // `cachedContent`), kept beside its summary like `long_ttl`.
    "ALTER TABLE conversations ADD COLUMN explicit_cache BOOLEAN;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Lock id that serialises migrations of instances starting together.
pub(crate) const MIGRATION_LOCK: i64 = 0x0077_6172_6d69_6e67; // "warming"

/// Brings the database to [`SCHEMA_VERSION`]; refuses a newer one.
pub(crate) fn migrate(client: &mut Client) -> Result<(), String> {
    let sql = |e: postgres::Error| format!("cannot migrate the database: {e}");
    let mut tx = client.transaction().map_err(sql)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(sql)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS warming_schema (version INTEGER NOT NULL)")
        .map_err(sql)?;
    let found: Option<i32> = tx
        .query_opt("SELECT version FROM warming_schema", &[])
        .map_err(sql)?
        .map(|row| row.get(0));
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(format!(
            "the database has schema version {found}, newer than the {SCHEMA_VERSION} this \
             warming supports; upgrade warming or point --db elsewhere"
        ));
    }
    for migration in &MIGRATIONS[usize::try_from(found).unwrap_or(0)..] {
        tx.batch_execute(migration).map_err(sql)?;
    }
    tx.execute("DELETE FROM warming_schema", &[]).map_err(sql)?;
    tx.execute(
        "INSERT INTO warming_schema (version) VALUES ($1)",
        &[&SCHEMA_VERSION],
    )
    .map_err(sql)?;
    tx.commit().map_err(sql)
}
