//! Keeping the hot table small without relying on the server's autovacuum (which may be off,
//! or too slow for a table whose every row is written three times within minutes): each
//! process counts the rows its claims and finishes turned into dead ones, and after every
//! [`VACUUM_EVERY`] it folds the count deltas and vacuums `tasks` and `count_deltas` in the
//! background, one vacuum at a time.

use crate::store::PostgresStore;
use sqlx_core::executor::Executor;
use sqlx_core::raw_sql::raw_sql;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Dead rows between two vacuums started by one process.
pub(crate) const VACUUM_EVERY: u64 = 5_000;

/// What a process's store counts towards its next vacuum.
#[derive(Debug, Default)]
pub(crate) struct Housekeeping {
    dead: AtomicU64,
    vacuuming: AtomicBool,
}

impl PostgresStore {
    /// Counts `rows` that a write left dead; starts a vacuum when enough accumulated.
    pub(crate) fn left_dead(&self, rows: usize) {
        let rows = u64::try_from(rows).unwrap_or(u64::MAX);
        let house = &self.housekeeping;
        if house
            .dead
            .fetch_add(rows, Ordering::Relaxed)
            .saturating_add(rows)
            < VACUUM_EVERY
            || house.vacuuming.swap(true, Ordering::AcqRel)
        {
            return;
        }
        house.dead.store(0, Ordering::Relaxed);
        let store = self.clone();
        tokio::spawn(async move {
            if let Err(e) = store.fold_counts().await {
                tracing::debug!(error = %e, "folding task counts failed");
            }
            let vacuum = store.pool().execute(raw_sql(&store.sql().vacuum)).await;
            if let Err(e) = vacuum {
                tracing::debug!(error = %e, "vacuuming the task table failed");
            }
            store.housekeeping.vacuuming.store(false, Ordering::Release);
        });
    }
}
