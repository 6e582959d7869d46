//! The worker protocol's routes (`docs/worker-protocol.md`): remote workers register their
//! task types, claim tasks (long poll), heartbeat their leases and complete their attempts.
//! Only tokens holding the `worker` role may use them ([`Worker`] answers 403 to others).

use crate::caller::Caller;
use crate::error::ApiError;
use crate::extract::Json;
use crate::openapi::{self, TaskTypeConflict, WorkerRouteErrors};
use crate::state::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use errand_core::remote::types::{RemoteTaskType, TypeError};
use errand_core::remote::wire::{
    self, ClaimSpec, Claimed, Completed, Completions, Heartbeat, Renewed,
};
use errand_core::{RemoteError, RemoteWorkers};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// The caller of a worker route: a token holding the `worker` role.
pub(crate) struct Worker {
    /// The worker's name (the token's user claim).
    name: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Worker {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        match caller.worker() {
            Some(name) => Ok(Worker {
                name: name.to_string(),
            }),
            None => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "not_a_worker",
                "this route is for workers: use a token holding the `worker` role (`errand token --worker NAME`)",
            )),
        }
    }
}

fn runtime(app: &AppState) -> Result<&Arc<RemoteWorkers>, ApiError> {
    app.remote.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "workers_disabled",
            "this server runs no remote workers",
        )
    })
}

fn remote_error(app: &AppState, operation: &'static str, e: RemoteError) -> ApiError {
    match e {
        RemoteError::Invalid(message) => ApiError::bad_request("invalid_body", message),
        RemoteError::ShuttingDown => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "this server is shutting down; claim from another one, or again after it restarts",
        ),
        RemoteError::Store(e) => app.store_error(operation, e),
    }
}

/// The body of `PUT /v1/worker/task-types`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TypesRequest {
    /// The worker's task types; each replaces a type of the same name.
    types: Vec<RemoteTaskType>,
}

/// Every remote task type now known.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TypesAnswer {
    /// By name.
    types: Vec<RemoteTaskType>,
}

/// `PUT /v1/worker/task-types`: registers the worker's task types in the store.
#[utoipa::path(
    put,
    path = "/v1/worker/task-types",
    operation_id = "registerTaskTypes",
    tag = openapi::WORKERS_TAG,
    summary = "Register the worker's task types",
    description = "Keeps each type (name, JSON Schema of its arguments, queue, policy) in the task store, so that every server checks submissions against it and lists it, with or without a worker connected. A type of the same name is replaced.",
    request_body = TypesRequest,
    responses(
        (status = 200, description = "Every remote task type now known, with defaults filled in.", body = TypesAnswer),
        (status = 409, response = TaskTypeConflict),
        WorkerRouteErrors,
    )
)]
pub(crate) async fn register_types(
    State(app): State<Arc<AppState>>,
    worker: Worker,
    Json(request): Json<TypesRequest>,
) -> Result<Json<TypesAnswer>, ApiError> {
    if request.types.is_empty() || request.types.len() > wire::MAX_BATCH {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("`types` must hold 1 to {} task types", wire::MAX_BATCH),
        ));
    }
    for t in &request.types {
        if app.registry.contains(&t.name) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "task_type_conflict",
                format!(
                    "{:?} is a Rust task of this server; give the remote type another name",
                    t.name
                ),
            ));
        }
        app.validators
            .check_schema(&t.args_schema)
            .map_err(|message| {
                ApiError::bad_request(
                    "invalid_schema",
                    format!(
                        "task type {:?}: `args_schema` is not a valid JSON Schema: {message}",
                        t.name
                    ),
                )
            })?;
    }
    let names: Vec<String> = request.types.iter().map(|t| t.name.clone()).collect();
    let table = app
        .task_types
        .register(&*app.store, request.types)
        .await
        .map_err(|e| match e {
            TypeError::Invalid { .. } => ApiError::bad_request("invalid_body", e.to_string()),
            TypeError::Store(e) => app.store_error("register_task_types", e),
        })?;
    tracing::info!(worker = %worker.name, types = ?names, "task types registered");
    Ok(Json(TypesAnswer {
        types: table.into_values().collect(),
    }))
}

/// `POST /v1/worker/claim`: takes tasks for the worker, waiting for work up to `wait_s`.
#[utoipa::path(
    post,
    path = "/v1/worker/claim",
    operation_id = "claimTasks",
    tag = openapi::WORKERS_TAG,
    summary = "Claim tasks (long poll)",
    description = "Answers as soon as tasks of the named types are claimed (a submission wakes a waiting claim at once), or with no tasks after `wait_s`. Each task comes with its lease token and deadline, its timeout, and its context in clear (the credential only while unexpired).",
    request_body = ClaimSpec,
    responses(
        (status = 200, description = "The claimed tasks (none when no work came within `wait_s`).", body = Claimed),
        WorkerRouteErrors,
    )
)]
pub(crate) async fn claim(
    State(app): State<Arc<AppState>>,
    worker: Worker,
    Json(spec): Json<ClaimSpec>,
) -> Result<Json<Claimed>, ApiError> {
    let remote = runtime(&app)?;
    let types = app
        .task_types
        .all(&*app.store)
        .await
        .map_err(|e| app.store_error("task_types", e))?;
    let tasks = tokio::select! {
        claimed = remote.claim(&worker.name, &spec, &types) => claimed.map_err(|e| remote_error(&app, "claim", e))?,
        () = app.shutdown.cancelled() => Vec::new(),
    };
    if !tasks.is_empty() {
        tracing::debug!(worker = %worker.name, tasks = tasks.len(), "tasks handed to a remote worker");
    }
    Ok(Json(Claimed { tasks }))
}

/// `POST /v1/worker/heartbeat`: renews the worker's leases, with what their tasks reported.
#[utoipa::path(
    post,
    path = "/v1/worker/heartbeat",
    operation_id = "heartbeat",
    tag = openapi::WORKERS_TAG,
    summary = "Renew leases and report progress and steps",
    description = "One call for every task the worker runs. Answers, per lease, whether the attempt is still the worker's and whether its cancellation was requested.",
    request_body = Heartbeat,
    responses(
        (status = 200, description = "One answer per lease, in order.", body = Renewed),
        WorkerRouteErrors,
    )
)]
pub(crate) async fn heartbeat(
    State(app): State<Arc<AppState>>,
    worker: Worker,
    Json(beat): Json<Heartbeat>,
) -> Result<Json<Renewed>, ApiError> {
    let remote = runtime(&app)?;
    if beat.leases.len() > wire::MAX_BATCH {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("at most {} leases per heartbeat", wire::MAX_BATCH),
        ));
    }
    if beat
        .leases
        .iter()
        .any(|l| l.report.steps.len() > wire::MAX_STEP_CHANGES)
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("at most {} step changes per lease", wire::MAX_STEP_CHANGES),
        ));
    }
    Ok(Json(Renewed {
        leases: remote.heartbeat(&worker.name, beat.worker.as_ref(), &beat.leases),
    }))
}

/// `POST /v1/worker/complete`: ends the worker's attempts with their outcomes.
#[utoipa::path(
    post,
    path = "/v1/worker/complete",
    operation_id = "completeTasks",
    tag = openapi::WORKERS_TAG,
    summary = "Complete attempts",
    description = "Success with a result, failure (retried while attempts remain when retryable), cancelled, or released (handed back without spending the attempt). Answers, per completion, whether it was written under the attempt's lease or refused as no longer current (`fenced`).",
    request_body = Completions,
    responses(
        (status = 200, description = "One answer per completion, in order.", body = Completed),
        WorkerRouteErrors,
    )
)]
pub(crate) async fn complete(
    State(app): State<Arc<AppState>>,
    worker: Worker,
    Json(done): Json<Completions>,
) -> Result<Json<Completed>, ApiError> {
    let remote = runtime(&app)?;
    if done.completions.len() > wire::MAX_BATCH {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("at most {} completions per call", wire::MAX_BATCH),
        ));
    }
    let results = remote.complete(done.completions).await;
    let fenced = results.iter().filter(|r| r.fenced).count();
    if fenced > 0 {
        tracing::warn!(worker = %worker.name, fenced, "completions refused: their attempts are no longer current");
    }
    Ok(Json(Completed { results }))
}
