//! What the holder of a lease writes while its attempt runs: heartbeats and reports, each
//! accepted only while the lease is the task's current one.

use crate::codec::{after, id_bytes, json};
use crate::error::OpError;
use crate::sql;
use crate::writer::WriteCx;
use errand_core::{Lease, LeaseState, StatusUpdate};
use rusqlite::{OptionalExtension, params};
use std::time::Duration;

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
