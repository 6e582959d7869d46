//! Extractors whose rejections answer in errand's JSON error shape, for errand's handlers and
//! for application routes: [`Json`], [`Query`], [`Path`].
//!
//! They behave like axum's extractors of the same name; only the error answers differ (400 for
//! malformed JSON, bodies, queries and paths, 413 for a body over the limit, 415 for a missing
//! JSON content type).

use crate::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts};
use axum::response::{IntoResponse, Response};
use errand_core::TaskId;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::{IntoParams, PartialSchema};

/// A JSON body (extractor) or JSON answer (response). See the [module docs](self).
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string deserialized into `T`. See the [module docs](self).
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Path parameters deserialized into `T`. See the [module docs](self).
#[derive(Debug, Clone, Copy, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// The `{id}` of a task route, parsed as a [`TaskId`]; 400 `invalid_id` when it is not one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskPath(pub TaskId);

impl IntoParams for TaskPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(TaskId::schema()))
                .description(Some("The task's id (a UUID)."))
                .build(),
        ]
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TaskPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        raw.parse::<TaskId>()
            .map(TaskPath)
            .map_err(|e| ApiError::bad_request("invalid_id", e.to_string()))
    }
}
