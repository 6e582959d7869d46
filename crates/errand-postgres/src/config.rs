//! [`PostgresConfig`]: how the store connects and wakes its workers.

use errand_core::{Clock, SystemClock};
use std::sync::Arc;
use std::time::Duration;

/// Settings of a [`PostgresStore`](crate::PostgresStore).
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// The schema errand's tables live in, created if missing (default `errand`). Several
    /// deployments can share one database under different schemas.
    pub schema: String,
    /// The most connections the store's pool opens (default 10).
    pub max_connections: u32,
    /// How long an operation waits for a pooled connection before the store reports itself
    /// unavailable (default 5 s).
    pub acquire_timeout: Duration,
    /// Never `LISTEN`: for a server reached through PgBouncer in transaction pooling mode,
    /// where a listening session cannot be held. Workers and watchers of other processes then
    /// learn of changes by polling every [`PostgresConfig::poll_interval`]; those of this
    /// process are still told at once. [`PostgresStore::connect`](crate::PostgresStore::connect)
    /// then also keeps no prepared statements. Default `false`.
    pub poll_only: bool,
    /// How often idle workers look for work, watchers re-read their task and cancellations
    /// are looked for, whatever the notifications say: the delay of a wake-up that a lost
    /// notification (or [`PostgresConfig::poll_only`]) left to polling, and of a scheduled
    /// task falling due (default 1 s).
    pub poll_interval: Duration,
    /// Where the store reads the time (leases, schedules, expiry).
    pub clock: Arc<dyn Clock>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            schema: "errand".into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            poll_only: false,
            poll_interval: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
        }
    }
}
