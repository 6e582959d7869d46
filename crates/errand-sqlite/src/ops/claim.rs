//! Claim: the oldest due tasks across the asked queues, each leased under a new token.

use super::leases::token;
use crate::codec::{self, after, id_at, state_at};
use crate::error::OpError;
use crate::signals::DueChange;
use crate::sql;
use crate::writer::WriteCx;
use errand_core::{Claimed, Lease, LeaseToken, Owner, SealedContext, TaskId, TaskState};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::value::RawValue;
use std::time::Duration;

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
        cx.held.claimed(task.lease.id, &task.owner, &task.queue);
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
