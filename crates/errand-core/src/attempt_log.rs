//! A task's attempt log: how each attempt that did not succeed ended ([`AttemptEnd`], kept in
//! [`TaskRecord::attempts`](crate::TaskRecord::attempts)).
//!
//! Every store appends the entry in the same atomic write that ends the attempt: a completion
//! that retries, fails or cancels the task, and the reaper when a lease lapses. A successful
//! attempt adds nothing (the record's own `attempt`, `started_at` and `completed_at` describe
//! it), so the hot path writes nothing more; an attempt handed back at shutdown was not spent
//! and adds nothing either. The log is bounded: it keeps the last [`ATTEMPT_LOG_LIMIT`]
//! entries, oldest first.

use crate::status::{ErrorInfo, TaskRecord};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The most entries a task's attempt log keeps: appending to a full log drops its oldest
/// entry.
pub const ATTEMPT_LOG_LIMIT: usize = 20;

/// How an attempt that did not succeed ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptEnding {
    /// It failed and the task will be tried again.
    Retrying,
    /// It failed and the task failed with it.
    Failed,
    /// It was cancelled (by request, or at shutdown once the drain timeout passed).
    Cancelled,
    /// Its worker stopped renewing the lease (killed, hung or cut off), and the reaper took
    /// the task back.
    LeaseLapsed,
}

impl AttemptEnding {
    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptEnding::Retrying => "retrying",
            AttemptEnding::Failed => "failed",
            AttemptEnding::Cancelled => "cancelled",
            AttemptEnding::LeaseLapsed => "lease_lapsed",
        }
    }
}

/// One entry of a task's attempt log.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptEnd {
    /// The attempt's number (1 for the first).
    pub attempt: u32,
    /// When it started, as its claim recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub started_at: Option<DateTime<Utc>>,
    /// When the store recorded its end.
    pub ended_at: DateTime<Utc>,
    /// How it ended.
    pub outcome: AttemptEnding,
    /// Its error; `None` for a cancellation without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = ErrorInfo))]
    pub error: Option<ErrorInfo>,
}

/// Appends `end` to `log`, dropping the oldest entries beyond [`ATTEMPT_LOG_LIMIT`].
///
/// ```
/// use errand_core::{ATTEMPT_LOG_LIMIT, AttemptEnd, AttemptEnding, push_attempt};
/// let mut log = Vec::new();
/// for attempt in 1..=30 {
///     let end = AttemptEnd { attempt, started_at: None, ended_at: chrono::Utc::now(),
///                            outcome: AttemptEnding::Retrying, error: None };
///     push_attempt(&mut log, end);
/// }
/// assert_eq!(log.len(), ATTEMPT_LOG_LIMIT);
/// assert_eq!(log[0].attempt, 11);
/// ```
pub fn push_attempt(log: &mut Vec<AttemptEnd>, end: AttemptEnd) {
    log.push(end);
    if log.len() > ATTEMPT_LOG_LIMIT {
        let excess = log.len() - ATTEMPT_LOG_LIMIT;
        log.drain(..excess);
    }
}

/// Logs the end of `record`'s current attempt as `outcome` at `now`, with `error`.
pub(crate) fn log_attempt(
    record: &mut TaskRecord,
    outcome: AttemptEnding,
    error: Option<&ErrorInfo>,
    now: DateTime<Utc>,
) {
    let end = AttemptEnd {
        attempt: record.attempt,
        started_at: record.started_at,
        ended_at: now,
        outcome,
        error: error.cloned(),
    };
    push_attempt(&mut record.attempts, end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_serialize_snake_case() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_000).expect("in range");
        let end = AttemptEnd {
            attempt: 2,
            started_at: Some(at),
            ended_at: at,
            outcome: AttemptEnding::LeaseLapsed,
            error: None,
        };
        let json = serde_json::to_value(&end).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "attempt": 2,
                "started_at": "2023-11-14T22:13:20Z",
                "ended_at": "2023-11-14T22:13:20Z",
                "outcome": "lease_lapsed",
            })
        );
        assert_eq!(json["outcome"], end.outcome.as_str());
        let back: AttemptEnd = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, end);
    }
}
