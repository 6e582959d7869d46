//! Enqueue: new tasks are inserted waiting in their queue; a live task with the same
//! owner-scoped key is returned instead.

use crate::codec::{self, after, id_at, id_bytes, state_at};
use crate::error::OpError;
use crate::signals::DueChange;
use crate::sql;
use crate::writer::WriteCx;
use errand_core::{Enqueued, NewTask, SealedContext, TaskState};
use rusqlite::{OptionalExtension, params};

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
