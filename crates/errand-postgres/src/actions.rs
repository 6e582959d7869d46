//! Cancel and retry by request. Each locks the task's row, decides, and writes the change and
//! its history entry (`errand_core::history`) in one transaction, so a refused action records
//! nothing and of two concurrent actions each one that changed the task has its entry.

use crate::error::{PostgresError, Result};
use crate::finish::Finals;
use crate::record::{json, record};
use crate::signals::Effects;
use crate::store::PostgresStore;
use errand_core::{
    Action, ActionOutcome, CancelOutcome, Owner, RetryOutcome, TaskId, TaskRecord, TaskState,
    push_action,
};
use sqlx_core::query::query;
use sqlx_postgres::{PgConnection, Postgres};

type Tx = sqlx_core::transaction::Transaction<'static, Postgres>;

/// The task's record, locked: live (`true`) or finished and unexpired (`false`).
async fn lock(
    store: &PostgresStore,
    conn: &mut PgConnection,
    id: TaskId,
) -> Result<Option<(TaskRecord, bool)>> {
    let row = query(&store.sql().lock_live)
        .bind(id.as_uuid())
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = row {
        return Ok(Some((record(&row)?, true)));
    }
    let row = query(&store.sql().lock_finished)
        .bind(id.as_uuid())
        .bind(store.now())
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| Ok((record(&r)?, false))).transpose()
}

/// `record`'s history with `outcome` by `by` appended, as JSON.
fn history_with(
    record: &TaskRecord,
    outcome: ActionOutcome,
    by: &Owner,
    store: &PostgresStore,
) -> Result<String> {
    let mut history = record.history.clone();
    push_action(&mut history, Action::new(outcome, by.clone(), store.now()));
    json(&history)
}

impl PostgresStore {
    /// The record of `id` read inside `tx`.
    async fn reread(&self, tx: &mut Tx, id: TaskId) -> Result<TaskRecord> {
        let row = query(&self.sql().records)
            .bind(vec![*id.as_uuid()])
            .bind(self.now())
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| PostgresError::corrupt(format_args!("task {id} vanished")))?;
        record(&row)
    }

    pub(crate) async fn cancel_task(&self, id: TaskId, by: &Owner) -> Result<CancelOutcome> {
        let mut tx = self.pool().begin().await?;
        let Some((current, live)) = lock(self, &mut tx, id).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        if !live {
            return Ok(CancelOutcome::Conflict(current.status));
        }
        let now = self.now();
        let mut effects = Effects {
            changed: vec![id],
            ..Effects::default()
        };
        let outcome = if current.status == TaskState::Running {
            let history = history_with(&current, ActionOutcome::CancelRequested, by, self)?;
            let row = query(&self.sql().cancel_running)
                .bind(id.as_uuid())
                .bind(history)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            effects.cancels.push(id);
            CancelOutcome::Requested(Box::new(record(&row)?))
        } else {
            let history = history_with(&current, ActionOutcome::Cancelled, by, self)?;
            Finals::cancelled(id, history)
                .write(&mut tx, &self.sql().finish, now)
                .await?;
            CancelOutcome::Cancelled(Box::new(self.reread(&mut tx, id).await?))
        };
        self.commit(tx, effects).await?;
        Ok(outcome)
    }

    pub(crate) async fn retry_task(&self, id: TaskId, by: &Owner) -> Result<RetryOutcome> {
        match self.retry_once(id, by).await {
            // A live task took the key between the check and the insert (sql/retry.sql):
            // again, and the check sees it.
            Err(e) if e.is_unique_violation() => self.retry_once(id, by).await,
            done => done,
        }
    }

    async fn retry_once(&self, id: TaskId, by: &Owner) -> Result<RetryOutcome> {
        let mut tx = self.pool().begin().await?;
        let Some((current, live)) = lock(self, &mut tx, id).await? else {
            return Ok(RetryOutcome::NotFound);
        };
        if live || !matches!(current.status, TaskState::Failed | TaskState::Cancelled) {
            return Ok(RetryOutcome::Conflict(current.status));
        }
        let history = history_with(&current, ActionOutcome::Requeued, by, self)?;
        let row = query(&self.sql().retry)
            .bind(id.as_uuid())
            .bind(self.now())
            .bind(history)
            .fetch_one(&mut *tx)
            .await?;
        let requeued = record(&row)?;
        let effects = Effects {
            work: true,
            changed: vec![id],
            ..Effects::default()
        };
        self.commit(tx, effects).await?;
        Ok(RetryOutcome::Requeued(Box::new(requeued)))
    }
}
