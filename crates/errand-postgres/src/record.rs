//! Rows to errand's types and back: a [`TaskRecord`] from the record columns (`sql.rs`), a
//! [`Claimed`] from a claim, and the JSON columns' text.

use crate::error::{PostgresError, Result};
use errand_core::{
    Action, AttemptEnd, Claimed, ErrorInfo, Lease, LeaseToken, Owner, Progress, SealedContext,
    Step, TaskId, TaskRecord, TaskState,
};
use serde_json::value::RawValue;
use sqlx_core::row::Row;
use sqlx_core::types::Json;
use sqlx_postgres::PgRow;
use std::time::Duration;

/// A state read back from its name.
pub(crate) fn state(name: &str) -> Result<TaskState> {
    name.parse()
        .map_err(|e| PostgresError::corrupt(format_args!("task state: {e}")))
}

/// A stored JSON text as a raw value.
fn raw(text: String) -> Result<Box<RawValue>> {
    RawValue::from_string(text).map_err(|e| PostgresError::corrupt(format_args!("JSON: {e}")))
}

/// A count column as an unsigned number.
fn count<T: TryFrom<i64>>(column: &str, value: i64) -> Result<T> {
    T::try_from(value).map_err(|_| PostgresError::corrupt(format_args!("{column}: {value}")))
}

/// `value` as the text of a JSON column.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| PostgresError::Invalid(e.to_string()))
}

/// A record from the columns of `sql::COLUMNS`.
pub(crate) fn record(row: &PgRow) -> Result<TaskRecord> {
    let attempt: i32 = row.try_get("attempt")?;
    let max_attempts: i32 = row.try_get("max_attempts")?;
    let timeout_ms: i64 = row.try_get("timeout_ms")?;
    let progress: Option<Json<Progress>> = row.try_get("progress")?;
    let steps: Json<Vec<Step>> = row.try_get("steps")?;
    let error: Option<Json<ErrorInfo>> = row.try_get("error")?;
    let history: Json<Vec<Action>> = row.try_get("history")?;
    let result: Option<String> = row.try_get("result")?;
    let attempts: Json<Vec<AttemptEnd>> = row.try_get("attempts")?;
    // Only `get` reads the arguments (listings and events leave them out).
    let args: Option<String> = match row.try_column("args") {
        Ok(_) => Some(row.try_get("args")?),
        Err(_) => None,
    };
    Ok(TaskRecord {
        id: TaskId::from_uuid(row.try_get("id")?),
        name: row.try_get("name")?,
        queue: row.try_get("queue")?,
        status: state(row.try_get("status")?)?,
        owner: Owner {
            user_id: row.try_get("user_id")?,
            tenant: row.try_get("tenant")?,
        },
        correlation_id: row.try_get("correlation_id")?,
        request_id: row.try_get("request_id")?,
        key: row.try_get("key")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        run_at: row.try_get("run_at")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        expires_at: row.try_get("expires_at")?,
        attempt: count("attempt", attempt.into())?,
        max_attempts: count("max_attempts", max_attempts.into())?,
        timeout_ms: count("timeout_ms", timeout_ms)?,
        cancel_requested: row.try_get("cancel_requested")?,
        progress: progress.map(|p| p.0),
        steps: steps.0,
        error: error.map(|e| e.0),
        result: result.map(raw).transpose()?,
        history: history.0,
        attempts: attempts.0,
        trace_id: row.try_get("trace_id")?,
        args: args.map(raw).transpose()?,
    })
}

/// A claimed task from a row of `claim.sql`.
pub(crate) fn claimed(row: &PgRow) -> Result<Claimed> {
    let token: uuid::Uuid = row.try_get("lease_token")?;
    let attempt: i32 = row.try_get("attempt")?;
    let max_attempts: i32 = row.try_get("max_attempts")?;
    let timeout_ms: i64 = row.try_get("timeout_ms")?;
    let context: Option<String> = row.try_get("context")?;
    Ok(Claimed {
        lease: Lease {
            id: TaskId::from_uuid(row.try_get("id")?),
            token: LeaseToken::from_u128(token.as_u128()),
        },
        name: row.try_get("name")?,
        queue: row.try_get("queue")?,
        args: raw(row.try_get("args")?)?,
        context: context.map(SealedContext::from_stored),
        owner: Owner {
            user_id: row.try_get("user_id")?,
            tenant: row.try_get("tenant")?,
        },
        correlation_id: row.try_get("correlation_id")?,
        attempt: count("attempt", attempt.into())?,
        max_attempts: count("max_attempts", max_attempts.into())?,
        timeout: Duration::from_millis(count("timeout_ms", timeout_ms)?),
        due_at: row.try_get("due_at")?,
    })
}
