//! How values are stored: times as integer microseconds since the Unix epoch (UTC), ids as
//! their 16 UUID bytes (which sort by time), structured fields as JSON text.

use crate::error::OpError;
use chrono::{DateTime, Utc};
use errand_core::{Owner, TaskId, TaskRecord, TaskState};
use rusqlite::Row;
use rusqlite::types::ValueRef;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use std::time::Duration;
use uuid::Uuid;

/// The longest span stored (about 1,000 years): longer delays, leases and TTLs are cut to it,
/// so that `now + span` never overflows.
const MAX_SPAN_US: i64 = 1_000 * 366 * 24 * 3_600 * 1_000_000;

/// A time as stored.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A duration as stored, cut to [`MAX_SPAN_US`].
pub(crate) fn span(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).map_or(MAX_SPAN_US, |us| us.min(MAX_SPAN_US))
}

/// `now` plus `d`, as stored.
pub(crate) fn after(now: i64, d: Duration) -> i64 {
    now.saturating_add(span(d))
}

/// A stored time read back.
pub(crate) fn time(us: i64) -> Result<DateTime<Utc>, OpError> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| OpError::Corrupt(format!("time {us} µs is out of range")))
}

fn opt_time(us: Option<i64>) -> Result<Option<DateTime<Utc>>, OpError> {
    us.map(time).transpose()
}

/// A task id as stored.
pub(crate) fn id_bytes(id: TaskId) -> [u8; 16] {
    *id.as_uuid().as_bytes()
}

/// A stored task id read back.
pub(crate) fn task_id(bytes: &[u8]) -> Result<TaskId, OpError> {
    Uuid::from_slice(bytes)
        .map(TaskId::from_uuid)
        .map_err(|_| OpError::Corrupt(format!("a task id of {} bytes", bytes.len())))
}

/// Reads the task id in column `i`.
pub(crate) fn id_at(row: &Row<'_>, i: usize) -> Result<TaskId, OpError> {
    task_id(row.get_ref(i)?.as_blob()?)
}

/// A stored state name read back.
pub(crate) fn state(name: &str) -> Result<TaskState, OpError> {
    name.parse().map_err(|e| OpError::Corrupt(format!("{e}")))
}

/// Reads the state in column `i`.
pub(crate) fn state_at(row: &Row<'_>, i: usize) -> Result<TaskState, OpError> {
    state(row.get_ref(i)?.as_str()?)
}

/// A value as JSON text.
pub(crate) fn json<T: Serialize>(value: &T) -> Result<String, OpError> {
    serde_json::to_string(value)
        .map_err(|e| OpError::Invalid(format!("cannot serialize a task field: {e}")))
}

/// Reads the JSON in column `i`, if any.
fn json_at<T: DeserializeOwned>(row: &Row<'_>, i: usize) -> Result<Option<T>, OpError> {
    match row.get_ref(i)? {
        ValueRef::Null => Ok(None),
        v => serde_json::from_str(v.as_str()?)
            .map(Some)
            .map_err(|e| OpError::Corrupt(format!("column {i} holds unreadable JSON: {e}"))),
    }
}

/// Reads the raw JSON in column `i` without reinterpreting it.
pub(crate) fn raw_at(row: &Row<'_>, i: usize) -> Result<Option<Box<RawValue>>, OpError> {
    match row.get_ref(i)? {
        ValueRef::Null => Ok(None),
        v => RawValue::from_string(v.as_str()?.to_owned())
            .map(Some)
            .map_err(|e| OpError::Corrupt(format!("column {i} holds unreadable JSON: {e}"))),
    }
}

/// Reads a record from a row whose columns are, in order: `id, name, queue, status, user_id,
/// tenant, correlation_id, request_id, key, created_at, updated_at, run_at, started_at,
/// completed_at, next_attempt_at, expires_at, attempt, max_attempts, timeout_ms,
/// cancel_requested, progress, steps, error, result, history, trace_id, attempts` (as in `get.sql`, `record.sql`
/// and `list_*.sql`).
pub(crate) fn record(row: &Row<'_>) -> Result<TaskRecord, OpError> {
    Ok(TaskRecord {
        id: id_at(row, 0)?,
        name: row.get(1)?,
        queue: row.get(2)?,
        status: state_at(row, 3)?,
        owner: Owner {
            user_id: row.get(4)?,
            tenant: row.get(5)?,
        },
        correlation_id: row.get(6)?,
        request_id: row.get(7)?,
        key: row.get(8)?,
        created_at: time(row.get(9)?)?,
        updated_at: time(row.get(10)?)?,
        run_at: opt_time(row.get(11)?)?,
        started_at: opt_time(row.get(12)?)?,
        completed_at: opt_time(row.get(13)?)?,
        next_attempt_at: opt_time(row.get(14)?)?,
        expires_at: opt_time(row.get(15)?)?,
        attempt: row.get(16)?,
        max_attempts: row.get(17)?,
        timeout_ms: row.get(18)?,
        cancel_requested: row.get(19)?,
        progress: json_at(row, 20)?,
        steps: json_at(row, 21)?.unwrap_or_default(),
        error: json_at(row, 22)?,
        result: raw_at(row, 23)?,
        history: json_at(row, 24)?.unwrap_or_default(),
        trace_id: row.get(25)?,
        attempts: json_at(row, 26)?.unwrap_or_default(),
        args: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_saturate_instead_of_overflowing() {
        assert_eq!(span(Duration::from_millis(1500)), 1_500_000);
        assert_eq!(span(Duration::MAX), MAX_SPAN_US);
        let now = micros(Utc::now());
        assert!(
            time(after(now, Duration::MAX)).is_ok(),
            "far future stays readable"
        );
    }

    #[test]
    fn stored_ids_sort_like_task_ids() {
        let (a, b) = (TaskId::new(), TaskId::new());
        assert!(id_bytes(a) < id_bytes(b));
        assert_eq!(task_id(&id_bytes(a)).expect("16 bytes"), a);
        assert!(task_id(&[1, 2, 3]).is_err());
    }
}
