//! Cancel and retry by request: each changes the task and appends the caller to its history
//! in the same transaction.

use super::reads::record;
use crate::codec::{self, id_bytes, state_at};
use crate::ending::{Ending, Finish};
use crate::error::OpError;
use crate::history;
use crate::sql;
use crate::writer::WriteCx;
use errand_core::{
    Action, ActionOutcome, CancelOutcome, Owner, RetryOutcome, TaskId, TaskState, scoped_key,
};
use rusqlite::{OptionalExtension, params};

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
        let mut finish = Finish::new(cx.conn, cx.held)?;
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
