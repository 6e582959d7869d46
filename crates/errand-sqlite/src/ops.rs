//! Every store operation as SQL on one connection: the writes run on the writer thread inside
//! its transaction (see [`crate::writer`]), the reads on a read-only connection. Each mirrors
//! the reference `MemoryStore` operation of the same name.

use crate::codec::{self, after, id_at, id_bytes, json, state_at};
use crate::ending::{Ending, Finish, owner_queue};
use crate::error::OpError;
use crate::history;
use crate::signals::DueChange;
use crate::sql;
use crate::writer::WriteCx;
use errand_core::{
    Action, ActionOutcome, AttemptEnding, CancelOutcome, Claimed, Enqueued, Lease, LeaseState,
    LeaseToken, NewTask, Owner, QueueDepth, Reaped, RetryOutcome, SealedContext, StatusUpdate,
    TaskId, TaskRecord, TaskState, lease_expired_error, scoped_key,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::value::RawValue;
use std::time::Duration;

/// Stores new tasks; a live task with the same owner-scoped key is returned instead.
pub(crate) fn enqueue(
    cx: &mut WriteCx<'_>,
    tasks: Vec<NewTask>,
    now: i64,
) -> Result<Vec<Enqueued>, OpError> {
    let mut find = cx.conn.prepare_cached(sql::ENQUEUE_FIND_KEY)?;
    let mut insert = cx.conn.prepare_cached(sql::ENQUEUE)?;
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        let live_key = t.scoped_key();
        if let Some(k) = &live_key
            && let Some(existing) = find.query_row([k], |r| Ok(live(r))).optional()?
        {
            out.push(existing?);
            continue;
        }
        let run_at = t.delay.filter(|d| !d.is_zero()).map(|d| after(now, d));
        let status = match run_at {
            Some(_) => TaskState::Scheduled,
            None => TaskState::Pending,
        };
        insert.execute(params![
            &id_bytes(t.id)[..],
            t.name,
            t.queue,
            status.as_str(),
            t.owner.user_id,
            t.owner.tenant,
            t.correlation_id,
            t.request_id,
            t.key,
            live_key,
            now,
            run_at,
            t.max_attempts.max(1),
            i64::try_from(t.timeout.as_millis()).unwrap_or(i64::MAX),
            codec::span(t.ttl),
            t.args.get(),
            t.context.as_ref().map(SealedContext::as_str),
            t.trace_id,
        ])?;
        cx.tally.add(&t.owner, &t.queue, status, 1);
        // Even a delayed task wakes idle workers: they recompute how long to sleep.
        cx.effects.work = true;
        if let Some(due) = run_at {
            cx.effects.due.push(DueChange::Added {
                queue: t.queue,
                due,
            });
        }
        out.push(Enqueued {
            id: t.id,
            status,
            deduplicated: false,
        });
    }
    Ok(out)
}

/// The live task a key matched, from a row of `enqueue_find_key.sql`.
fn live(row: &rusqlite::Row<'_>) -> Result<Enqueued, OpError> {
    Ok(Enqueued {
        id: id_at(row, 0)?,
        status: state_at(row, 1)?,
        deduplicated: true,
    })
}

/// What a claim asks for, with its times resolved.
pub(crate) struct ClaimSpec {
    /// Distinct queues to take from.
    pub(crate) queues: Vec<String>,
    /// At most this many tasks.
    pub(crate) limit: usize,
    /// The lease each claimed task gets.
    pub(crate) lease: Duration,
    /// The claimant.
    pub(crate) worker_id: String,
}

/// Leases up to `limit` due tasks, oldest first across the queues. When fewer were due, the
/// queues' next due times are read for the work signal.
pub(crate) fn claim(
    cx: &mut WriteCx<'_>,
    spec: ClaimSpec,
    now: i64,
) -> Result<Vec<Claimed>, OpError> {
    let lease_until = after(now, spec.lease);
    let due = match spec.queues.as_slice() {
        [queue] => oldest_in(cx.conn, queue, now, spec.limit)?,
        queues => oldest_across(cx.conn, queues, now, spec.limit)?,
    };
    let mut take = cx.conn.prepare_cached(sql::CLAIM)?;
    let mut out = Vec::with_capacity(due.len());
    for (seq, (task, from)) in due {
        take.execute(params![
            seq,
            now,
            lease_until,
            spec.worker_id,
            &token(&task.lease)[..],
            task.attempt
        ])?;
        cx.changed(task.lease.id)?;
        cx.tally
            .moved(&task.owner, &task.queue, from, TaskState::Running);
        out.push(task);
    }
    if out.len() < spec.limit {
        let mut next = cx.conn.prepare_cached(sql::NEXT_DUE)?;
        for queue in spec.queues {
            let due = next.query_row([&queue], |r| r.get(0)).optional()?;
            cx.effects.due.push(DueChange::Known { queue, due });
        }
    }
    Ok(out)
}

/// A claim's limit as bound to SQL.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The oldest due tasks of `queue` with their storage keys, each as it will be once claimed:
/// their rows are read as the ready index is walked.
fn oldest_in(
    conn: &Connection,
    queue: &str,
    now: i64,
    limit: usize,
) -> Result<Vec<(i64, Candidate)>, OpError> {
    let mut stmt = conn.prepare_cached(sql::CLAIM_CANDIDATES)?;
    let mut rows = stmt.query(params![queue, now, sql_limit(limit)])?;
    let mut due = Vec::with_capacity(limit.min(1024));
    while let Some(r) = rows.next()? {
        due.push((r.get(0)?, candidate(r)?));
    }
    Ok(due)
}

/// The oldest due tasks across `queues`, like [`oldest_in`]. The winners are picked from each
/// queue's ready index alone, by `(due_at, id)`; only their rows are read.
fn oldest_across(
    conn: &Connection,
    queues: &[String],
    now: i64,
    limit: usize,
) -> Result<Vec<(i64, Candidate)>, OpError> {
    let mut keys: Vec<(i64, TaskId, i64)> = Vec::new();
    let mut order = conn.prepare_cached(sql::CLAIM_ORDER)?;
    for queue in queues {
        let mut rows = order.query(params![queue, now, sql_limit(limit)])?;
        while let Some(r) = rows.next()? {
            keys.push((r.get(0)?, id_at(r, 1)?, r.get(2)?));
        }
    }
    keys.sort_unstable_by_key(|&(at, id, _)| (at, id));
    keys.truncate(limit);
    let mut row = conn.prepare_cached(sql::CLAIM_ROW)?;
    keys.into_iter()
        .map(|(_, _, seq)| Ok((seq, row.query_row([seq], |r| Ok(candidate(r)))??)))
        .collect()
}

/// A task as it will be once claimed, and its state before.
type Candidate = (Claimed, TaskState);

/// The task a row of `claim_candidates.sql` or `claim_row.sql` becomes once claimed: a new
/// lease token, and the next attempt; with its state before the claim.
fn candidate(r: &rusqlite::Row<'_>) -> Result<Candidate, OpError> {
    let due_at: i64 = r.get(2)?;
    let attempt: u32 = r.get(3)?;
    let args: String = r.get(6)?;
    let claimed = Claimed {
        lease: Lease {
            id: id_at(r, 1)?,
            token: LeaseToken::random(),
        },
        name: r.get(4)?,
        queue: r.get(5)?,
        args: RawValue::from_string(args)
            .map_err(|e| OpError::Corrupt(format!("a task's arguments are not JSON: {e}")))?,
        context: r
            .get::<_, Option<String>>(7)?
            .map(SealedContext::from_stored),
        owner: Owner {
            user_id: r.get(8)?,
            tenant: r.get(9)?,
        },
        correlation_id: r.get(10)?,
        attempt: attempt + 1,
        max_attempts: r.get(11)?,
        timeout: Duration::from_millis(r.get(12)?),
        due_at: Some(codec::time(due_at)?),
    };
    Ok((claimed, state_at(r, 13)?))
}

/// A lease's token as stored (16 bytes).
pub(crate) fn token(lease: &Lease) -> [u8; 16] {
    lease.token.to_bytes()
}

fn lease_state(cancel_requested: Option<bool>) -> LeaseState {
    match cancel_requested {
        None => LeaseState::Lost,
        Some(true) => LeaseState::CancelRequested,
        Some(false) => LeaseState::Held,
    }
}

/// Renews the leases still held.
pub(crate) fn heartbeat(
    cx: &mut WriteCx<'_>,
    leases: Vec<Lease>,
    extend: Duration,
    now: i64,
) -> Result<Vec<LeaseState>, OpError> {
    let until = after(now, extend);
    let mut renew = cx.conn.prepare_cached(sql::HEARTBEAT)?;
    leases
        .iter()
        .map(|l| {
            let cancel = renew
                .query_row(params![&id_bytes(l.id)[..], &token(l)[..], until], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(lease_state(cancel))
        })
        .collect()
}

/// Progress and steps as stored (`None`: unchanged).
pub(crate) type Report = (Option<String>, Option<String>);

/// A report as stored.
pub(crate) fn report_json(report: &StatusUpdate) -> Result<Report, OpError> {
    Ok((
        report.progress.as_ref().map(json).transpose()?,
        report.steps.as_ref().map(json).transpose()?,
    ))
}

/// Merges reports of running tasks whose lease is still held.
pub(crate) fn report(
    cx: &mut WriteCx<'_>,
    updates: Vec<(Lease, StatusUpdate)>,
    now: i64,
) -> Result<Vec<LeaseState>, OpError> {
    let mut merge = cx.conn.prepare_cached(sql::REPORT)?;
    let mut states = Vec::with_capacity(updates.len());
    for (lease, update) in updates {
        let (progress, steps) = report_json(&update)?;
        let cancel: Option<bool> = merge
            .query_row(
                params![
                    &id_bytes(lease.id)[..],
                    &token(&lease)[..],
                    progress,
                    steps,
                    now
                ],
                |r| r.get(0),
            )
            .optional()?;
        if cancel.is_some() {
            cx.changed(lease.id)?;
        }
        states.push(lease_state(cancel));
    }
    Ok(states)
}

/// Cancels a waiting task at once, or asks the worker of a running one to stop it.
pub(crate) fn cancel(
    cx: &mut WriteCx<'_>,
    id: TaskId,
    by: Owner,
    now: i64,
) -> Result<CancelOutcome, OpError> {
    type Found = (i64, Result<TaskState, OpError>, Option<String>);
    let found: Option<Found> = cx
        .conn
        .prepare_cached(sql::CANCEL_LOOKUP)?
        .query_row([&id_bytes(id)[..]], |r| {
            Ok((r.get(0)?, state_at(r, 1), r.get(2)?))
        })
        .optional()?;
    let Some((seq, state, history)) = found else {
        return Ok(CancelOutcome::NotFound);
    };
    let state = state?;
    let requested = match state {
        s if s.is_waiting() => false,
        TaskState::Running => true,
        s => return Ok(CancelOutcome::Conflict(s)),
    };
    if requested {
        cx.conn
            .prepare_cached(sql::CANCEL_RUNNING)?
            .execute(params![seq, now])?;
        cx.effects.cancels.push(id);
    } else {
        let mut finish = Finish::new(cx.conn)?;
        Ending::new(TaskState::Cancelled).write(&mut finish, id, now, state, &mut cx.tally)?;
    }
    let outcome = match requested {
        true => ActionOutcome::CancelRequested,
        false => ActionOutcome::Cancelled,
    };
    let action = Action::new(outcome, by, codec::time(now)?);
    history::append(cx.conn, seq, history.as_deref(), action)?;
    let record = record(cx.conn, id)?;
    cx.changed(id)?;
    Ok(if requested {
        CancelOutcome::Requested(Box::new(record))
    } else {
        CancelOutcome::Cancelled(Box::new(record))
    })
}

/// Requeues a failed or cancelled task with a fresh set of attempts; its key becomes live
/// again unless another live task took it meanwhile.
pub(crate) fn retry(
    cx: &mut WriteCx<'_>,
    id: TaskId,
    by: Owner,
    now: i64,
) -> Result<RetryOutcome, OpError> {
    type Found = (
        i64,
        Result<TaskState, OpError>,
        Option<i64>,
        Option<String>,
        Owner,
        Option<String>,
    );
    let found: Option<Found> = cx
        .conn
        .prepare_cached(sql::RETRY_LOOKUP)?
        .query_row([&id_bytes(id)[..]], |r| {
            Ok((
                r.get(0)?,
                state_at(r, 1),
                r.get(2)?,
                r.get(3)?,
                Owner {
                    user_id: r.get(4)?,
                    tenant: r.get(5)?,
                },
                r.get(6)?,
            ))
        })
        .optional()?;
    let Some((seq, state, expires_at, key, owner, history)) = found else {
        return Ok(RetryOutcome::NotFound);
    };
    if expires_at.is_some_and(|x| x <= now) {
        return Ok(RetryOutcome::NotFound);
    }
    let state = state?;
    if !matches!(state, TaskState::Failed | TaskState::Cancelled) {
        return Ok(RetryOutcome::Conflict(state));
    }
    let live_key = match key.map(|k| scoped_key(&owner, &k)) {
        Some(k) => {
            let taken = cx
                .conn
                .prepare_cached(sql::ENQUEUE_FIND_KEY)?
                .query_row([&k], |_| Ok(()))
                .optional()?
                .is_some();
            (!taken).then_some(k)
        }
        None => None,
    };
    cx.conn
        .prepare_cached(sql::RETRY)?
        .execute(params![seq, now, live_key])?;
    let action = Action::new(ActionOutcome::Requeued, by, codec::time(now)?);
    history::append(cx.conn, seq, history.as_deref(), action)?;
    let record = record(cx.conn, id)?;
    cx.tally
        .moved(&owner, &record.queue, state, TaskState::Pending);
    cx.changed(id)?;
    cx.effects.work = true;
    Ok(RetryOutcome::Requeued(Box::new(record)))
}

/// Hands up to `limit` tasks whose lease lapsed back (or ends them).
pub(crate) fn reap(cx: &mut WriteCx<'_>, now: i64, limit: i64) -> Result<Reaped, OpError> {
    type Lapsed = (i64, TaskId, bool, u32, u32, (Owner, String));
    let lapsed: Vec<Lapsed> = {
        let mut stmt = cx.conn.prepare_cached(sql::REAP_LAPSED)?;
        let mut rows = stmt.query(params![now, limit])?;
        let mut lapsed = Vec::new();
        while let Some(r) = rows.next()? {
            let owner = Owner {
                tenant: r.get(5)?,
                user_id: r.get(6)?,
            };
            let at = (owner, r.get(7)?);
            lapsed.push((r.get(0)?, id_at(r, 1)?, r.get(2)?, r.get(3)?, r.get(4)?, at));
        }
        lapsed
    };
    let mut finish = Finish::new(cx.conn)?;
    let mut requeue = cx.conn.prepare_cached(sql::REAP_REQUEUE)?;
    let running = TaskState::Running;
    let mut reaped = Reaped::default();
    for (seq, id, cancel_requested, attempt, max_attempts, (owner, queue)) in lapsed {
        if cancel_requested {
            Ending::attempt(TaskState::Cancelled, AttemptEnding::Cancelled, None)?.write(
                &mut finish,
                id,
                now,
                running,
                &mut cx.tally,
            )?;
            reaped.cancelled += 1;
        } else if attempt >= max_attempts {
            let error = lease_expired_error(false);
            Ending::attempt(TaskState::Failed, AttemptEnding::LeaseLapsed, Some(&error))?.write(
                &mut finish,
                id,
                now,
                running,
                &mut cx.tally,
            )?;
            reaped.failed += 1;
        } else {
            let error = lease_expired_error(true);
            requeue.execute(params![seq, now, json(&error)?])?;
            finish.log(id, AttemptEnding::LeaseLapsed, Some(&error), now)?;
            cx.tally.moved(&owner, &queue, running, TaskState::Pending);
            reaped.requeued += 1;
            cx.effects.work = true;
        }
        cx.changed(id)?;
    }
    Ok(reaped)
}

/// Deletes up to `limit` expired records; returns how many.
pub(crate) fn purge_expired(cx: &mut WriteCx<'_>, now: i64, limit: i64) -> Result<u64, OpError> {
    let mut purge = cx.conn.prepare_cached(sql::PURGE_EXPIRED)?;
    let mut rows = purge.query(params![now, limit])?;
    let mut deleted = 0;
    while let Some(r) = rows.next()? {
        let (owner, queue) = owner_queue(r)?;
        cx.tally.add(&owner, &queue, state_at(r, 3)?, -1);
        deleted += 1;
    }
    drop(rows);
    Ok(deleted)
}

/// One record, expired or not.
pub(crate) fn record(conn: &Connection, id: TaskId) -> Result<TaskRecord, OpError> {
    conn.prepare_cached(sql::RECORD)?
        .query_row([&id_bytes(id)[..]], |r| Ok(codec::record(r)))?
}

/// The column of `get.sql` that holds the arguments (after the record's).
const GET_ARGS: usize = 27;

/// One unexpired record by id, with its arguments.
pub(crate) fn get(conn: &Connection, id: TaskId, now: i64) -> Result<Option<TaskRecord>, OpError> {
    let read = |r: &rusqlite::Row<'_>| {
        Ok(codec::record(r).and_then(|record| {
            Ok(TaskRecord {
                args: codec::raw_at(r, GET_ARGS)?,
                ..record
            })
        }))
    };
    conn.prepare_cached(sql::GET)?
        .query_row(params![&id_bytes(id)[..], now], read)
        .optional()?
        .transpose()
}

/// How many tasks wait and run.
pub(crate) fn depth(conn: &Connection) -> Result<QueueDepth, OpError> {
    Ok(conn.prepare_cached(sql::DEPTH)?.query_row([], |r| {
        Ok(QueueDepth {
            waiting: r.get(0)?,
            running: r.get(1)?,
        })
    })?)
}

/// One deployment fact.
pub(crate) fn get_meta(conn: &Connection, name: &str) -> Result<Option<String>, OpError> {
    Ok(conn
        .prepare_cached(sql::META_GET)?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

/// Records `value` under `name` if `expected` is recorded (`None`: nothing); whether it did.
pub(crate) fn swap_meta(
    cx: &mut WriteCx<'_>,
    name: &str,
    expected: Option<&str>,
    value: &str,
) -> Result<bool, OpError> {
    let changed = match expected {
        None => cx
            .conn
            .prepare_cached(sql::META_INSERT)?
            .execute(params![name, value])?,
        Some(expected) => cx
            .conn
            .prepare_cached(sql::META_SWAP)?
            .execute(params![name, expected, value])?,
    };
    Ok(changed > 0)
}

/// Reads the task table's first page.
pub(crate) fn ping(conn: &Connection) -> Result<(), OpError> {
    conn.prepare_cached(sql::PING)?.query_row([], |_| Ok(()))?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A database in memory with the whole schema.
    pub(crate) fn schema() -> Connection {
        let conn = Connection::open_in_memory().expect("in-memory database");
        for m in crate::migrations::all() {
            conn.execute_batch(m).expect("schema applies");
        }
        conn
    }

    /// The details of `sql`'s query plan, joined.
    pub(crate) fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("query plans");
        // Unbound parameters are NULL, which does not change the plan.
        let mut rows = stmt.raw_query();
        let mut details = Vec::new();
        while let Some(row) = rows.next().expect("plan row") {
            details.push(row.get::<_, String>(3).expect("plan detail"));
        }
        details.join("; ")
    }

    #[test]
    fn both_claim_reads_return_the_columns_candidate_reads() {
        let conn = schema();
        let columns = |sql| {
            let stmt = conn.prepare(sql).expect("statement prepares");
            stmt.column_names().join(", ")
        };
        assert_eq!(columns(sql::CLAIM_CANDIDATES), columns(sql::CLAIM_ROW));
    }

    #[test]
    fn record_queries_return_the_columns_codec_reads() {
        const RECORD_COLUMNS: [&str; 27] = [
            "id",
            "name",
            "queue",
            "status",
            "user_id",
            "tenant",
            "correlation_id",
            "request_id",
            "key",
            "created_at",
            "updated_at",
            "run_at",
            "started_at",
            "completed_at",
            "next_attempt_at",
            "expires_at",
            "attempt",
            "max_attempts",
            "timeout_ms",
            "cancel_requested",
            "progress",
            "steps",
            "error",
            "result",
            "history",
            "trace_id",
            "attempts",
        ];
        let conn = schema();
        let listings = [
            sql::LIST_OWNER,
            sql::LIST_ANY,
            sql::LIST_OWNER_DONE,
            sql::LIST_ANY_DONE,
            sql::LIST_OWNER_NAME,
            sql::LIST_ANY_NAME,
            sql::LIST_OWNER_QUEUE,
            sql::LIST_ANY_QUEUE,
            sql::LIST_WAITING,
            sql::LIST_RUNNING,
            sql::LIST_SEARCH,
        ];
        for sql in [sql::RECORD].into_iter().chain(listings) {
            let stmt = conn.prepare(sql).expect("statement prepares");
            assert_eq!(stmt.column_names(), RECORD_COLUMNS, "{sql}");
        }
        // `get` reads the arguments too, after the record's columns.
        let get = conn.prepare(sql::GET).expect("statement prepares");
        let mut with_args = RECORD_COLUMNS.to_vec();
        with_args.push("args");
        assert_eq!(get.column_names(), with_args);
    }

    /// Every way a task ends (completions, cancels of waiting tasks, the reaper) goes through
    /// `finish.sql`: no other statement schedules a record's expiry.
    #[test]
    fn only_finish_sql_ends_tasks() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        let mut ending = Vec::new();
        for entry in std::fs::read_dir(dir).expect("sql directory") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "sql") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("sql file");
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect();
            if code.contains("ttl_us") && code.contains("UPDATE") {
                ending.push(
                    path.file_name()
                        .expect("name")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        assert_eq!(ending, ["finish.sql"]);
    }

    /// The hot paths walk their partial index and never sort or scan the table, so they cost
    /// O(log n) however many tasks wait or finished.
    #[test]
    fn hot_queries_use_their_indexes() {
        let conn = schema();
        let uses = |sql: &str, index: &str| {
            let plan = plan(&conn, sql);
            assert!(plan.contains(index), "{sql}\nplan: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql}\nsorts: {plan}");
            assert!(
                !plan.contains("SCAN tasks") || plan.contains("USING"),
                "{sql}\nscans the table: {plan}"
            );
        };
        uses(sql::CLAIM_CANDIDATES, "tasks_ready");
        // Claims from several queues pick their winners from the index alone, reading no row.
        uses(sql::CLAIM_ORDER, "COVERING INDEX tasks_ready");
        uses(sql::CLAIM_ROW, "INTEGER PRIMARY KEY");
        uses(sql::NEXT_DUE, "tasks_ready");
        uses(sql::REAP_LAPSED, "tasks_leased");
        uses(sql::PURGE_EXPIRED, "tasks_expiry");
        uses(sql::ENQUEUE_FIND_KEY, "tasks_live_key");
        uses(sql::LIST_OWNER, "tasks_owner");
        uses(sql::GET, "sqlite_autoindex_tasks_1");
        uses(sql::HEARTBEAT, "sqlite_autoindex_tasks_1");
        uses(sql::FINISH, "sqlite_autoindex_tasks_1");
        uses(sql::COMPLETE_RETRY, "sqlite_autoindex_tasks_1");
        uses(sql::COMPLETE_RELEASE, "sqlite_autoindex_tasks_1");
        let depth = plan(&conn, sql::DEPTH);
        assert!(
            depth.contains("tasks_ready") && depth.contains("tasks_leased"),
            "depth counts the partial indexes: {depth}"
        );
    }
}
