//! Errors: [`SqliteError`] when a store cannot be opened, and the mapping of SQLite failures
//! during operations onto [`StoreError`].
//!
//! Failures of the store (locks, I/O, damage) name the database file and SQLite's cause, for
//! operators. [`StoreError::Invalid`] says what is wrong with the request in words of its own:
//! a server may show it to the client who sent the request, so it never holds a path or
//! SQLite's text; those are logged instead.

use errand_core::StoreError;
use rusqlite::ErrorCode;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::warn;

/// Why a [`SqliteStore`](crate::SqliteStore) could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// The directory that should hold the database could not be created.
    #[error("cannot create the directory {} for the task database {}: {source}", .dir.display(), .path.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The database file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database file could not be created private (mode 0600) or made so.
    #[error("cannot create the task database {} with private permissions (0600): {source}", .path.display())]
    Private {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another connection holds a lock on the file for longer than the busy timeout.
    #[error("the task database {} is locked by another connection (still busy after {} ms); is another errand process migrating or holding a long write?", .path.display(), .waited.as_millis())]
    Locked {
        /// The database file.
        path: PathBuf,
        /// How long the open waited.
        waited: Duration,
    },
    /// The file or its directory cannot be written.
    #[error("the task database {} cannot be written (check the permissions of the file, its -wal and -shm files and its directory): {source}", .path.display())]
    ReadOnly {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file is not a SQLite database, or is damaged.
    #[error("the task database {} is corrupt or not a SQLite file: {source}", .path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file is some other application's SQLite database.
    #[error("{} is a SQLite database of another application ({why}), not an errand task database; choose another path", .path.display())]
    Foreign {
        /// The database file.
        path: PathBuf,
        /// What gave it away.
        why: String,
    },
    /// The database was written by a newer errand.
    #[error("the task database {} has schema version {found}, newer than this errand supports ({supported}); upgrade errand", .path.display())]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The file's schema version.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The file system does not support SQLite's write-ahead log (or the path is not a file).
    #[error("the task database {} cannot use write-ahead logging (journal mode stays {mode:?}); put it on a local file system", .path.display())]
    NoWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// A schema migration failed.
    #[error("cannot upgrade the task database {} to schema version {version}: {source}", .path.display())]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The migration that failed.
        version: i64,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Any other failure to open the file (missing directory, I/O error, ...).
    #[error("cannot open the task database {}: {source}", .path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the writer thread of the task database {}: {source}", .path.display())]
    Thread {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl SqliteError {
    /// Classifies a SQLite failure while opening `path`.
    pub(crate) fn opening(path: &Path, busy_timeout: Duration, source: rusqlite::Error) -> Self {
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => SqliteError::Locked {
                path,
                waited: busy_timeout,
            },
            Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
                SqliteError::ReadOnly { path, source }
            }
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                SqliteError::Corrupt { path, source }
            }
            _ => SqliteError::Open { path, source },
        }
    }
}

impl From<SqliteError> for StoreError {
    fn from(e: SqliteError) -> Self {
        match e {
            SqliteError::Corrupt { .. }
            | SqliteError::Foreign { .. }
            | SqliteError::TooNew { .. } => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

/// A failure inside an operation, before it is turned into a [`StoreError`] naming the file.
#[derive(Debug)]
pub(crate) enum OpError {
    /// SQLite failed.
    Sqlite(rusqlite::Error),
    /// A stored value could not be decoded.
    Corrupt(String),
    /// The request cannot be stored.
    Invalid(String),
}

impl From<rusqlite::Error> for OpError {
    fn from(e: rusqlite::Error) -> Self {
        OpError::Sqlite(e)
    }
}

impl From<rusqlite::types::FromSqlError> for OpError {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        OpError::Corrupt(format!("a stored value has the wrong type: {e}"))
    }
}

impl OpError {
    /// Turns the failure into the [`StoreError`] callers see. Locks and I/O failures are
    /// `Unavailable` (try again later); damaged data is `Corrupt`; a request the database
    /// refuses is `Invalid`, with a message free of paths and SQL (the details are logged).
    pub(crate) fn into_store_error(self, path: &Path, busy_timeout: Duration) -> StoreError {
        let path = path.display();
        let refused = |e: &rusqlite::Error, message: &str| {
            warn!(path = %path, error = %e, "the task database refused a write");
            StoreError::Invalid(message.to_string())
        };
        let e = match self {
            OpError::Corrupt(why) => {
                return StoreError::Corrupt(format!("in the task database {path}: {why}"));
            }
            OpError::Invalid(why) => return StoreError::Invalid(why),
            OpError::Sqlite(e) => e,
        };
        if let rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) = e
        {
            return StoreError::Corrupt(format!("in the task database {path}: {e}"));
        }
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Unavailable(format!(
                    "the task database {path} is locked by another connection (still busy after {} ms)",
                    busy_timeout.as_millis()
                ))
            }
            Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
                StoreError::Unavailable(format!("the task database {path} cannot be written: {e}"))
            }
            Some(
                ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::FileLockingProtocolFailed
                | ErrorCode::OutOfMemory,
            ) => StoreError::Unavailable(format!("I/O failure on the task database {path}: {e}")),
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                StoreError::Corrupt(format!("the task database {path} is damaged: {e}"))
            }
            Some(ErrorCode::TooBig) => refused(&e, "a value is too large for the task store"),
            Some(ErrorCode::ConstraintViolation) => refused(
                &e,
                "the task store refused the write: it conflicts with a stored task (does a task with this id exist?)",
            ),
            _ => StoreError::Backend(format!("SQLite error on the task database {path}: {e}")),
        }
    }
}

/// A copy of `e`, for answering every operation of a failed transaction.
pub(crate) fn duplicate(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::Invalid(m) => StoreError::Invalid(m.clone()),
        StoreError::Backend(m) => StoreError::Backend(m.clone()),
    }
}
