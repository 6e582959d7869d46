//! Maintenance: lapsed leases handed back (or ended), expired records deleted, each in chunks.

use crate::codec::{id_at, json, state_at};
use crate::ending::{Ending, Finish, owner_queue};
use crate::error::OpError;
use crate::sql;
use crate::writer::WriteCx;
use errand_core::{AttemptEnding, Owner, Reaped, TaskId, TaskState, lease_expired_error};
use rusqlite::params;

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
    let mut finish = Finish::new(cx.conn, cx.held)?;
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
