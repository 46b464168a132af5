//! Errors of the storage adapter, one enum per operation.

use std::path::PathBuf;

/// Why the database could not be opened. The file is never modified when
/// opening fails for any reason but a SQLite error mid-migration.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file exists and is not a SQLite database.
    #[error("{path} is not a SQLite database; refusing to touch it")]
    NotSqlite {
        /// The file.
        path: PathBuf,
    },
    /// The database was written by a newer version of warming.
    #[error(
        "{path} has schema version {found}, newer than the {supported} this warming supports; \
         upgrade warming or point --db elsewhere"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// Reading the file's header failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// SQLite refused to open or migrate the database.
    #[error("cannot open {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
}

/// Why a write was not acknowledged. Nothing of it was committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// SQLite refused the write or the commit.
    #[error("storage write failed: {0}")]
    Sqlite(String),
    /// The writer thread has stopped.
    #[error("storage is closed")]
    Closed,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// SQLite refused the query.
    #[error("storage read failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl From<WriteError> for warming_service::StoreError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Closed => Self::Closed,
            other => Self::Failed(warming_service::Cause::new(other)),
        }
    }
}

impl From<ReadError> for warming_service::StoreError {
    fn from(e: ReadError) -> Self {
        Self::Failed(warming_service::Cause::new(e))
    }
}
