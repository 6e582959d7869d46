//! The status model: what a client is told about a task. The JSON of [`TaskRecord`] is the one
//! shape used everywhere (API, events, CLI `--json`).

use crate::attempt_log::AttemptEnd;
use crate::history::Action;
use crate::id::TaskId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use std::str::FromStr;

/// Where a task is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting to be claimed.
    Pending,
    /// Waiting for its `run_at` time (submitted with a delay).
    Scheduled,
    /// Claimed by a worker that holds its lease.
    Running,
    /// Failed an attempt and waits for `next_attempt_at`.
    Retrying,
    /// Finished with a result.
    Success,
    /// Finished with an error, attempts exhausted or not retryable.
    Failed,
    /// Cancelled before or while running.
    Cancelled,
}

impl TaskState {
    /// Every state, in life order.
    pub const ALL: [TaskState; 7] = [
        TaskState::Pending,
        TaskState::Scheduled,
        TaskState::Running,
        TaskState::Retrying,
        TaskState::Success,
        TaskState::Failed,
        TaskState::Cancelled,
    ];

    /// Whether the task will not change state again on its own.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failed | TaskState::Cancelled
        )
    }

    /// Whether the task still waits to run (pending, scheduled or retrying).
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            TaskState::Pending | TaskState::Scheduled | TaskState::Retrying
        )
    }

    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Scheduled => "scheduled",
            TaskState::Running => "running",
            TaskState::Retrying => "retrying",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not a state name.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown task status {0:?} (expected pending, scheduled, running, retrying, success, failed or cancelled)"
)]
pub struct ParseStateError(String);

impl FromStr for TaskState {
    type Err = ParseStateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ParseStateError(s.chars().take(32).collect()))
    }
}

/// Who a task belongs to. A user sees only tasks whose owner matches theirs exactly.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    /// The submitting user.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub user_id: Option<String>,
    /// The submitting user's tenant.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub tenant: Option<String>,
}

impl Owner {
    /// An owner from a user and tenant.
    pub fn new(user_id: impl Into<String>, tenant: Option<String>) -> Self {
        Self {
            user_id: Some(user_id.into()),
            tenant,
        }
    }
}

/// How far a running task got.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Units done.
    pub current: u64,
    /// Units in all.
    pub total: u64,
    /// What is being done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub message: Option<String>,
}

/// The state of one pipeline step.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Declared, not started.
    Pending,
    /// Started.
    Running,
    /// Finished well.
    Success,
    /// Finished with an error.
    Failed,
    /// Not run because an earlier step failed.
    Skipped,
}

/// One named step of a task's pipeline; steps keep the order in which they were declared or
/// started.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The step's name.
    pub name: String,
    /// Its state.
    pub status: StepStatus,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub completed_at: Option<DateTime<Utc>>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub error: Option<String>,
}

/// Why a task (or its last attempt) failed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// A sentence for people.
    pub message: String,
    /// A stable machine-readable kind, e.g. `timeout`, `panic`, `invalid_args`.
    pub kind: String,
    /// Structured details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub details: Option<serde_json::Value>,
    /// Whether another attempt could succeed.
    pub retryable: bool,
}

/// Everything a client is told about one task.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task's id.
    pub id: TaskId,
    /// The registered task name.
    pub name: String,
    /// The queue it runs on.
    pub queue: String,
    /// Its state.
    pub status: TaskState,
    /// Who it is for.
    pub owner: Owner,
    /// The submitting request's correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub correlation_id: Option<String>,
    /// The submitting request's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub request_id: Option<String>,
    /// The idempotency key it was submitted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub key: Option<String>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
    /// When it may first run (submitted with a delay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub run_at: Option<DateTime<Utc>>,
    /// When its current (or last) attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub completed_at: Option<DateTime<Utc>>,
    /// When a `retrying` task will be attempted again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When a finished record will be deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Option<DateTime<Utc>>,
    /// Attempts started so far (1 during the first run).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Time limit of one attempt, in milliseconds.
    pub timeout_ms: u64,
    /// Whether cancellation was requested while it runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// Last reported progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Progress))]
    pub progress: Option<Progress>,
    /// Pipeline steps, in order.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub steps: Vec<Step>,
    /// The error of the last failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = ErrorInfo))]
    pub error: Option<ErrorInfo>,
    /// The task's output, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub result: Option<Box<RawValue>>,
    /// Who cancelled or retried it and when, oldest first: the last 50 actions that changed it
    /// (`errand_core::HISTORY_LIMIT`); refused ones are not recorded. Always an array.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub history: Vec<Action>,
    /// How each attempt that did not succeed ended, oldest first: the last 20
    /// (`errand_core::ATTEMPT_LOG_LIMIT`). A successful attempt is described by `attempt`,
    /// `started_at` and `completed_at` and adds no entry. Always an array.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub attempts: Vec<AttemptEnd>,
    /// The trace id (32 lowercase hex digits) of the submitting request's `traceparent`, kept
    /// in the clear beside the sealed context so a dashboard can link the trace. It is shown,
    /// never trusted: workers join the trace from the sealed context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub trace_id: Option<String>,
    /// The task's arguments as submitted. Filled when one task is read (`Store::get`, and so
    /// `GET /v1/tasks/{id}`); listings and events leave it out to stay small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub args: Option<Box<RawValue>>,
}

/// What a running task reports between attempts' start and end: merged into its record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusUpdate {
    /// New progress, if it changed.
    pub progress: Option<Progress>,
    /// The whole step list, if it changed.
    pub steps: Option<Vec<Step>>,
}

impl StatusUpdate {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.progress.is_none() && self.steps.is_none()
    }
}
