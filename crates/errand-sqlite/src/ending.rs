//! How attempts and tasks end: completions (`finish.sql`, `complete_retry.sql`,
//! `complete_release.sql`), and the [`Ending`] that cancels and the reaper share with them.
//! Every attempt that ends other than in success is logged in the task's attempt log
//! (`attempts` column, see [`errand_core::AttemptEnd`]) in the same transaction.

use crate::codec::{self, after, id_bytes, json};
use crate::error::OpError;
use crate::ops::{Report, report_json, token};
use crate::signals::DueChange;
use crate::sql;
use crate::tally::Tally;
use crate::writer::WriteCx;
use errand_core::{
    AttemptEnd, AttemptEnding, CompleteResult, Completion, ErrorInfo, Lease, Outcome, Owner,
    TaskId, TaskState, push_attempt,
};
use rusqlite::{CachedStatement, Connection, OptionalExtension, params};

/// How a task ends for good, as `finish.sql` writes it.
pub(crate) struct Ending<'a> {
    /// Success, failed or cancelled.
    status: TaskState,
    /// A success's result.
    result: Option<&'a str>,
    /// The error to record (`None`: the recorded one stays).
    error: Option<String>,
    /// The last progress as stored (`None`: unchanged).
    progress: Option<&'a str>,
    /// The last steps as stored (`None`: unchanged).
    steps: Option<&'a str>,
    /// A completion's lease token (a lost lease matches no row); `None` for a cancel or a
    /// reap, which read the row in the same transaction.
    token: Option<[u8; 16]>,
    /// How the running attempt ended, and its error, for the attempt log; `None` for a
    /// success or the cancel of a waiting task, which log nothing.
    logged: Option<(AttemptEnding, Option<&'a ErrorInfo>)>,
}

impl<'a> Ending<'a> {
    /// Ends as `status`, with nothing else to record.
    pub(crate) fn new(status: TaskState) -> Self {
        Self {
            status,
            result: None,
            error: None,
            progress: None,
            steps: None,
            token: None,
            logged: None,
        }
    }

    /// Ends the running attempt as `outcome` with `error` (stored as the task's error too,
    /// when given), and the task as `status`, logging the attempt.
    pub(crate) fn attempt(
        status: TaskState,
        outcome: AttemptEnding,
        error: Option<&'a ErrorInfo>,
    ) -> Result<Self, OpError> {
        Ok(Self {
            error: error.map(json).transpose()?,
            logged: Some((outcome, error)),
            ..Self::new(status)
        })
    }

    /// Ends a completion's attempt as `status`, with its last progress and steps, while its
    /// lease is held.
    fn completion(status: TaskState, lease: &Lease, report: &'a Report) -> Self {
        Self {
            progress: report.0.as_deref(),
            steps: report.1.as_deref(),
            token: Some(token(lease)),
            ..Self::new(status)
        }
    }

    /// Writes it to task `id`, which was in state `from`, with `finish`, and counts the
    /// change in `tally`; whether the task ended.
    pub(crate) fn write(
        &self,
        finish: &mut Finish<'_>,
        id: TaskId,
        now: i64,
        from: TaskState,
        tally: &mut Tally,
    ) -> Result<bool, OpError> {
        let params = params![
            &id_bytes(id)[..],
            now,
            self.status.as_str(),
            self.result,
            self.error,
            self.progress,
            self.steps,
            self.token.as_ref().map(|t| &t[..])
        ];
        if finish.end.execute(params)? == 0 {
            return Ok(false);
        }
        if let Some((outcome, error)) = self.logged {
            finish.log(id, outcome, error, now)?;
        }
        let (owner, queue) = finish.owner_of(id)?;
        tally.moved(&owner, &queue, from, self.status);
        Ok(true)
    }
}

/// The statements that end tasks: `finish.sql`, and `task_owner.sql` for the counters.
pub(crate) struct Finish<'c> {
    end: CachedStatement<'c>,
    owner: CachedStatement<'c>,
    conn: &'c Connection,
}

impl<'c> Finish<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Result<Self, OpError> {
        Ok(Self {
            end: conn.prepare_cached(sql::FINISH)?,
            owner: conn.prepare_cached(sql::TASK_OWNER)?,
            conn,
        })
    }

    /// Appends the end of task `id`'s current attempt to its attempt log, keeping the last
    /// [`errand_core::ATTEMPT_LOG_LIMIT`] entries.
    pub(crate) fn log(
        &mut self,
        id: TaskId,
        outcome: AttemptEnding,
        error: Option<&ErrorInfo>,
        now: i64,
    ) -> Result<(), OpError> {
        let (seq, attempt, started, stored): (i64, u32, Option<i64>, Option<String>) = self
            .conn
            .prepare_cached(sql::ATTEMPT_LOG_GET)?
            .query_row([&id_bytes(id)[..]], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
        let mut log: Vec<AttemptEnd> = match stored {
            None => Vec::new(),
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                OpError::Corrupt(format!("a task's attempt log is unreadable: {e}"))
            })?,
        };
        let end = AttemptEnd {
            attempt,
            started_at: started.map(codec::time).transpose()?,
            ended_at: codec::time(now)?,
            outcome,
            error: error.cloned(),
        };
        push_attempt(&mut log, end);
        self.conn
            .prepare_cached(sql::ATTEMPT_LOG_SET)?
            .execute(params![seq, json(&log)?])?;
        Ok(())
    }

    /// The owner and queue of task `id`.
    fn owner_of(&mut self, id: TaskId) -> Result<(Owner, String), OpError> {
        Ok(self.owner.query_row([&id_bytes(id)[..]], owner_queue)?)
    }
}

/// The owner and queue of a changed row, from its `RETURNING tenant, user_id, queue`.
pub(crate) fn owner_queue(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Owner, String)> {
    let owner = Owner {
        tenant: r.get(0)?,
        user_id: r.get(1)?,
    };
    Ok((owner, r.get(2)?))
}

/// Ends attempts whose lease is still held; stale completions change nothing. Each is one
/// fenced update. A retry or release of a task whose cancellation was requested changes
/// nothing, and the task ends `cancelled` instead.
pub(crate) fn complete(
    cx: &mut WriteCx<'_>,
    completions: Vec<Completion>,
    now: i64,
) -> Result<Vec<CompleteResult>, OpError> {
    let conn = cx.conn;
    let mut finish = Finish::new(conn)?;
    let mut retry = conn.prepare_cached(sql::COMPLETE_RETRY)?;
    let mut release = conn.prepare_cached(sql::COMPLETE_RELEASE)?;
    let mut results = Vec::with_capacity(completions.len());
    for c in completions {
        let id = c.lease.id;
        let report = report_json(&c.report)?;
        let (progress, steps) = (report.0.as_deref(), report.1.as_deref());
        let end = |status| Ending::completion(status, &c.lease, &report);
        let running = TaskState::Running;
        let applied = match &c.outcome {
            Outcome::Success(result) => Ending {
                result: Some(result.get()),
                ..end(TaskState::Success)
            }
            .write(&mut finish, id, now, running, &mut cx.tally)?,
            Outcome::Failed(error) => Ending {
                error: Some(json(error)?),
                logged: Some((AttemptEnding::Failed, Some(error))),
                ..end(TaskState::Failed)
            }
            .write(&mut finish, id, now, running, &mut cx.tally)?,
            Outcome::Cancelled => cancelled(end(TaskState::Cancelled)).write(
                &mut finish,
                id,
                now,
                running,
                &mut cx.tally,
            )?,
            Outcome::Retry { error, delay } => {
                let next = after(now, *delay);
                let params = params![
                    &id_bytes(id)[..],
                    now,
                    json(error)?,
                    next,
                    progress,
                    steps,
                    &token(&c.lease)[..]
                ];
                match retry.query_row(params, owner_queue).optional()? {
                    Some((owner, queue)) => {
                        finish.log(id, AttemptEnding::Retrying, Some(error), now)?;
                        cx.tally.moved(&owner, &queue, running, TaskState::Retrying);
                        cx.effects.due.push(DueChange::Added { queue, due: next });
                        cx.effects.work = true;
                        true
                    }
                    // Cancellation was requested (or the lease is lost: nothing changes).
                    None => cancelled(end(TaskState::Cancelled)).write(
                        &mut finish,
                        id,
                        now,
                        running,
                        &mut cx.tally,
                    )?,
                }
            }
            Outcome::Released => {
                let params = params![
                    &id_bytes(id)[..],
                    now,
                    progress,
                    steps,
                    &token(&c.lease)[..]
                ];
                if release.execute(params)? > 0 {
                    let (owner, queue) = finish.owner_of(id)?;
                    cx.tally.moved(&owner, &queue, running, TaskState::Pending);
                    cx.effects.work = true;
                    true
                } else {
                    // Cancellation was requested (or the lease is lost: nothing changes).
                    cancelled(end(TaskState::Cancelled)).write(
                        &mut finish,
                        id,
                        now,
                        running,
                        &mut cx.tally,
                    )?
                }
            }
        };
        if applied {
            cx.changed(id)?;
            results.push(CompleteResult::Applied);
        } else {
            results.push(CompleteResult::Stale);
        }
    }
    Ok(results)
}

/// `ending`, logging the running attempt as cancelled.
fn cancelled(ending: Ending<'_>) -> Ending<'_> {
    Ending {
        logged: Some((AttemptEnding::Cancelled, None)),
        ..ending
    }
}
