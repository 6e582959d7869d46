//! The reads of records and of the store: one record, one unexpired record with its
//! arguments, the depth of the queues, the liveness probe.

use crate::codec::{self, id_bytes};
use crate::error::OpError;
use crate::sql;
use errand_core::{QueueDepth, TaskId, TaskRecord};
use rusqlite::{Connection, OptionalExtension, params};

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

/// Reads the task table's first page.
pub(crate) fn ping(conn: &Connection) -> Result<(), OpError> {
    conn.prepare_cached(sql::PING)?.query_row([], |_| Ok(()))?;
    Ok(())
}
