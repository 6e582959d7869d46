//! Enqueueing: one `INSERT` for the whole batch (`sql/enqueue.sql`), on the store's own
//! transaction or on the caller's ([`crate::SubmitInTx::in_tx`]). Idempotency keys are a unique
//! index over the live tasks' scoped keys, so two transactions enqueueing the same key at once
//! store one task: the second waits for the first to commit, then finds its task.

use crate::error::{PostgresError, Result};
use crate::record::state;
use crate::sql::Sql;
use chrono::{DateTime, TimeDelta, Utc};
use errand_core::{Enqueued, NewTask, TaskId, TaskState};
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_postgres::PgConnection;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How often a key is looked for again when the live task holding it finished between the
/// insert and the look-up.
const KEY_RACES: usize = 3;

/// `d` as whole milliseconds for a `bigint` column.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `now + d`, saturating (durations are clamped to `MAX_DURATION` before they get here).
pub(crate) fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Stores `tasks` on `conn` (inside a transaction the caller commits); one result per task,
/// in order. Sends no notification: the caller does, in the same transaction.
pub(crate) async fn enqueue(
    conn: &mut PgConnection,
    sql: &Sql,
    now: DateTime<Utc>,
    tasks: &[NewTask],
) -> Result<Vec<Enqueued>> {
    let mut results: Vec<Option<Enqueued>> = vec![None; tasks.len()];
    let mut todo: Vec<usize> = (0..tasks.len()).collect();
    for _ in 0..KEY_RACES {
        if todo.is_empty() {
            break;
        }
        let batch: Vec<&NewTask> = todo.iter().map(|&i| &tasks[i]).collect();
        let inserted = insert(conn, sql, now, &batch).await?;
        let keys: Vec<String> = batch
            .iter()
            .filter(|t| !inserted.contains(&t.id))
            .filter_map(|t| t.scoped_key())
            .collect();
        let holders = holders(conn, sql, keys).await?;
        let mut again = Vec::new();
        for (&i, task) in todo.iter().zip(&batch) {
            if inserted.contains(&task.id) {
                let status = if task.delay.is_some_and(|d| !d.is_zero()) {
                    TaskState::Scheduled
                } else {
                    TaskState::Pending
                };
                results[i] = Some(Enqueued {
                    id: task.id,
                    status,
                    deduplicated: false,
                });
            } else if let Some(&(id, status)) = task.scoped_key().and_then(|k| holders.get(&k)) {
                results[i] = Some(Enqueued {
                    id,
                    status,
                    deduplicated: true,
                });
            } else {
                again.push(i);
            }
        }
        todo = again;
    }
    results
        .into_iter()
        .map(|r| {
            r.ok_or_else(|| {
                PostgresError::Invalid("a task was neither stored nor deduplicated".into())
            })
        })
        .collect()
}

async fn insert(
    conn: &mut PgConnection,
    sql: &Sql,
    now: DateTime<Utc>,
    tasks: &[&NewTask],
) -> Result<HashSet<TaskId>> {
    let col = |f: fn(&NewTask) -> Option<String>| tasks.iter().map(|t| f(t)).collect::<Vec<_>>();
    let ids: Vec<uuid::Uuid> = tasks.iter().map(|t| *t.id.as_uuid()).collect();
    let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
    let queues: Vec<String> = tasks.iter().map(|t| t.queue.clone()).collect();
    let args: Vec<String> = tasks.iter().map(|t| t.args.get().to_string()).collect();
    let run_at: Vec<Option<DateTime<Utc>>> = tasks
        .iter()
        .map(|t| t.delay.filter(|d| !d.is_zero()).map(|d| after(now, d)))
        .collect();
    let attempts: Vec<i32> = tasks
        .iter()
        .map(|t| i32::try_from(t.max_attempts).unwrap_or(i32::MAX))
        .collect();
    let timeouts: Vec<i64> = tasks.iter().map(|t| millis(t.timeout)).collect();
    let ttls: Vec<i64> = tasks.iter().map(|t| millis(t.ttl)).collect();
    let rows = query(&sql.enqueue)
        .bind(ids)
        .bind(names)
        .bind(queues)
        .bind(col(|t| t.owner.user_id.clone()))
        .bind(col(|t| t.owner.tenant.clone()))
        .bind(col(|t| t.correlation_id.clone()))
        .bind(col(|t| t.request_id.clone()))
        .bind(col(|t| t.key.clone()))
        .bind(col(NewTask::scoped_key))
        .bind(args)
        .bind(col(|t| t.context.as_ref().map(|c| c.as_str().to_string())))
        .bind(run_at)
        .bind(attempts)
        .bind(timeouts)
        .bind(ttls)
        .bind(now)
        .bind(col(|t| t.trace_id.clone()))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| Ok(TaskId::from_uuid(r.try_get("id")?)))
        .collect()
}

/// The live tasks holding `keys`: scoped key → (id, state).
async fn holders(
    conn: &mut PgConnection,
    sql: &Sql,
    keys: Vec<String>,
) -> Result<HashMap<String, (TaskId, TaskState)>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = query(&sql.enqueue_find_key)
        .bind(keys)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            let id = TaskId::from_uuid(r.try_get("id")?);
            Ok((r.try_get("scoped_key")?, (id, state(r.try_get("status")?)?)))
        })
        .collect()
}
