//! [`SqliteConfig`]: how a [`SqliteStore`](crate::SqliteStore) opens and runs its database.

use errand_core::{Clock, SystemClock};
use std::sync::Arc;
use std::time::Duration;

/// Settings of a [`SqliteStore`](crate::SqliteStore). Every default suits one machine.
///
/// ```
/// use errand_sqlite::{SqliteConfig, Synchronous};
/// let config = SqliteConfig {
///     synchronous: Synchronous::Full,
///     ..SqliteConfig::default()
/// };
/// assert_eq!(config.read_connections, 4);
/// ```
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Where the store reads the time for leases, schedules and expiry. Default: the system
    /// clock; tests pass a [`ManualClock`](errand_core::ManualClock).
    pub clock: Arc<dyn Clock>,
    /// How hard SQLite pushes each commit to the disk. Default [`Synchronous::Normal`].
    pub synchronous: Synchronous,
    /// How long a statement waits for another process's lock on the file before the call
    /// fails with [`StoreError::Unavailable`](errand_core::StoreError). Default 5 s.
    pub busy_timeout: Duration,
    /// Read-only connections serving `get`, `list`, `depth` and `ping`. Default 4.
    pub read_connections: usize,
    /// Most queued write operations committed in one transaction. Default 1024.
    pub max_batch: usize,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            synchronous: Synchronous::default(),
            busy_timeout: Duration::from_secs(5),
            read_connections: 4,
            max_batch: 1024,
        }
    }
}

/// SQLite's `synchronous` setting: what a commit waits for. The database runs in WAL mode,
/// where the choice is between surviving a power cut and committing faster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// Never waits for the disk: a crash of the operating system or a power cut can lose
    /// recent commits or corrupt the file. For throwaway data only.
    Off,
    /// Waits for the disk only at checkpoints: every commit survives a crash of the process;
    /// a power cut can lose the last commits but never corrupts the file. The default.
    #[default]
    Normal,
    /// Waits for the disk at every commit: commits survive power cuts too.
    Full,
    /// Like `Full`, and also syncs the directory after the WAL is reset.
    Extra,
}

impl Synchronous {
    /// The value of `PRAGMA synchronous`.
    pub(crate) fn as_pragma(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
            Synchronous::Extra => "EXTRA",
        }
    }
}
