//! `warming-storage-postgres`: the store port on PostgreSQL, for a service
//! whose database is shared or managed (`warming serve --db postgres://...`).
//!
//! The same layout and rules as the SQLite adapter: a conversation row with
//! its settings, template layout (content-addressed blocks, each stored
//! once), schedule, backend and stats; a capped warm history. One writer
//! thread commits many writes per transaction (group commit) and
//! acknowledges each only after its transaction committed (PostgreSQL's
//! default `synchronous_commit = on`: on disk). Reads run on a thread and a
//! connection of their own.
//!
//! # Layout
//! - `schema`: versioned migrations, serialised across instances by an
//!   advisory lock.
//! - `writer`: the writer thread and how each [`Write`] is applied.
//! - `warm_run`: consecutive warms and schedules applied set-based.
//! - `read`: the reader thread.
//! - `cluster`: several instances on one database ([`PgCluster`]).

mod cluster;
mod connection;
mod read;
mod schema;
mod warm_run;
mod writer;

pub use cluster::PgCluster;
pub use connection::PgOpenError;
pub(crate) use connection::{connect, store_error, Connection};

use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;

use tokio::sync::oneshot;
use warming_core::{ConversationId, IntervalLimits, Restored, Template, WarmRecord};
use warming_service::{Ack, Store, StoreError, Write};
use warming_storage_shared::blocks::BlockCache;

pub use schema::SCHEMA_VERSION;
use writer::{Job, WriterConfig};

/// Tunables of the PostgreSQL adapter.
#[derive(Debug, Clone, Copy)]
pub struct PgOptions {
    /// Most history rows kept per conversation (oldest dropped). Default 1000.
    pub history_cap: usize,
    /// Most writes committed in one transaction. Default 512.
    pub max_batch: usize,
    /// Bytes of template blocks kept in memory for building warms. Default
    /// 64 MiB.
    pub template_cache_bytes: u64,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            history_cap: 1_000,
            max_batch: 512,
            template_cache_bytes: 64 << 20,
        }
    }
}

/// The PostgreSQL storage: a writer thread and a reader thread.
#[derive(Debug)]
pub struct PgStorage {
    jobs: mpsc::Sender<Job>,
    reads: Mutex<mpsc::Sender<read::Read>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Most history rows a read returns: the writer trims a conversation's
    /// history every few rows, so it may briefly hold a few more.
    history_cap: usize,
}

impl PgStorage {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/db`),
    /// migrating the schema if needed.
    ///
    /// # Errors
    /// [`PgOpenError`]: an unreachable server, a refused login, a schema
    /// newer than this build's.
    pub fn open(url: &str, options: PgOptions) -> Result<Self, PgOpenError> {
        // Each connection is made on its own thread: the `postgres` client
        // runs a runtime of its own, which must not start inside a caller's.
        let writer_client = connect(url, true)?;
        let reader_client = connect(url, false)?;
        let (jobs, queue) = mpsc::channel();
        let config = WriterConfig {
            max_batch: options.max_batch,
            history_cap: i64::try_from(options.history_cap).unwrap_or(i64::MAX),
        };
        let writer_connection = Connection::new(url, writer_client);
        let writer = std::thread::Builder::new()
            .name("warming-pg-writer".into())
            .spawn(move || writer::run(writer_connection, queue, config))?;
        let (reads, requests) = mpsc::channel();
        let blocks = BlockCache::with_bytes(options.template_cache_bytes);
        let reader_connection = Connection::new(url, reader_client);
        std::thread::Builder::new()
            .name("warming-pg-reader".into())
            .spawn(move || read::run(reader_connection, requests, blocks))?;
        Ok(Self {
            jobs,
            reads: Mutex::new(reads),
            writer: Mutex::new(Some(writer)),
            history_cap: options.history_cap,
        })
    }

    /// Queues a write; the receiver resolves once it is committed.
    fn queue(&self, write: Write) -> oneshot::Receiver<Result<(), StoreError>> {
        let (ack, done) = oneshot::channel();
        if let Err(mpsc::SendError(Job::Write(_, Some(ack)))) =
            self.jobs.send(Job::Write(write, Some(ack)))
        {
            let _ = ack.send(Err(StoreError::Closed));
        }
        done
    }

    /// Asks the reader and waits for its answer.
    fn read<T>(
        &self,
        ask: impl FnOnce(mpsc::SyncSender<Result<T, StoreError>>) -> read::Read,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let sent = self
            .reads
            .lock()
            .map_err(|_| StoreError::Closed)?
            .send(ask(reply));
        if sent.is_err() {
            return Err(StoreError::Closed);
        }
        answer.recv().unwrap_or(Err(StoreError::Closed))
    }
}

impl Drop for PgStorage {
    fn drop(&mut self) {
        Store::close(self);
    }
}

impl Store for PgStorage {
    fn submit(&self, write: Write) -> Ack {
        let done = self.queue(write);
        Box::pin(async move { done.await.unwrap_or(Err(StoreError::Closed)) })
    }

    fn submit_behind(&self, write: Write) {
        let _ = self.jobs.send(Job::Write(write, None));
    }

    fn flush(&self) -> Ack {
        let (ack, done) = oneshot::channel();
        if self.jobs.send(Job::Flush(ack)).is_err() {
            return Box::pin(async { Err(StoreError::Closed) });
        }
        Box::pin(async move { done.await.unwrap_or(Err(StoreError::Closed)) })
    }

    fn history(
        &self,
        conversation: &ConversationId,
        limit: usize,
    ) -> Result<Vec<WarmRecord>, StoreError> {
        let limit = i64::try_from(limit.min(self.history_cap)).unwrap_or(i64::MAX);
        self.read(|reply| read::Read::History(conversation.clone(), limit, reply))
    }

    fn load(
        &self,
        conversation: &ConversationId,
        limits: &IntervalLimits,
    ) -> Result<Option<Restored>, StoreError> {
        self.read(|reply| read::Read::One(conversation.clone(), *limits, reply))
    }

    fn template(&self, conversation: &ConversationId) -> Result<Option<Template>, StoreError> {
        self.read(|reply| read::Read::Template(conversation.clone(), reply))
    }

    fn load_all(&self, limits: &IntervalLimits) -> Result<Vec<Restored>, StoreError> {
        self.read(|reply| read::Read::All(*limits, reply))
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|reply| read::Read::Meta(key.to_owned(), reply))
    }

    fn close(&self) {
        let _ = self.jobs.send(Job::Stop);
        let handle = self.writer.lock().map(|mut w| w.take()).unwrap_or(None);
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}
