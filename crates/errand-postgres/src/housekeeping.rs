//! Keeping the hot table small without relying on the server's autovacuum (which may be off,
//! or too slow for a table whose every row is written three times within minutes): each
//! process counts the rows its claims and finishes turned into dead ones, and after every
//! threshold it folds the count deltas and vacuums `tasks` and `count_deltas` in the
//! background, one vacuum at a time. A vacuum walks the whole table and its indexes, so the
//! threshold grows with the table ([`next_threshold`]): a vacuum every [`VACUUM_EVERY`] dead
//! rows of a million-task backlog would cost more than the work it cleans up after.

use crate::store::PostgresStore;
use sqlx_core::executor::Executor;
use sqlx_core::raw_sql::raw_sql;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The fewest dead rows between two vacuums started by one process.
pub(crate) const VACUUM_EVERY: u64 = 5_000;

/// The share of the table's live rows that may be dead before the next vacuum, on a table
/// large enough that [`VACUUM_EVERY`] is the smaller.
const VACUUM_SHARE: f64 = 0.1;

/// Dead rows to wait for before the next vacuum of a table of `live` rows: [`VACUUM_EVERY`],
/// or a tenth of the table, whichever is more, so that the cost of vacuums per task stays the
/// same at any size.
pub(crate) fn next_threshold(live: f64) -> u64 {
    let share = (live.max(0.0) * VACUUM_SHARE).min(u64::MAX as f64) as u64;
    share.max(VACUUM_EVERY)
}

/// What a process's store counts towards its next vacuum.
#[derive(Debug)]
pub(crate) struct Housekeeping {
    dead: AtomicU64,
    threshold: AtomicU64,
    vacuuming: AtomicBool,
}

impl Default for Housekeeping {
    fn default() -> Self {
        Self {
            dead: AtomicU64::new(0),
            threshold: AtomicU64::new(VACUUM_EVERY),
            vacuuming: AtomicBool::new(false),
        }
    }
}

impl PostgresStore {
    /// The estimated rows of `tasks` (see `sql/live_rows.sql`).
    async fn live_rows(&self) -> crate::error::Result<f64> {
        let live: Option<f64> = sqlx_core::query_scalar::query_scalar(&self.sql().live_rows)
            .fetch_optional(self.pool())
            .await?;
        Ok(live.unwrap_or(0.0))
    }

    /// Counts `rows` that a write left dead; starts a vacuum when enough accumulated.
    pub(crate) fn left_dead(&self, rows: usize) {
        let rows = u64::try_from(rows).unwrap_or(u64::MAX);
        let house = &self.housekeeping;
        if house
            .dead
            .fetch_add(rows, Ordering::Relaxed)
            .saturating_add(rows)
            < house.threshold.load(Ordering::Relaxed)
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
            match store.live_rows().await {
                Ok(live) => store
                    .housekeeping
                    .threshold
                    .store(next_threshold(live), Ordering::Relaxed),
                Err(e) => tracing::debug!(error = %e, "reading the task table's size failed"),
            }
            store.housekeeping.vacuuming.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{VACUUM_EVERY, next_threshold};

    #[test]
    fn the_threshold_is_a_tenth_of_the_table_but_never_under_the_minimum() {
        assert_eq!(next_threshold(0.0), VACUUM_EVERY);
        assert_eq!(next_threshold(-1.0), VACUUM_EVERY);
        assert_eq!(next_threshold(20_000.0), VACUUM_EVERY);
        assert_eq!(next_threshold(1_000_000.0), 100_000);
        assert_eq!(next_threshold(f64::INFINITY), u64::MAX);
    }
}
