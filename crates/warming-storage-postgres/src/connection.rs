//! Connections to PostgreSQL: opened with a timeout, opened again after a
//! loss, and their failures told apart (the database away, or the call at
//! fault).

use postgres::{Client, NoTls};
use warming_service::{Cause, StoreError};

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PgOpenError {
    /// The server refused the connection or the URL is invalid. The message
    /// never repeats the URL (it may carry a password).
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    /// The schema could not be brought up to date, or is newer.
    #[error("{0}")]
    Schema(String),
    /// A thread could not be started.
    #[error("cannot start the storage threads: {0}")]
    Thread(#[from] std::io::Error),
}

/// Longest wait for the database to accept a connection: a server that
/// is down answers at once; one failing over may not answer at all.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects from the calling thread (one of the store's own, never an
/// async runtime's), waiting at most [`CONNECT_TIMEOUT`].
pub(crate) fn connect_here(url: &str) -> Result<Client, postgres::Error> {
    let mut config: postgres::Config = url.parse()?;
    config.connect_timeout(CONNECT_TIMEOUT);
    config.connect(NoTls)
}

/// A connection the store's threads keep: when the database drops it (a
/// restart, a failover), the next use connects again, so an instance rides
/// through an outage instead of failing every later call.
pub(crate) struct Connection {
    url: String,
    client: Client,
    /// How many times it connected again: statements prepared on an
    /// earlier client must be prepared again.
    generation: u64,
    /// When it was last handed out.
    used_at: std::time::Instant,
}

/// A connection idle longer than this is checked (one round trip) before
/// it is used: a server that restarted meanwhile closed it, and the client
/// learns so only from the next call, which would fail.
const CHECK_IF_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(1);

impl Connection {
    pub(crate) fn new(url: &str, client: Client) -> Self {
        Self {
            url: url.to_owned(),
            client,
            generation: 0,
            used_at: std::time::Instant::now(),
        }
    }

    /// The client, connected again first if the last one was lost.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] while the database cannot be reached.
    pub(crate) fn get(&mut self) -> Result<&mut Client, StoreError> {
        self.connected().map(|(client, _)| client)
    }

    /// The client, connected again first if the last one was lost, and its
    /// generation (see [`Connection::generation`]).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] while the database cannot be reached.
    pub(crate) fn connected(&mut self) -> Result<(&mut Client, u64), StoreError> {
        let stale = self.used_at.elapsed() > CHECK_IF_IDLE_FOR
            && self.client.is_valid(CONNECT_TIMEOUT).is_err();
        self.used_at = std::time::Instant::now();
        if stale || self.client.is_closed() {
            let client = connect_here(&self.url).map_err(unreachable)?;
            tracing::info!("reconnected to PostgreSQL");
            self.client = client;
            self.generation += 1;
        }
        Ok((&mut self.client, self.generation))
    }

    /// The client as it is, connected or not (its calls fail when not).
    pub(crate) fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Whether the connection is lost (a failed call's error is then the
    /// database's absence, not the call's).
    pub(crate) fn is_lost(&self) -> bool {
        self.client.is_closed()
    }
}

/// Connects (and migrates, for the writer's connection) on a thread of its
/// own, outside any async runtime the caller may be on.
pub(crate) fn connect(url: &str, migrate: bool) -> Result<Client, PgOpenError> {
    let url = url.to_owned();
    std::thread::Builder::new()
        .name("warming-pg-connect".into())
        .spawn(move || {
            let mut client =
                connect_here(&url).map_err(|e| PgOpenError::Connect(connect_error(&e)))?;
            if migrate {
                crate::schema::migrate(&mut client).map_err(PgOpenError::Schema)?;
            }
            Ok(client)
        })?
        .join()
        .unwrap_or_else(|_| {
            Err(PgOpenError::Connect(
                "the connecting thread panicked".into(),
            ))
        })
}

/// A failed call as the store reports it: [`StoreError::Unavailable`]
/// (retry shortly) when the database is away, not the call at fault: the
/// connection closed or failed at the socket, or the server said it is
/// shutting down, starting up or lost the connection (SQLSTATE classes 57P
/// "operator intervention" and 08 "connection exception", PostgreSQL's
/// "Errcodes" appendix).
pub(crate) fn store_error(e: postgres::Error) -> StoreError {
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    let away = e.code().is_some_and(|code| {
        let code = code.code();
        code.starts_with("57P") || code.starts_with("08")
    });
    let unavailable = e.is_closed() || io || away;
    // "db error" alone says nothing: the server's own words instead.
    let words = e
        .as_db_error()
        .map_or_else(|| e.to_string(), |db| db.message().to_owned());
    let cause = Cause::new(ServerSaid { words, error: e });
    if unavailable {
        StoreError::Unavailable(cause)
    } else {
        StoreError::Failed(cause)
    }
}

/// A PostgreSQL error in the server's words, the client's error kept as
/// its source.
#[derive(Debug)]
pub(crate) struct ServerSaid {
    words: String,
    error: postgres::Error,
}

impl std::fmt::Display for ServerSaid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.words)
    }
}

impl std::error::Error for ServerSaid {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// A connection that could not be made, for the store: unavailable, in the
/// server's words.
pub(crate) fn unreachable(e: postgres::Error) -> StoreError {
    StoreError::Unavailable(Cause::new(ServerSaid {
        words: connect_error(&e),
        error: e,
    }))
}

/// Why a connection failed, in the server's words when it answered ("db
/// error" alone tells an operator nothing): `password authentication failed
/// for user "warming"`, `database "x" does not exist`.
pub(crate) fn connect_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => std::error::Error::source(e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}")),
    }
}
