//! Unauthenticated operational routes: liveness, readiness, metrics and the OpenAPI document.

use crate::error::ApiError;
use crate::extract::Json;
use crate::openapi::{self, StoreBroken, StoreUnavailable};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use errand_core::TaskType;
use prometheus_client::encoding::prometheus_text;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// The answer of `GET /healthz` and `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok` from `/healthz`, `ready` from `/readyz`.
    status: HealthStatus,
    /// From `/readyz`: settings of the store that put tasks at risk (Redis evicting keys,
    /// persistence off), as sentences for operators. Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// What `GET /healthz` and `GET /readyz` say.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HealthStatus {
    /// The process answers.
    Ok,
    /// The store answers.
    Ready,
}

/// `GET /healthz`: the process answers and can still write through its store; 503 when a
/// part of the store inside this process died (SQLite's writer thread), which a restart fixes.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = openapi::OPERATIONS_TAG,
    summary = "Liveness: the process answers and can write through its store",
    security(()),
    responses(
        (status = 200, description = "The process answers and can write through its store (which may still be unreachable: see /readyz).", body = Health),
        (status = 503, response = StoreBroken),
    )
)]
pub(crate) async fn healthz(State(app): State<Arc<AppState>>) -> Result<Json<Health>, ApiError> {
    match app.store.healthy().await {
        Ok(()) => Ok(Json(Health {
            status: HealthStatus::Ok,
            warnings: Vec::new(),
        })),
        Err(e) => {
            tracing::error!(error = %e, "liveness check: this process can no longer write through its task store");
            Err(ApiError::store_broken())
        }
    }
}

/// `GET /readyz`: the store answers; 503 when it does not.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = openapi::OPERATIONS_TAG,
    summary = "Readiness: the task store answers (with warnings about settings that lose tasks)",
    security(()),
    responses(
        (status = 200, description = "The task store answers.", body = Health),
        (status = 503, response = StoreUnavailable),
    )
)]
pub(crate) async fn readyz(State(app): State<Arc<AppState>>) -> Result<Json<Health>, ApiError> {
    match app.store.ping().await {
        Ok(()) => Ok(Json(Health {
            status: HealthStatus::Ready,
            warnings: app.store.warnings().await.unwrap_or_else(|e| {
                tracing::debug!(error = %e, "readiness check: the store's settings could not be read");
                Vec::new()
            }),
        })),
        Err(e) => {
            app.metrics.store_error("ping", &e);
            tracing::warn!(error = %e, "readiness check: task store does not answer");
            Err(ApiError::store_unavailable())
        }
    }
}

/// `GET /metrics`: Prometheus text. Answers 200 even when the store is down (its gauges are
/// then absent and `errand_store_up` is 0).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = openapi::OPERATIONS_TAG,
    summary = "Prometheus metrics (text format 0.0.4)",
    security(()),
    responses((
        status = 200,
        description = "errand_http_requests_total, errand_http_request_duration_seconds, errand_tasks_submitted_total, errand_tasks_deduplicated_total, errand_store_errors_total, errand_auth_failures_total, errand_event_streams_open, errand_event_streams_refused_total, errand_store_tasks and errand_store_up (the store's depth is read at most once a second); errand_task_duration_seconds and errand_task_queue_wait_seconds when a worker in this process reports its attempts. Answered even when the store is down (`errand_store_up 0`, no `errand_store_tasks`).",
        content_type = "text/plain",
        body = String,
    ))
)]
pub(crate) async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let text = app.metrics.render(&*app.store).await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// `GET /openapi.json`: the API's OpenAPI 3.1 document, built when the server was created.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = openapi::OPERATIONS_TAG,
    summary = "This document (OpenAPI 3.1)",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of errand's routes and registered tasks.", body = Object))
)]
pub(crate) async fn openapi_document(State(app): State<Arc<AppState>>) -> Response {
    // The remote workers' task types are the store's: read at most every 2 s, and added to
    // the document when there are any.
    let remote = match app.task_types.all(&*app.store).await {
        Ok(remote) => remote,
        Err(e) => {
            app.metrics.store_error("task_types", &e);
            Default::default()
        }
    };
    let body = if remote.is_empty() {
        app.openapi.clone()
    } else {
        let mut tasks = app.registry.task_types();
        tasks.extend(remote.into_values().map(TaskType::from));
        let doc = openapi::with_tasks(app.routes_document.clone(), &tasks);
        axum::body::Bytes::from(doc.to_string())
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
