//! Unauthenticated operational routes: liveness, readiness, metrics and the OpenAPI document.

use crate::error::ApiError;
use crate::extract::Json;
use crate::openapi::OPENAPI_JSON;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// `GET /healthz`: the process answers.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the store answers; 503 when it does not.
pub(crate) async fn readyz(State(app): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    match app.store.ping().await {
        Ok(()) => Ok(Json(json!({ "status": "ready" }))),
        Err(e) => {
            app.metrics.store_error("ping", &e);
            tracing::warn!(error = %e, "readiness check: task store does not answer");
            Err(ApiError::store_unavailable())
        }
    }
}

/// `GET /metrics`: Prometheus text. Answers 200 even when the store is down (its gauges are
/// then absent and `errand_store_up` is 0).
pub(crate) async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let depth = match app.store.depth().await {
        Ok(depth) => Some(depth),
        Err(e) => {
            app.metrics.store_error("depth", &e);
            None
        }
    };
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(depth),
    )
        .into_response()
}

/// `GET /openapi.json`: the API's OpenAPI 3.1 document.
pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}
