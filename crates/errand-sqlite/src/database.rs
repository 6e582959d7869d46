//! [`Db`]: the database file and how connections to it are opened and tuned.

use crate::config::SqliteConfig;
use crate::error::{OpError, SqliteError};
use crate::migrations;
use errand_core::StoreError;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;
use std::time::Duration;

/// Page cache of the writer connection, in KiB: holds the interior pages of every index and
/// the hot rows at a backlog of millions. Not more: at each commit SQLite walks the cache's
/// hash table, which measurably slowed commits at 64 MiB.
const WRITER_CACHE_KIB: i64 = 8 * 1024;
/// Page cache of each read connection, in KiB.
const READER_CACHE_KIB: i64 = 8 * 1024;
/// Bytes of WAL file kept after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
/// Prepared statements kept per connection (every operation's SQL fits).
const STATEMENT_CACHE: usize = 64;

/// The database file of one store.
#[derive(Debug)]
pub(crate) struct Db {
    /// Where it is.
    pub(crate) path: PathBuf,
    /// How long statements wait for another connection's lock.
    pub(crate) busy_timeout: Duration,
}

impl Db {
    /// Turns an operation's failure into the error callers see, naming the file.
    pub(crate) fn error(&self, e: OpError) -> StoreError {
        e.into_store_error(&self.path, self.busy_timeout)
    }

    fn opening(&self, e: rusqlite::Error) -> SqliteError {
        SqliteError::opening(&self.path, self.busy_timeout, e)
    }

    /// Opens the one read-write connection (creating the file), switches the database to WAL
    /// and brings its schema up to date.
    pub(crate) fn open_writer(&self, config: &SqliteConfig) -> Result<Connection, SqliteError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn =
            Connection::open_with_flags(&self.path, flags).map_err(|e| self.opening(e))?;
        self.tune(&conn, WRITER_CACHE_KIB)
            .map_err(|e| self.opening(e))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| self.opening(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(SqliteError::NoWal {
                path: self.path.clone(),
                mode,
            });
        }
        conn.pragma_update(None, "synchronous", config.synchronous.as_pragma())
            .map_err(|e| self.opening(e))?;
        // After a burst, give the disk back: the WAL is cut to this size once checkpointed.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(|e| self.opening(e))?;
        migrations::run(&mut conn, self)?;
        Ok(conn)
    }

    /// Opens a read-only connection.
    pub(crate) fn open_reader(&self) -> Result<Connection, SqliteError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| self.opening(e))?;
        self.tune(&conn, READER_CACHE_KIB)
            .map_err(|e| self.opening(e))?;
        Ok(conn)
    }

    fn tune(&self, conn: &Connection, cache_kib: i64) -> rusqlite::Result<()> {
        conn.busy_timeout(self.busy_timeout)?;
        // Plans must not depend on bound values: otherwise a new `LIMIT ?` value makes SQLite
        // prepare the statement again on every claim.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.pragma_update(None, "cache_size", -cache_kib)?;
        conn.pragma_update(None, "temp_store", "MEMORY")
    }
}
