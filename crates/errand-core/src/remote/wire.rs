//! The worker protocol's messages (`docs/worker-protocol.md`), as they travel in JSON.

use crate::id::TaskId;
use crate::status::{Progress, StepStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Most tasks in one claim, leases in one heartbeat, completions in one call.
pub const MAX_BATCH: usize = 256;

/// Most step changes carried for one task in one call.
pub const MAX_STEP_CHANGES: usize = 64;

/// A claim: the task types this worker runs, where from, how many, how long to wait.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSpec {
    /// The task types this worker runs (at least one).
    pub types: Vec<String>,
    /// Only these queues; default: the queues of `types`.
    #[serde(default)]
    pub queues: Option<Vec<String>>,
    /// At most this many tasks (1–256).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 256))]
    pub max: u32,
    /// Seconds to wait for work (0–30, default 30).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 30))]
    pub wait_s: Option<f64>,
    /// Seconds this worker may go without a heartbeat before it loses its tasks (2–600,
    /// default 30).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 2, maximum = 600))]
    pub lease_s: Option<f64>,
    /// Who is claiming, for the operators' workers view.
    #[serde(default)]
    pub worker: Option<WorkerInfo>,
}

/// A remote worker instance describing itself, for the operators' workers view (it changes
/// nothing about what it is given).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WorkerInfo {
    /// This instance's id, unique among the processes that share a worker token (for
    /// example `host-pid`); 1–128 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128))]
    pub instance: String,
    /// The host it runs on.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 255))]
    pub host: Option<String>,
    /// What it is written in (`python` for the Python SDK).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 32))]
    pub language: Option<String>,
    /// How many tasks it runs at once.
    #[serde(default)]
    pub concurrency: Option<u32>,
}

impl WorkerInfo {
    /// Checks the lengths the schema states.
    pub fn validate(&self) -> Result<(), String> {
        let within = |what: &str, v: &str, max: usize| {
            if v.chars().count() > max {
                Err(format!("`worker.{what}` is longer than {max} characters"))
            } else {
                Ok(())
            }
        };
        if self.instance.is_empty() {
            return Err("`worker.instance` must not be empty".into());
        }
        within("instance", &self.instance, 128)?;
        within("host", self.host.as_deref().unwrap_or(""), 255)?;
        within("language", self.language.as_deref().unwrap_or(""), 32)
    }
}

/// The context of a claimed task, in clear for the worker that runs it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WireContext {
    /// Who the task is for.
    pub user_id: Option<String>,
    /// Their tenant.
    pub tenant: Option<String>,
    /// Their roles.
    pub roles: Vec<String>,
    /// The submitting request's id.
    pub request_id: Option<String>,
    /// The correlation id.
    pub correlation_id: Option<String>,
    /// W3C trace context of the submission.
    pub traceparent: Option<String>,
    /// The allow-listed request headers.
    pub headers: BTreeMap<String, String>,
    /// Extra fields set by the submitter.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub extra: BTreeMap<String, serde_json::Value>,
    /// The submitter's credential, only while unexpired.
    pub credential: Option<String>,
    /// When the credential expires, if it does.
    pub credential_expires_at: Option<DateTime<Utc>>,
}

/// A claimed task, handed to the worker that runs it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Assignment {
    /// The task.
    pub task_id: TaskId,
    /// Its type.
    pub name: String,
    /// Its queue.
    pub queue: String,
    /// Its arguments.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub args: Box<RawValue>,
    /// This attempt (from 1).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// This attempt's lease token (32 hex digits): every heartbeat and completion names it.
    pub lease_token: String,
    /// Heartbeat before this, or the task is taken back.
    pub lease_deadline: DateTime<Utc>,
    /// Seconds after which the server fails the attempt (`timeout`).
    pub timeout_s: f64,
    /// Who the task is for; `null` for a task submitted without a context.
    pub context: Option<WireContext>,
}

/// The tasks of a claim (empty when none came within `wait_s`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Claimed {
    /// The claimed tasks.
    pub tasks: Vec<Assignment>,
}

/// One change to a task's pipeline steps.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepChange {
    /// The step.
    pub name: String,
    /// `running` starts it; `success` or `failed` ends it.
    pub status: StepStatus,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// What a task reported since the worker's last call.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Report {
    /// How far it got.
    #[serde(default)]
    pub progress: Option<Progress>,
    /// Its step changes, in order.
    #[serde(default)]
    pub steps: Vec<StepChange>,
    /// Steps declared up front (pending).
    #[serde(default)]
    pub plan: Vec<String>,
}

/// One lease renewed, with what its task reported.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
pub struct HeartbeatItem {
    /// The task.
    pub task_id: TaskId,
    /// The attempt's lease token.
    pub lease_token: String,
    /// What it reported.
    #[serde(flatten)]
    pub report: Report,
}

/// A heartbeat: every lease of the worker.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The leases, at most 256: every attempt the instance holds.
    pub leases: Vec<HeartbeatItem>,
    /// Who is beating, for the operators' workers view.
    #[serde(default)]
    pub worker: Option<WorkerInfo>,
}

/// The answer for one lease.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LeaseAnswer {
    /// The task.
    pub task_id: TaskId,
    /// Whether this attempt is still the worker's; if not, stop working on it.
    pub held: bool,
    /// Whether someone cancelled the task.
    pub cancel_requested: bool,
    /// The next heartbeat is due before this (absent when not held).
    pub lease_deadline: Option<DateTime<Utc>>,
}

/// The answers of a heartbeat, in the order of its leases.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Renewed {
    /// One per lease.
    pub leases: Vec<LeaseAnswer>,
}

/// How an attempt ended, as a worker reports it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireOutcome {
    /// It succeeded with `result`.
    Success,
    /// It failed with `error`.
    Failure,
    /// It stopped as cancelled.
    Cancelled,
    /// Hand it back unfinished, without spending the attempt.
    Released,
}

/// A failure, as a worker reports it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireError {
    /// What went wrong.
    pub message: String,
    /// A machine-readable kind (default `error`).
    #[serde(default)]
    pub kind: Option<String>,
    /// Structured details.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: Option<serde_json::Value>,
    /// Whether another attempt could succeed.
    pub retryable: bool,
    /// Retry after this many seconds instead of the type's backoff.
    #[serde(default)]
    pub retry_in_s: Option<f64>,
}

/// One finished attempt.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionItem {
    /// The task.
    pub task_id: TaskId,
    /// The attempt's lease token.
    pub lease_token: String,
    /// How it ended.
    pub outcome: WireOutcome,
    /// The result of a success (default `null`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub result: Option<Box<RawValue>>,
    /// The error of a failure.
    #[serde(default)]
    pub error: Option<WireError>,
    /// What it reported last, applied before the outcome.
    #[serde(flatten)]
    pub report: Report,
}

/// Finished attempts.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Completions {
    /// At most 256.
    pub completions: Vec<CompletionItem>,
}

/// What became of one completion.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CompletionAnswer {
    /// The task.
    pub task_id: TaskId,
    /// Written to the store under the attempt's lease.
    pub accepted: bool,
    /// Refused: the attempt is no longer current (timed out, reclaimed, superseded).
    pub fenced: bool,
}

/// The answers of a completion call, in its order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Completed {
    /// One per completion.
    pub results: Vec<CompletionAnswer>,
}
