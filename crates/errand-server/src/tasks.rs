//! The task routes: submit, read, list, cancel, retry, and the registered task types.
//!
//! Every route is scoped to the caller: a task owned by someone else answers exactly like a
//! task that does not exist (404), and a listing holds only the caller's tasks, unless the
//! caller is an admin.

use crate::actions::{self, Acted};
use crate::caller::Caller;
use crate::error::ApiError;
use crate::extract::{Json, TaskPath};
use crate::openapi::{
    self, BadRequest, Conflict, PayloadTooLarge, StoreUnavailable, TaskAccepted, TaskCancelled,
    TaskDeduplicated, TaskRequeued, TaskRouteErrors, TraceHeaders, Unauthorized, UnprocessableArgs,
    UnsupportedMediaType,
};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use errand_core::{
    ActionKind, NewTask, Policy, PrepareError, TaskId, TaskRecord, TaskState, TaskType,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa::openapi::schema::SchemaType;
use utoipa::openapi::{Object, ObjectBuilder, Type};

/// The longest idempotency key accepted, in characters.
const MAX_KEY_LEN: usize = 256;
/// The longest delay accepted: one year.
const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);
/// The longest attempt timeout accepted: one week.
const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most attempts a submission may ask for.
const MAX_ATTEMPTS: u32 = 1000;

/// The body of `POST /v1/tasks`: a task name, its arguments, and optional overrides of the
/// task's policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitRequest {
    /// A registered task name (see `GET /v1/task-types`).
    name: String,
    /// The task's arguments; they must match the schema of the task's arguments.
    #[schema(value_type = Value)]
    args: Box<RawValue>,
    /// Idempotency key (see [`key_schema`]).
    #[serde(default)]
    #[schema(schema_with = key_schema)]
    key: Option<String>,
    /// Seconds to wait before the first attempt (see [`delay_schema`]).
    #[serde(default)]
    #[schema(schema_with = delay_schema)]
    delay_s: Option<f64>,
    /// Attempts allowed (see [`max_attempts_schema`]): a JSON number, so that `3.0` is 3.
    #[serde(default)]
    #[schema(schema_with = max_attempts_schema)]
    max_attempts: Option<f64>,
    /// Time limit of one attempt in seconds (see [`timeout_schema`]).
    #[serde(default)]
    #[schema(schema_with = timeout_schema)]
    timeout_s: Option<f64>,
}

/// An optional field of `SubmitRequest`: of type `kind`, or `null` (taken as absent).
fn optional(kind: Type, description: String) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([kind, Type::Null]))
        .description(Some(description))
}

/// The schema of `SubmitRequest.key`.
fn key_schema() -> Object {
    optional(
        Type::String,
        format!(
            "Idempotency key of 1 to {MAX_KEY_LEN} characters, scoped to the caller: while a task submitted with it is live (not finished), submitting it again answers that task (200, `deduplicated: true`)."
        ),
    )
    .min_length(Some(1))
    .max_length(Some(MAX_KEY_LEN))
    .build()
}

/// The schema of a number of seconds from 0 (or above it) to `max`.
fn seconds_schema(max: Duration, allow_zero: bool, description: &str) -> Object {
    let builder =
        optional(Type::Number, description.to_string()).maximum(Some(max.as_secs() as f64));
    if allow_zero {
        builder.minimum(Some(0.0)).build()
    } else {
        builder.exclusive_minimum(Some(0.0)).build()
    }
}

/// The schema of `SubmitRequest.delay_s`.
fn delay_schema() -> Object {
    seconds_schema(
        MAX_DELAY,
        true,
        "Do not run before this many seconds have passed.",
    )
}

/// The schema of `SubmitRequest.timeout_s`.
fn timeout_schema() -> Object {
    seconds_schema(
        MAX_TIMEOUT,
        false,
        "Time limit of one attempt in seconds, instead of the task's default.",
    )
}

/// The schema of `SubmitRequest.max_attempts`.
fn max_attempts_schema() -> Object {
    optional(
        Type::Integer,
        "Attempts allowed, instead of the task's default (a whole number: `3.0` is 3).".into(),
    )
    .minimum(Some(1))
    .maximum(Some(MAX_ATTEMPTS))
    .build()
}

/// The answer to `POST /v1/tasks`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Submitted {
    /// The task's id.
    id: TaskId,
    /// Its state now.
    status: TaskState,
    /// Where its record is (`GET`).
    status_url: String,
    /// Where its events are (`GET`, Server-Sent Events).
    events_url: String,
    /// Whether this is an existing live task of the same `key`.
    deduplicated: bool,
}

/// Seconds given as a JSON number, checked against `max`.
fn seconds(field: &str, value: f64, max: Duration, allow_zero: bool) -> Result<Duration, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_body",
            format!(
                "`{field}` must be a number of seconds {} {} and {}",
                if allow_zero { "from" } else { "above" },
                0,
                max.as_secs()
            ),
        )
    };
    // Compared as the number given: converted to a Duration first, a value a fraction of a
    // nanosecond above the maximum would round down onto it and pass.
    if !value.is_finite()
        || value < 0.0
        || (!allow_zero && value == 0.0)
        || value > max.as_secs_f64()
    {
        return Err(bad());
    }
    Duration::try_from_secs_f64(value).map_err(|_| bad())
}

/// `max_attempts` given as a JSON number: a whole number (`3` or `3.0`) from 1 to
/// [`MAX_ATTEMPTS`].
fn attempts(value: f64) -> Result<u32, ApiError> {
    if value.fract() == 0.0 && (1.0..=f64::from(MAX_ATTEMPTS)).contains(&value) {
        // In range and whole, so the conversion is exact.
        Ok(value as u32)
    } else {
        Err(ApiError::bad_request(
            "invalid_body",
            format!("`max_attempts` must be a whole number from 1 to {MAX_ATTEMPTS}"),
        ))
    }
}

/// `POST /v1/tasks`: validates the arguments against the task's type, stores the task with
/// the caller's context, and answers 202 (or 200 with the live task of the same key).
#[utoipa::path(
    post,
    path = "/v1/tasks",
    operation_id = openapi::SUBMIT_TASK,
    tag = openapi::TASKS_TAG,
    summary = "Submit a task",
    description = "Checks `args` against the task's arguments and stores the task with the caller's context (who, tenant, request and correlation ids, trace context, allow-listed headers, and the token as a sealed credential). A `key` that matches a live task of the caller answers that task instead.",
    params(TraceHeaders),
    request_body(content = SubmitRequest, description = "One of the registered tasks: its `name`, its `args`, and optional overrides of its policy."),
    responses(
        (status = 202, response = inline(TaskAccepted)),
        (status = 200, response = inline(TaskDeduplicated)),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableArgs),
        (status = 503, response = StoreUnavailable),
    )
)]
pub(crate) async fn submit(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Json(request): Json<SubmitRequest>,
) -> Result<Response, ApiError> {
    if let Some(key) = &request.key
        && (key.is_empty() || key.chars().count() > MAX_KEY_LEN)
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("`key` must be 1 to {MAX_KEY_LEN} characters long"),
        ));
    }
    let delay = request
        .delay_s
        .map(|s| seconds("delay_s", s, MAX_DELAY, true))
        .transpose()?;
    let timeout = request
        .timeout_s
        .map(|s| seconds("timeout_s", s, MAX_TIMEOUT, false))
        .transpose()?;
    let max_attempts = request.max_attempts.map(attempts).transpose()?;

    let policy = policy_of(&app, &request.name, &request.args).await?;
    // With spans exported, the task's attempts are children of this request's span.
    let traced = errand_core::otel::submitted(caller.context());
    let mut task = NewTask::new(request.name, request.args)
        .with_policy(&policy)
        .with_context(traced.as_ref().unwrap_or(caller.context()), &app.seal_keys)
        .map_err(|e| {
            tracing::error!(error = %e, "sealing the caller's context failed");
            ApiError::internal()
        })?;
    task.key = request.key;
    task.delay = delay;
    if let Some(n) = max_attempts {
        task.max_attempts = n;
    }
    if let Some(timeout) = timeout {
        task.timeout = timeout;
    }
    let name = task.name.clone();
    let enqueued = app
        .store
        .enqueue(vec![task])
        .await
        .map_err(|e| app.store_error("enqueue", e))?;
    let Some(enqueued) = enqueued.into_iter().next() else {
        tracing::error!("the store answered an enqueue of one task with no result");
        return Err(ApiError::internal());
    };
    app.metrics.submitted(&name, enqueued.deduplicated);
    let span = tracing::Span::current();
    let (user, tenant) = (caller.context().user_id(), caller.tenant());
    errand_core::otel::set_task_attributes(&span, enqueued.id, &name, user, tenant);
    tracing::info!(task_id = %enqueued.id, task = %name, deduplicated = enqueued.deduplicated, "task submitted");
    let status_url = format!("/v1/tasks/{}", enqueued.id);
    let body = Submitted {
        id: enqueued.id,
        status: enqueued.status,
        events_url: format!("{status_url}/events"),
        status_url: status_url.clone(),
        deduplicated: enqueued.deduplicated,
    };
    let status = if enqueued.deduplicated {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, [(header::LOCATION, status_url)], Json(body)).into_response())
}

/// The policy of task `name` for `args`: a Rust task of the registry (its arguments
/// deserialized), else a remote task type (its arguments checked against its schema); 422
/// for an unknown name or arguments that do not fit.
async fn policy_of(app: &AppState, name: &str, args: &RawValue) -> Result<Policy, ApiError> {
    match app.registry.prepare(name, args) {
        Ok(prepared) => Ok(prepared.policy),
        Err(PrepareError::Unknown(_)) => {
            let remote = app
                .task_types
                .get(&*app.store, name)
                .await
                .map_err(|e| app.store_error("task_types", e))?;
            let Some(t) = remote else {
                return Err(PrepareError::Unknown(name.to_string()).into());
            };
            let invalid = |message: String| {
                ApiError::from(PrepareError::InvalidArgs {
                    task: name.to_string(),
                    message,
                })
            };
            let value: serde_json::Value =
                serde_json::from_str(args.get()).map_err(|e| invalid(e.to_string()))?;
            app.validators
                .validate(&t.name, &t.args_schema, &value)
                .map_err(invalid)?;
            Ok(t.policy())
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /v1/tasks/{id}`: the task's record.
#[utoipa::path(
    get,
    path = "/v1/tasks/{id}",
    operation_id = openapi::GET_TASK,
    tag = openapi::TASKS_TAG,
    summary = "A task's record",
    params(TaskPath, TraceHeaders),
    responses(
        (status = 200, description = "The record: status, owner, times, attempts, progress, steps, error, result.", body = TaskRecord),
        TaskRouteErrors,
    )
)]
pub(crate) async fn get(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    TaskPath(id): TaskPath,
) -> Result<Json<TaskRecord>, ApiError> {
    app.visible_record(&caller, id).await.map(Json)
}

/// `POST /v1/tasks/{id}/cancel`: a waiting task is cancelled at once, a running one is asked
/// to stop (202 either way); a finished one is a 409.
#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/cancel",
    operation_id = openapi::CANCEL_TASK,
    tag = openapi::TASKS_TAG,
    summary = "Cancel a task",
    description = "A waiting task (pending, scheduled, retrying) is cancelled at once; a running task's cancellation token fires and its record ends `cancelled`. A finished task is a 409.",
    params(TaskPath, TraceHeaders),
    responses(
        (status = 202, response = inline(TaskCancelled)),
        (status = 409, response = Conflict),
        TaskRouteErrors,
    )
)]
pub(crate) async fn cancel(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    TaskPath(id): TaskPath,
) -> Result<Response, ApiError> {
    acted(
        actions::act(&app, &caller, id, ActionKind::Cancel).await?,
        id,
        ActionKind::Cancel,
    )
}

/// `POST /v1/tasks/{id}/retry`: a failed or cancelled task runs again with its original
/// context (202); any other state is a 409.
#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/retry",
    operation_id = openapi::RETRY_TASK,
    tag = openapi::TASKS_TAG,
    summary = "Run a failed or cancelled task again",
    description = "The task goes back to `pending` with a fresh set of attempts and its original context. Any other state is a 409.",
    params(TaskPath, TraceHeaders),
    responses(
        (status = 202, response = inline(TaskRequeued)),
        (status = 409, response = Conflict),
        TaskRouteErrors,
    )
)]
pub(crate) async fn retry(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    TaskPath(id): TaskPath,
) -> Result<Response, ApiError> {
    acted(
        actions::act(&app, &caller, id, ActionKind::Retry).await?,
        id,
        ActionKind::Retry,
    )
}

/// The answer of a single-task cancel or retry: 202 with the record, 409, or 404.
fn acted(acted: Acted, id: TaskId, action: ActionKind) -> Result<Response, ApiError> {
    match acted {
        Acted::Done(outcome, record) => {
            let outcome = outcome.as_str();
            tracing::info!(task_id = %id, status = %record.status, outcome, "task acted on by request");
            Ok((StatusCode::ACCEPTED, Json(*record)).into_response())
        }
        Acted::Conflict(state) => Err(ApiError::conflict(actions::conflict_message(
            id, action, state,
        ))),
        Acted::NotFound => Err(ApiError::not_found()),
    }
}

/// The answer of `GET /v1/task-types`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskTypes {
    /// The registered tasks, by name.
    items: Vec<TaskType>,
}

/// `GET /v1/task-types`: the registered task names with the JSON schema of their arguments.
#[utoipa::path(
    get,
    path = "/v1/task-types",
    operation_id = "listTaskTypes",
    tag = openapi::TASKS_TAG,
    summary = "The registered tasks with the JSON schema of their arguments",
    params(TraceHeaders),
    responses(
        (status = 200, description = "The task types: the server's Rust tasks (their schemas are also this document's `<task>Args` components) and the types remote workers registered.", body = TaskTypes),
        (status = 401, response = Unauthorized),
        (status = 503, response = StoreUnavailable),
    )
)]
pub(crate) async fn task_types(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
) -> Result<Json<TaskTypes>, ApiError> {
    let mut items = app.registry.task_types();
    let remote = app
        .task_types
        .all(&*app.store)
        .await
        .map_err(|e| app.store_error("task_types", e))?;
    items.extend(remote.into_values().map(TaskType::from));
    Ok(Json(TaskTypes { items }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_checked() {
        let max = Duration::from_secs(10);
        assert_eq!(
            seconds("d", 1.5, max, true).expect("ok"),
            Duration::from_millis(1500)
        );
        assert_eq!(seconds("d", 0.0, max, true).expect("ok"), Duration::ZERO);
        assert!(seconds("d", 0.0, max, false).is_err());
        assert!(seconds("d", -1.0, max, true).is_err());
        assert!(seconds("d", 11.0, max, true).is_err());
        assert_eq!(
            seconds("d", 10.0, max, true).expect("the maximum itself"),
            max
        );
        // Above the maximum by less than a nanosecond: the schema's `maximum` refuses it too.
        assert!(
            seconds(
                "d",
                604_800.000_000_000_1,
                Duration::from_secs(604_800),
                false
            )
            .is_err()
        );
        assert!(seconds("d", f64::NAN, max, true).is_err());
    }

    #[test]
    fn attempts_are_whole_numbers_in_range() {
        assert_eq!(attempts(3.0).expect("ok"), 3);
        assert_eq!(attempts(926.0).expect("ok"), 926);
        assert_eq!(attempts(1000.0).expect("ok"), 1000);
        for bad in [0.0, 2.5, 1001.0, -1.0, 1e300, f64::NAN, f64::INFINITY] {
            assert!(attempts(bad).is_err(), "{bad}");
        }
    }
}
