//! `warming-storage`: the durable SQLite side of warming.
//!
//! Stores per conversation its settings, warm template (never credentials),
//! schedule, sticky backend and the stats of its warms, plus a capped warm
//! history. Writes go through one writer thread that commits many of them
//! per transaction (group commit) and acknowledges each only after its
//! transaction is on disk. Reads use their own connection; WAL lets them run
//! beside the writer.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use warming_core::{ConversationId, IntervalLimits, Settings};
//! use warming_storage::{Storage, StorageOptions, Write};
//!
//! let dir = std::env::temp_dir().join(format!("warming-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let storage = Storage::open(&dir.join("warming.db"), StorageOptions::default())?;
//! let conversation = ConversationId::new("c1")?;
//! let settings = Settings { enabled: true, interval_ms: 60_000, interval_chosen: true, policy: None, enrolled: false };
//! storage.write(Write::Settings { conversation, settings }).await?;
//! let restored = storage.load_all(&IntervalLimits::default())?;
//! assert_eq!(restored[0].settings, Some(settings));
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `schema`: opening safely (refusing non-SQLite files and newer schemas)
//!   and migrations.
//! - `writer`: the writer thread, group commit, the [`Write`]s.
//! - `read`: the restore pass and history pages.
//! - `error`: one error enum per operation.

mod error;
mod read;
mod schema;
mod templates;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;
use warming_core::{ConversationId, IntervalLimits, Restored, Template, WarmRecord};

pub use error::{OpenError, ReadError, WriteError};
pub use schema::SCHEMA_VERSION;
pub use writer::Write;
use writer::{Job, WriterConfig};

/// Tunables of the storage adapter.
#[derive(Debug, Clone, Copy)]
pub struct StorageOptions {
    /// Most history rows kept per conversation (oldest dropped). Default 1000.
    pub history_cap: usize,
    /// Most writes committed in one transaction. Default 512; 1 turns group
    /// commit off (one transaction per write), for comparison.
    pub max_batch: usize,
    /// Bytes of template blocks kept in memory for building warms
    /// (`--template-cache-mb`). Default 64 MiB.
    pub template_cache_bytes: u64,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            history_cap: 1_000,
            max_batch: 512,
            template_cache_bytes: 64 << 20,
        }
    }
}

/// The SQLite storage: a writer thread plus a read connection.
#[derive(Debug)]
pub struct Storage {
    /// Queue of the writer thread.
    jobs: mpsc::Sender<Job>,
    /// The writer thread, joined on [`close`](Self::close).
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Connection for reads; a mutex because `Connection` is not `Sync`.
    reader: Mutex<Connection>,
    /// Hot template blocks.
    blocks: warming_storage_shared::blocks::BlockCache,
    /// The database file, for messages.
    path: PathBuf,
}

impl Storage {
    /// Opens (creating and migrating if needed) the database at `path`.
    ///
    /// # Errors
    /// See [`OpenError`]: a file that is not SQLite, or whose schema is newer
    /// than this build's, is refused and left untouched.
    pub fn open(path: &Path, options: StorageOptions) -> Result<Self, OpenError> {
        let writer_conn = schema::open_and_migrate(path)?;
        let reader = schema::connect(path)?;
        let (jobs, queue) = mpsc::channel();
        let config = WriterConfig {
            max_batch: options.max_batch,
            history_cap: options.history_cap,
        };
        let writer = std::thread::Builder::new()
            .name("warming-storage-writer".into())
            .spawn(move || writer::run(writer_conn, queue, config))
            .map_err(|source| OpenError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            jobs,
            writer: Mutex::new(Some(writer)),
            reader: Mutex::new(reader),
            blocks: warming_storage_shared::blocks::BlockCache::with_bytes(
                options.template_cache_bytes,
            ),
            path: path.to_owned(),
        })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a write; the receiver resolves once it is committed (or failed).
    pub fn submit(&self, write: Write) -> oneshot::Receiver<Result<(), WriteError>> {
        let (ack, done) = oneshot::channel();
        if let Err(mpsc::SendError(Job::Write(_, Some(ack)))) =
            self.jobs.send(Job::Write(write, Some(ack)))
        {
            let _ = ack.send(Err(WriteError::Closed));
        }
        done
    }

    /// Queues a write nobody waits for; a failure is logged.
    pub fn submit_behind(&self, write: Write) {
        let _ = self.jobs.send(Job::Write(write, None));
    }

    /// Writes and waits until the write is committed.
    ///
    /// # Errors
    /// [`WriteError`] when SQLite refused the write or its commit, or the
    /// storage is closed. Nothing of the write was committed then.
    pub async fn write(&self, write: Write) -> Result<(), WriteError> {
        self.submit(write).await.unwrap_or(Err(WriteError::Closed))
    }

    /// [`write`](Self::write) for synchronous callers (not on an async runtime
    /// thread).
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub fn write_blocking(&self, write: Write) -> Result<(), WriteError> {
        self.submit(write)
            .blocking_recv()
            .unwrap_or(Err(WriteError::Closed))
    }

    /// Waits until every write queued before this call is committed.
    ///
    /// # Errors
    /// [`WriteError::Closed`] if the writer has stopped.
    pub async fn flush(&self) -> Result<(), WriteError> {
        let (ack, done) = oneshot::channel();
        self.jobs
            .send(Job::Flush(ack))
            .map_err(|_| WriteError::Closed)?;
        done.await.unwrap_or(Err(WriteError::Closed))
    }

    /// Commits everything queued, then stops the writer. Later writes fail
    /// with [`WriteError::Closed`]. Blocks; safe to call twice.
    pub fn close(&self) {
        let _ = self.jobs.send(Job::Stop);
        let handle = self.writer.lock().map(|mut w| w.take()).unwrap_or(None);
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// Every stored conversation, for [`warming_core::Warmer::restore`].
    /// Blocking: call it from a blocking context.
    ///
    /// # Errors
    /// [`ReadError`] when SQLite refuses the query.
    pub fn load_all(&self, limits: &IntervalLimits) -> Result<Vec<Restored>, ReadError> {
        read::load_all(&self.reader(), limits)
    }

    /// A service-wide value written with [`Write::Meta`]. Blocking.
    ///
    /// # Errors
    /// [`ReadError`] when SQLite refuses the query.
    pub fn meta(&self, key: &str) -> Result<Option<String>, ReadError> {
        use rusqlite::OptionalExtension;
        Ok(self
            .reader()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()?)
    }

    /// The newest `limit` warms of a conversation, newest first. Blocking.
    ///
    /// # Errors
    /// [`ReadError`] when SQLite refuses the query.
    pub fn history(
        &self,
        conversation: &ConversationId,
        limit: usize,
    ) -> Result<Vec<WarmRecord>, ReadError> {
        read::history(&self.reader(), conversation, limit)
    }

    /// The conversation's stored template with its body, assembled from its
    /// blocks (hot ones from memory). Blocking.
    ///
    /// # Errors
    /// [`ReadError`] when SQLite refuses the query.
    pub fn template(&self, conversation: &ConversationId) -> Result<Option<Template>, ReadError> {
        templates::read(&self.reader(), &self.blocks, conversation)
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the connection in a
        // state worse than SQLite's own transaction rollback.
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.close();
    }
}

/// The service's store port, on SQLite.
impl warming_service::Store for Storage {
    fn submit(&self, write: Write) -> warming_service::Ack {
        let ack = Storage::submit(self, write);
        Box::pin(async move {
            ack.await
                .unwrap_or(Err(WriteError::Closed))
                .map_err(Into::into)
        })
    }

    fn submit_behind(&self, write: Write) {
        Storage::submit_behind(self, write);
    }

    fn flush(&self) -> warming_service::Ack {
        let (ack, done) = oneshot::channel();
        if self.jobs.send(Job::Flush(ack)).is_err() {
            return Box::pin(async { Err(warming_service::StoreError::Closed) });
        }
        Box::pin(async move {
            done.await
                .unwrap_or(Err(WriteError::Closed))
                .map_err(Into::into)
        })
    }

    fn history(
        &self,
        conversation: &ConversationId,
        limit: usize,
    ) -> Result<Vec<WarmRecord>, warming_service::StoreError> {
        Storage::history(self, conversation, limit).map_err(warming_service::StoreError::from)
    }

    fn load(
        &self,
        conversation: &ConversationId,
        limits: &IntervalLimits,
    ) -> Result<Option<Restored>, warming_service::StoreError> {
        read::load_one(&self.reader(), conversation, limits)
            .map_err(warming_service::StoreError::from)
    }

    fn template(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<Template>, warming_service::StoreError> {
        Storage::template(self, conversation).map_err(warming_service::StoreError::from)
    }

    fn load_all(
        &self,
        limits: &IntervalLimits,
    ) -> Result<Vec<Restored>, warming_service::StoreError> {
        Storage::load_all(self, limits).map_err(warming_service::StoreError::from)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, warming_service::StoreError> {
        Storage::meta(self, key).map_err(warming_service::StoreError::from)
    }

    fn close(&self) {
        Storage::close(self);
    }
}
