//! A database of its own on the test PostgreSQL server, for each test.
//!
//! `scripts/postgres.sh` starts a throwaway server and exports
//! `WARMING_POSTGRES_URL`. Without it, [`TestDatabase::create`] answers
//! `None` and the test skips with a message, unless
//! `WARMING_REQUIRE_POSTGRES` is set (CI), which makes that a failure.

use std::sync::atomic::{AtomicUsize, Ordering};

use postgres::{Client, NoTls};

/// A fresh database, dropped with it.
#[derive(Debug)]
pub struct TestDatabase {
    admin: String,
    name: String,
    /// Its URL, for `--db` or `PgStorage::open`.
    pub url: String,
}

impl TestDatabase {
    /// A new empty database named after `tag`; `None` (skip) without a server.
    ///
    /// # Panics
    /// When `WARMING_REQUIRE_POSTGRES` is set and no server is given, or
    /// the server refuses to create it.
    #[must_use]
    pub fn create(tag: &str) -> Option<Self> {
        let Ok(admin) = std::env::var("WARMING_POSTGRES_URL") else {
            assert!(
                std::env::var_os("WARMING_REQUIRE_POSTGRES").is_none(),
                "WARMING_REQUIRE_POSTGRES is set but WARMING_POSTGRES_URL is not"
            );
            eprintln!("skipped: no PostgreSQL (run scripts/postgres.sh test)");
            return None;
        };
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "warming_{tag}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // Two statements: CREATE DATABASE cannot run in a transaction block.
        admin_sql(
            &admin,
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .expect("the test PostgreSQL server");
        admin_sql(&admin, format!("CREATE DATABASE {name}")).expect("a test database");
        let (base, _) = admin.rsplit_once('/').expect("a URL naming a database");
        let url = format!("{base}/{name}");
        Some(Self { admin, name, url })
    }

    /// The first column of the one row `sql` answers, as a number.
    ///
    /// # Panics
    /// When the query fails.
    #[must_use]
    pub fn query_i64(&self, sql: &str) -> i64 {
        let (url, sql) = (self.url.clone(), sql.to_owned());
        on_thread(move || {
            Client::connect(&url, NoTls)?
                .query_one(&sql, &[])
                .map(|r| r.get(0))
        })
        .expect("the query")
    }

    /// Runs `sql` (several statements allowed) on this database.
    ///
    /// # Panics
    /// When it fails.
    pub fn execute(&self, sql: &str) {
        let (url, sql) = (self.url.clone(), sql.to_owned());
        on_thread(move || Client::connect(&url, NoTls)?.batch_execute(&sql))
            .expect("the statement");
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = admin_sql(
            &self.admin,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn admin_sql(admin: &str, sql: String) -> Result<(), postgres::Error> {
    let admin = admin.to_owned();
    on_thread(move || Client::connect(&admin, NoTls)?.batch_execute(&sql))
}

/// Runs `work` on a thread of its own: the blocking client must not run on
/// a test's async runtime.
fn on_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, postgres::Error> + Send + 'static,
) -> Result<T, postgres::Error> {
    std::thread::spawn(work)
        .join()
        .expect("the PostgreSQL thread")
}
