//! Ending attempts: completions and the reaper. Both lock the rows they end (completions by
//! lease, in id order; the reaper lapsed leases, skipping rows another reaper holds), decide
//! each task's next state here, and write them with two statements per batch: finished tasks
//! move to `finished` (`sql/finish.sql`), the others wait again (`sql/requeue.sql`).

use crate::enqueue::after;
use crate::error::Result;
use crate::leases::{lease_columns, report_columns};
use crate::record::json;
use crate::signals::Effects;
use crate::store::PostgresStore;
use chrono::{DateTime, Utc};
use errand_core::{
    CompleteResult, Completion, ErrorInfo, Outcome, Reaped, StatusUpdate, TaskId, TaskState,
    lease_expired_error,
};
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_postgres::PgConnection;
use std::collections::HashMap;

/// What becomes of a task's recorded error.
enum ErrorChange {
    Keep,
    Clear,
    Set(ErrorInfo),
}

impl ErrorChange {
    /// The column value: NULL keeps, JSON `null` clears.
    fn column(&self) -> Result<Option<String>> {
        Ok(match self {
            ErrorChange::Keep => None,
            ErrorChange::Clear => Some("null".into()),
            ErrorChange::Set(e) => Some(json(e)?),
        })
    }
}

/// Tasks to move to `finished`, as the columns of `sql/finish.sql`.
#[derive(Default)]
pub(crate) struct Finals {
    ids: Vec<uuid::Uuid>,
    states: Vec<&'static str>,
    errors: Vec<Option<String>>,
    results: Vec<Option<String>>,
    progress: Vec<Option<String>>,
    steps: Vec<Option<String>>,
    histories: Vec<Option<String>>,
}

impl Finals {
    fn push(
        &mut self,
        id: TaskId,
        state: TaskState,
        error: &ErrorChange,
        result: Option<String>,
        report: &StatusUpdate,
    ) -> Result<()> {
        let (progress, steps) = report_columns(std::iter::once(report))?;
        self.ids.push(*id.as_uuid());
        self.states.push(state.as_str());
        self.errors.push(error.column()?);
        self.results.push(result);
        self.progress.extend(progress);
        self.steps.extend(steps);
        self.histories.push(None);
        Ok(())
    }

    /// A waiting task cancelled by request, with its new history.
    pub(crate) fn cancelled(id: TaskId, history: String) -> Self {
        Self {
            ids: vec![*id.as_uuid()],
            states: vec![TaskState::Cancelled.as_str()],
            errors: vec![None],
            results: vec![None],
            progress: vec![None],
            steps: vec![None],
            histories: vec![Some(history)],
        }
    }

    pub(crate) async fn write(
        self,
        conn: &mut PgConnection,
        sql: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        query(sql)
            .bind(self.ids)
            .bind(self.states)
            .bind(self.errors)
            .bind(self.results)
            .bind(self.progress)
            .bind(self.steps)
            .bind(self.histories)
            .bind(now)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// Tasks to put back to wait, as the columns of `sql/requeue.sql`.
#[derive(Default)]
struct Requeues {
    ids: Vec<uuid::Uuid>,
    states: Vec<&'static str>,
    due: Vec<Option<DateTime<Utc>>>,
    next: Vec<Option<DateTime<Utc>>>,
    attempt_delta: Vec<i32>,
    errors: Vec<Option<String>>,
    progress: Vec<Option<String>>,
    steps: Vec<Option<String>>,
}

impl Requeues {
    /// `id` waits again: until `due` if given (retrying), else in its original place
    /// (pending), its attempt counter changed by `attempt_delta`.
    fn push(
        &mut self,
        id: TaskId,
        due: Option<DateTime<Utc>>,
        attempt_delta: i32,
        error: &ErrorChange,
        report: &StatusUpdate,
    ) -> Result<()> {
        let (progress, steps) = report_columns(std::iter::once(report))?;
        let state = if due.is_some() {
            TaskState::Retrying
        } else {
            TaskState::Pending
        };
        self.ids.push(*id.as_uuid());
        self.states.push(state.as_str());
        self.due.push(due);
        self.next.push(due);
        self.attempt_delta.push(attempt_delta);
        self.errors.push(error.column()?);
        self.progress.extend(progress);
        self.steps.extend(steps);
        Ok(())
    }

    async fn write(self, conn: &mut PgConnection, sql: &str, now: DateTime<Utc>) -> Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        query(sql)
            .bind(self.ids)
            .bind(self.states)
            .bind(self.due)
            .bind(self.next)
            .bind(self.attempt_delta)
            .bind(self.errors)
            .bind(self.progress)
            .bind(self.steps)
            .bind(now)
            .execute(conn)
            .await?;
        Ok(())
    }
}

impl PostgresStore {
    pub(crate) async fn complete_attempts(
        &self,
        completions: Vec<Completion>,
    ) -> Result<Vec<CompleteResult>> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let (ids, tokens) = lease_columns(completions.iter().map(|c| c.lease));
        let mut tx = self.pool().begin().await?;
        let rows = query(&self.sql().lock_leases)
            .bind(ids)
            .bind(tokens)
            .fetch_all(&mut *tx)
            .await?;
        let mut held: HashMap<TaskId, bool> = HashMap::with_capacity(rows.len());
        for row in &rows {
            held.insert(
                TaskId::from_uuid(row.try_get("id")?),
                row.try_get("cancel_requested")?,
            );
        }
        let (mut finals, mut requeues) = (Finals::default(), Requeues::default());
        let mut results = Vec::with_capacity(completions.len());
        let mut effects = Effects::default();
        for c in completions {
            // A lease ends once: a second completion of it in the batch is stale.
            let Some(cancel_requested) = held.remove(&c.lease.id) else {
                results.push(CompleteResult::Stale);
                continue;
            };
            results.push(CompleteResult::Applied);
            effects.changed.push(c.lease.id);
            let (id, report) = (c.lease.id, &c.report);
            let outcome = match c.outcome {
                Outcome::Released if cancel_requested => Outcome::Cancelled,
                other => other,
            };
            match outcome {
                Outcome::Success(result) => finals.push(
                    id,
                    TaskState::Success,
                    &ErrorChange::Clear,
                    Some(result.get().to_string()),
                    report,
                )?,
                Outcome::Failed(e) => {
                    finals.push(id, TaskState::Failed, &ErrorChange::Set(e), None, report)?;
                }
                Outcome::Retry { error, .. } if cancel_requested => {
                    let error = ErrorChange::Set(error);
                    finals.push(id, TaskState::Cancelled, &error, None, report)?;
                }
                Outcome::Cancelled => {
                    finals.push(id, TaskState::Cancelled, &ErrorChange::Keep, None, report)?;
                }
                Outcome::Retry { error, delay } => {
                    effects.work = true;
                    let due = Some(after(now, delay));
                    requeues.push(id, due, 0, &ErrorChange::Set(error), report)?;
                }
                Outcome::Released => {
                    effects.work = true;
                    requeues.push(id, None, -1, &ErrorChange::Keep, report)?;
                }
            }
        }
        let dead = finals.ids.len() + requeues.ids.len();
        finals.write(&mut tx, &self.sql().finish, now).await?;
        requeues.write(&mut tx, &self.sql().requeue, now).await?;
        self.commit(tx, effects).await?;
        self.left_dead(dead);
        Ok(results)
    }

    pub(crate) async fn reap_lapsed(&self) -> Result<Reaped> {
        let now = self.now();
        let mut tx = self.pool().begin().await?;
        let rows = query(&self.sql().reap_lapsed)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        let (mut finals, mut requeues) = (Finals::default(), Requeues::default());
        let mut reaped = Reaped::default();
        let mut effects = Effects::default();
        let unchanged = StatusUpdate::default();
        for row in &rows {
            let id = TaskId::from_uuid(row.try_get("id")?);
            let attempt: i32 = row.try_get("attempt")?;
            let max_attempts: i32 = row.try_get("max_attempts")?;
            effects.changed.push(id);
            if row.try_get("cancel_requested")? {
                reaped.cancelled += 1;
                finals.push(
                    id,
                    TaskState::Cancelled,
                    &ErrorChange::Keep,
                    None,
                    &unchanged,
                )?;
            } else if attempt >= max_attempts {
                reaped.failed += 1;
                let error = ErrorChange::Set(lease_expired_error(false));
                finals.push(id, TaskState::Failed, &error, None, &unchanged)?;
            } else {
                reaped.requeued += 1;
                effects.work = true;
                let error = ErrorChange::Set(lease_expired_error(true));
                requeues.push(id, None, 0, &error, &unchanged)?;
            }
        }
        finals.write(&mut tx, &self.sql().finish, now).await?;
        requeues.write(&mut tx, &self.sql().requeue, now).await?;
        self.commit(tx, effects).await?;
        self.fold_counts().await?;
        Ok(reaped)
    }
}
