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
    AttemptEnd, AttemptEnding, CompleteResult, Completion, ErrorInfo, Outcome, Reaped,
    StatusUpdate, TaskId, TaskState, lease_expired_error, push_attempt,
};
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_core::types::Json;
use sqlx_postgres::{PgConnection, PgRow};
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
    attempts: Vec<Option<String>>,
}

impl Finals {
    /// `id` ends in `state`; `attempts` is its new attempt log (JSON), `None` to keep it.
    fn push(
        &mut self,
        id: TaskId,
        state: TaskState,
        error: &ErrorChange,
        result: Option<String>,
        report: &StatusUpdate,
        attempts: Option<String>,
    ) -> Result<()> {
        let (progress, steps) = report_columns(std::iter::once(report))?;
        self.ids.push(*id.as_uuid());
        self.states.push(state.as_str());
        self.errors.push(error.column()?);
        self.results.push(result);
        self.progress.extend(progress);
        self.steps.extend(steps);
        self.histories.push(None);
        self.attempts.push(attempts);
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
            attempts: vec![None],
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
            .bind(self.attempts)
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
    attempts: Vec<Option<String>>,
}

impl Requeues {
    /// `id` waits again: until `due` if given (retrying), else in its original place
    /// (pending), its attempt counter changed by `attempt_delta`; `attempts` is its new attempt
    /// log (JSON), `None` to keep it.
    fn push(
        &mut self,
        id: TaskId,
        due: Option<DateTime<Utc>>,
        attempt_delta: i32,
        error: &ErrorChange,
        report: &StatusUpdate,
        attempts: Option<String>,
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
        self.attempts.push(attempts);
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
            .bind(self.attempts)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// What ending a batch of attempts did, to be committed.
pub(crate) struct Completed {
    /// One per completion, in order.
    pub(crate) results: Vec<CompleteResult>,
    pub(crate) effects: Effects,
    /// Rows the batch left dead (for the self-vacuum).
    pub(crate) dead: usize,
}

/// A locked task whose attempt ends: what deciding and logging its end needs.
struct Ending {
    cancel_requested: bool,
    attempt: i32,
    started_at: Option<DateTime<Utc>>,
    attempts: Vec<AttemptEnd>,
}

impl Ending {
    /// From a row of `sql/lock_leases.sql` or `sql/reap_lapsed.sql`.
    fn of(row: &PgRow) -> Result<(TaskId, Self)> {
        let attempts: Json<Vec<AttemptEnd>> = row.try_get("attempts")?;
        let ending = Ending {
            cancel_requested: row.try_get("cancel_requested")?,
            attempt: row.try_get("attempt")?,
            started_at: row.try_get("started_at")?,
            attempts: attempts.0,
        };
        Ok((TaskId::from_uuid(row.try_get("id")?), ending))
    }

    /// The attempt log with this attempt's end appended at `now`, as JSON.
    fn logged(
        &self,
        outcome: AttemptEnding,
        error: Option<&ErrorInfo>,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        let mut log = self.attempts.clone();
        let end = AttemptEnd {
            attempt: u32::try_from(self.attempt).unwrap_or(0),
            started_at: self.started_at,
            ended_at: now,
            outcome,
            error: error.cloned(),
        };
        push_attempt(&mut log, end);
        json(&log).map(Some)
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
        let mut tx = self.pool().begin().await?;
        let done = self.complete_in(&mut tx, completions, self.now()).await?;
        self.commit(tx, done.effects).await?;
        self.left_dead(done.dead);
        Ok(done.results)
    }

    /// Ends attempts inside the transaction open on `conn`, at `now`.
    pub(crate) async fn complete_in(
        &self,
        conn: &mut PgConnection,
        completions: Vec<Completion>,
        now: DateTime<Utc>,
    ) -> Result<Completed> {
        let (ids, tokens) = lease_columns(completions.iter().map(|c| c.lease));
        let rows = query(&self.sql().lock_leases)
            .bind(ids)
            .bind(tokens)
            .fetch_all(&mut *conn)
            .await?;
        let mut held = rows
            .iter()
            .map(Ending::of)
            .collect::<Result<HashMap<_, _>>>()?;
        let (mut finals, mut requeues) = (Finals::default(), Requeues::default());
        let mut results = Vec::with_capacity(completions.len());
        let mut effects = Effects::default();
        for c in completions {
            // A lease ends once: a second completion of it in the batch is stale.
            let Some(ending) = held.remove(&c.lease.id) else {
                results.push(CompleteResult::Stale);
                continue;
            };
            results.push(CompleteResult::Applied);
            effects.changed.push(c.lease.id);
            let (id, report) = (c.lease.id, &c.report);
            let outcome = match c.outcome {
                Outcome::Released if ending.cancel_requested => Outcome::Cancelled,
                other => other,
            };
            match outcome {
                Outcome::Success(result) => {
                    let result = Some(result.get().to_string());
                    let clear = &ErrorChange::Clear;
                    finals.push(id, TaskState::Success, clear, result, report, None)?;
                }
                Outcome::Failed(e) => {
                    let log = ending.logged(AttemptEnding::Failed, Some(&e), now)?;
                    let error = &ErrorChange::Set(e);
                    finals.push(id, TaskState::Failed, error, None, report, log)?;
                }
                Outcome::Retry { error, .. } if ending.cancel_requested => {
                    let log = ending.logged(AttemptEnding::Cancelled, None, now)?;
                    let error = &ErrorChange::Set(error);
                    finals.push(id, TaskState::Cancelled, error, None, report, log)?;
                }
                Outcome::Cancelled => {
                    let log = ending.logged(AttemptEnding::Cancelled, None, now)?;
                    let keep = &ErrorChange::Keep;
                    finals.push(id, TaskState::Cancelled, keep, None, report, log)?;
                }
                Outcome::Retry { error, delay } => {
                    effects.work = true;
                    let log = ending.logged(AttemptEnding::Retrying, Some(&error), now)?;
                    let due = Some(after(now, delay));
                    requeues.push(id, due, 0, &ErrorChange::Set(error), report, log)?;
                }
                Outcome::Released => {
                    effects.work = true;
                    requeues.push(id, None, -1, &ErrorChange::Keep, report, None)?;
                }
            }
        }
        let dead = finals.ids.len() + requeues.ids.len();
        finals.write(conn, &self.sql().finish, now).await?;
        requeues.write(conn, &self.sql().requeue, now).await?;
        Ok(Completed {
            results,
            effects,
            dead,
        })
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
            let (id, ending) = Ending::of(row)?;
            let max_attempts: i32 = row.try_get("max_attempts")?;
            effects.changed.push(id);
            if ending.cancel_requested {
                reaped.cancelled += 1;
                let log = ending.logged(AttemptEnding::Cancelled, None, now)?;
                let keep = &ErrorChange::Keep;
                finals.push(id, TaskState::Cancelled, keep, None, &unchanged, log)?;
            } else {
                let retryable = ending.attempt < max_attempts;
                let error = lease_expired_error(retryable);
                let log = ending.logged(AttemptEnding::LeaseLapsed, Some(&error), now)?;
                let error = ErrorChange::Set(error);
                if retryable {
                    reaped.requeued += 1;
                    effects.work = true;
                    requeues.push(id, None, 0, &error, &unchanged, log)?;
                } else {
                    reaped.failed += 1;
                    finals.push(id, TaskState::Failed, &error, None, &unchanged, log)?;
                }
            }
        }
        finals.write(&mut tx, &self.sql().finish, now).await?;
        requeues.write(&mut tx, &self.sql().requeue, now).await?;
        self.commit(tx, effects).await?;
        self.fold_counts().await?;
        Ok(reaped)
    }
}
