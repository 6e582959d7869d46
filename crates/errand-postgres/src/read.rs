//! Reads: records (live and finished tables together), listings, counts, and the deployment
//! facts; and the housekeeping that keeps counts cheap (`fold_counts`) and finished records
//! bounded (`purge`).

use crate::error::Result;
use crate::record::{record, state};
use crate::store::PostgresStore;
use errand_core::{
    ListQuery, OwnerFilter, Page, QueueCounts, QueueDepth, StateCounts, TaskId, TaskRecord,
};
use sqlx_core::query::query;
use sqlx_core::row::Row;
use std::collections::BTreeMap;

impl PostgresStore {
    pub(crate) async fn get_record(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        let row = query(&self.sql().get)
            .bind(id.as_uuid())
            .bind(self.now())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(record).transpose()
    }

    pub(crate) async fn list_records(&self, q: &ListQuery) -> Result<Page> {
        let limit = q.capped_limit();
        if q.empty_range() {
            return Ok(Page::of_fetched(Vec::new(), limit));
        }
        let (lower, upper) = q.id_range();
        let (any, user, tenant) = owner_columns(&q.owner);
        let rows = query(&self.sql().list)
            .bind(any)
            .bind(user)
            .bind(tenant)
            .bind(q.status.map(|s| s.as_str()))
            .bind(q.name.as_deref())
            .bind(q.queue.as_deref())
            .bind(lower.map(|id| *id.as_uuid()))
            .bind(upper.map(|id| *id.as_uuid()))
            .bind(q.search.as_deref())
            .bind(q.search_id().map(|id| *id.as_uuid()))
            .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
            .bind(self.now())
            .fetch_all(self.pool())
            .await?;
        let items = rows.iter().map(record).collect::<Result<Vec<_>>>()?;
        Ok(Page::of_fetched(items, limit))
    }

    pub(crate) async fn state_counts(&self, owner: &OwnerFilter) -> Result<StateCounts> {
        let (any, user, tenant) = owner_columns(owner);
        let rows = query(&self.sql().counts)
            .bind(any)
            .bind(user)
            .bind(tenant)
            .fetch_all(self.pool())
            .await?;
        let mut counts = StateCounts::default();
        for row in &rows {
            counts.add(state(row.try_get(0)?)?, row.try_get(1)?);
        }
        Ok(counts)
    }

    pub(crate) async fn queue_counts(&self) -> Result<Vec<QueueCounts>> {
        let rows = query(&self.sql().queues).fetch_all(self.pool()).await?;
        let mut per_queue: BTreeMap<String, StateCounts> = BTreeMap::new();
        for row in &rows {
            let counts = per_queue.entry(row.try_get(0)?).or_default();
            counts.add(state(row.try_get(1)?)?, row.try_get(2)?);
        }
        Ok(per_queue
            .iter()
            .map(|(queue, counts)| QueueCounts::from_counts(queue, counts))
            .collect())
    }

    pub(crate) async fn queue_depth(&self) -> Result<QueueDepth> {
        let counts = self.state_counts(&OwnerFilter::Any).await?;
        Ok(QueueDepth {
            waiting: counts.waiting(),
            running: counts.running,
        })
    }

    /// Folds the count deltas into the counts, unless another process is folding them.
    pub(crate) async fn fold_counts(&self) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let row = query(&self.sql().fold_lock)
            .bind(format!("errand counts {}", self.channel))
            .fetch_one(&mut *tx)
            .await?;
        if row.try_get::<bool, _>(0)? {
            query(&self.sql().fold_counts).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn purge(&self) -> Result<u64> {
        let done = query(&self.sql().purge_expired)
            .bind(self.now())
            .execute(self.pool())
            .await?;
        self.fold_counts().await?;
        self.expire_watchers().await?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn meta(&self, name: &str) -> Result<Option<String>> {
        let row = query(&self.sql().meta_get)
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    pub(crate) async fn swap(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool> {
        let done = match expected {
            None => {
                query(&self.sql().meta_insert)
                    .bind(name)
                    .bind(value)
                    .execute(self.pool())
                    .await?
            }
            Some(expected) => {
                query(&self.sql().meta_swap)
                    .bind(name)
                    .bind(expected)
                    .bind(value)
                    .execute(self.pool())
                    .await?
            }
        };
        Ok(done.rows_affected() == 1)
    }
}

/// The owner parameters of counts and listings: everyone's, or this user and tenant.
fn owner_columns(owner: &OwnerFilter) -> (bool, Option<&str>, Option<&str>) {
    match owner {
        OwnerFilter::Any => (true, None, None),
        OwnerFilter::Owner(o) => (false, o.user_id.as_deref(), o.tenant.as_deref()),
    }
}
