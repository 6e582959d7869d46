//! The task routes: submit, read, list, cancel, retry, and the registered task types.
//!
//! Every route is scoped to the caller: a task owned by someone else answers exactly like a
//! task that does not exist (404), and a listing holds only the caller's tasks, unless the
//! caller is an admin.

use crate::caller::Caller;
use crate::error::ApiError;
use crate::extract::{Json, Query, TaskPath};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use errand_core::{
    CancelOutcome, ListQuery, NewTask, RetryOutcome, TaskId, TaskRecord, TaskState, TaskType,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;

/// The longest idempotency key accepted.
const MAX_KEY_LEN: usize = 256;
/// The longest delay accepted: one year.
const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);
/// The longest attempt timeout accepted: one week.
const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most attempts a submission may ask for.
const MAX_ATTEMPTS: u32 = 1000;
/// The largest page of a listing.
const MAX_PAGE: usize = 1000;

/// The body of `POST /v1/tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitRequest {
    name: String,
    args: Box<RawValue>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    delay_s: Option<f64>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    timeout_s: Option<f64>,
}

/// The answer to `POST /v1/tasks`.
#[derive(Debug, Serialize)]
pub(crate) struct Submitted {
    id: TaskId,
    status: TaskState,
    status_url: String,
    events_url: String,
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
    if !value.is_finite() || value < 0.0 || (!allow_zero && value == 0.0) {
        return Err(bad());
    }
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| *d <= max)
        .ok_or_else(bad)
}

/// `POST /v1/tasks`: validates the arguments against the task's type, stores the task with
/// the caller's context, and answers 202 (or 200 with the live task of the same key).
pub(crate) async fn submit(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Json(request): Json<SubmitRequest>,
) -> Result<Response, ApiError> {
    if let Some(key) = &request.key
        && (key.is_empty() || key.len() > MAX_KEY_LEN)
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("`key` must be 1 to {MAX_KEY_LEN} bytes long"),
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
    if let Some(n) = request.max_attempts
        && !(1..=MAX_ATTEMPTS).contains(&n)
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("`max_attempts` must be from 1 to {MAX_ATTEMPTS}"),
        ));
    }

    let prepared = app.registry.prepare(&request.name, &request.args)?;
    let mut task = NewTask::new(request.name, request.args)
        .with_policy(&prepared.policy)
        .with_context(caller.context(), &app.seal_key)
        .map_err(|e| {
            tracing::error!(error = %e, "sealing the caller's context failed");
            ApiError::internal()
        })?;
    task.key = request.key;
    task.delay = delay;
    if let Some(n) = request.max_attempts {
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

/// `GET /v1/tasks/{id}`: the task's record.
pub(crate) async fn get(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    TaskPath(id): TaskPath,
) -> Result<Json<TaskRecord>, ApiError> {
    app.visible_record(&caller, id).await.map(Json)
}

/// The query of `GET /v1/tasks`, as text so each field's error can say what is wrong.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    status: Option<String>,
    name: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A page of `GET /v1/tasks`.
#[derive(Debug, Serialize)]
pub(crate) struct TaskPage {
    items: Vec<TaskRecord>,
    next_cursor: Option<TaskId>,
}

/// A query parameter, with an empty value taken as absent.
fn present(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// `GET /v1/tasks`: the caller's tasks (everyone's for an admin), newest first.
pub(crate) async fn list(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<TaskPage>, ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_query", message);
    let mut query = ListQuery::owner(caller.owner_filter());
    query.status = present(params.status)
        .map(|s| s.parse::<TaskState>())
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
    query.name = present(params.name);
    if let Some(limit) = present(params.limit) {
        query.limit = limit
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "`limit` must be a whole number from 1 to {MAX_PAGE}"
                ))
            })?;
    }
    query.cursor = present(params.cursor)
        .map(|c| c.parse::<TaskId>())
        .transpose()
        .map_err(|e| {
            invalid(format!(
                "`cursor` is not a cursor from a previous page: {e}"
            ))
        })?;
    let page = app
        .store
        .list(&query)
        .await
        .map_err(|e| app.store_error("list", e))?;
    Ok(Json(TaskPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// `POST /v1/tasks/{id}/cancel`: a waiting task is cancelled at once, a running one is asked
/// to stop (202 either way); a finished one is a 409.
pub(crate) async fn cancel(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    TaskPath(id): TaskPath,
) -> Result<Response, ApiError> {
    app.visible_record(&caller, id).await?;
    let outcome = app
        .store
        .cancel(id)
        .await
        .map_err(|e| app.store_error("cancel", e))?;
    match outcome {
        CancelOutcome::Cancelled(record) | CancelOutcome::Requested(record) => {
            tracing::info!(task_id = %id, status = %record.status, "task cancel requested");
            Ok((StatusCode::ACCEPTED, Json(*record)).into_response())
        }
        CancelOutcome::Conflict(state) => Err(ApiError::conflict(format!(
            "task {id} is {state}; only pending, scheduled, retrying or running tasks can be cancelled"
        ))),
        CancelOutcome::NotFound => Err(ApiError::not_found()),
    }
}

/// `POST /v1/tasks/{id}/retry`: a failed or cancelled task runs again with its original
/// context (202); any other state is a 409.
pub(crate) async fn retry(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    TaskPath(id): TaskPath,
) -> Result<Response, ApiError> {
    app.visible_record(&caller, id).await?;
    let outcome = app
        .store
        .retry(id)
        .await
        .map_err(|e| app.store_error("retry", e))?;
    match outcome {
        RetryOutcome::Requeued(record) => {
            tracing::info!(task_id = %id, "task requeued by request");
            Ok((StatusCode::ACCEPTED, Json(*record)).into_response())
        }
        RetryOutcome::Conflict(state) => Err(ApiError::conflict(format!(
            "task {id} is {state}; only failed or cancelled tasks can be retried"
        ))),
        RetryOutcome::NotFound => Err(ApiError::not_found()),
    }
}

/// The answer of `GET /v1/task-types`.
#[derive(Debug, Serialize)]
pub(crate) struct TaskTypes {
    items: Vec<TaskType>,
}

/// `GET /v1/task-types`: the registered task names with the JSON schema of their arguments.
pub(crate) async fn task_types(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
) -> Json<TaskTypes> {
    Json(TaskTypes {
        items: app.registry.task_types(),
    })
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
        assert!(seconds("d", f64::NAN, max, true).is_err());
    }
}
