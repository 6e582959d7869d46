//! [`ApiError`]: every error the API answers, as one JSON shape `{"error": {"code", "message"}}`
//! with the right status.
//!
//! Errors come from three places, and all end up in that shape:
//! - errand's handlers and extractors return an [`ApiError`];
//! - axum's own plain-text answers (405, the rejections of extractors an application route
//!   uses directly) are rewritten by the [`json_errors`] middleware;
//! - a panicking handler is caught and answered by [`panic_response`] (500).

use crate::token::TokenError;
use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use errand_core::{PrepareError, StoreError};
use serde::Serialize;
use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use utoipa::ToSchema;

/// An error answer of the API: a status, a stable machine-readable `code` and a message for
/// people. Application routes merged with [`Server::routes`](crate::Server::routes) return it
/// too, so clients see one error shape everywhere.
///
/// ```
/// use axum::http::StatusCode;
/// let e = errand_server::ApiError::not_found();
/// assert_eq!(e.status(), StatusCode::NOT_FOUND);
/// assert_eq!(e.code(), "not_found");
/// ```
#[derive(Clone)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    /// Extra headers of the answer (`WWW-Authenticate`, `Retry-After`).
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// The JSON of every error answer.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorEnvelope<'a> {
    /// What went wrong.
    #[schema(inline)]
    error: ErrorBody<'a>,
}

/// The error of an error answer.
#[derive(Serialize, ToSchema)]
struct ErrorBody<'a> {
    /// Stable and machine-readable, e.g. `not_found`, `invalid_body`.
    code: &'a str,
    /// What is wrong, for people.
    message: &'a str,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no usable credentials. Carries the `WWW-Authenticate: Bearer` challenge.
    pub fn unauthorized(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, code, message);
        let challenge = if e.code == "missing_token" {
            HeaderValue::from_static("Bearer")
        } else {
            HeaderValue::from_static("Bearer error=\"invalid_token\"")
        };
        e.headers.push((header::WWW_AUTHENTICATE, challenge));
        e
    }

    /// 404: the thing does not exist, or is not the caller's (the two are indistinguishable on
    /// purpose).
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such task (it does not exist, expired, or is not yours)",
        )
    }

    /// 409: the thing's state does not allow the operation.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 500, with a message that reveals nothing; log the cause before calling this.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle the request; it has been logged",
        )
    }

    /// This error with `Retry-After: <seconds>`.
    fn retry_after(mut self, seconds: &'static str) -> Self {
        self.headers
            .push((header::RETRY_AFTER, HeaderValue::from_static(seconds)));
        self
    }

    /// 429: the caller has too many event streams open (or the server has). Carries
    /// `Retry-After`.
    pub fn too_many_streams(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", message).retry_after("5")
    }

    /// 503: the task store cannot be reached. Carries `Retry-After`.
    pub fn store_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the task store is unavailable; try again shortly",
        )
        .retry_after("1")
    }

    /// 503: this process can no longer write through its task store (a part of the store in
    /// this process died); restarting the process fixes it.
    pub fn store_broken() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_broken",
            "this process can no longer write through its task store; it needs a restart",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// An error for a status that was produced without a code (axum's own answers).
    fn from_status(status: StatusCode, message: String) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_server_error() => "internal",
            _ => "error",
        };
        let message = if message.trim().is_empty() {
            status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_string()
        } else {
            message.trim().to_string()
        };
        Self::new(status, code, message)
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.status.as_u16())
            .field("code", &self.code)
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: &self.code,
                message: &self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}

impl From<TokenError> for ApiError {
    /// 401, except 503 when the identity provider's keys could not be fetched.
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::KeysUnavailable => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string())
                    .retry_after("5")
            }
            _ => ApiError::unauthorized(e.code(), e.to_string()),
        }
    }
}

impl From<PrepareError> for ApiError {
    fn from(e: PrepareError) -> Self {
        let code = match e {
            PrepareError::Unknown(_) => "unknown_task",
            PrepareError::InvalidArgs { .. } => "invalid_args",
        };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    /// 503 for an unreachable store, 400 for a request the store cannot hold, 500 (logged)
    /// otherwise. The store's own words never reach the client: they describe the store, not
    /// the request, and are logged instead.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ApiError::store_unavailable(),
            StoreError::Invalid(_) => {
                tracing::warn!(error = %e, "task store refused a request");
                ApiError::bad_request(
                    "invalid_request",
                    "the task store cannot hold this request (a value may be too large)",
                )
            }
            StoreError::Corrupt(_) | StoreError::Backend(_) => {
                tracing::error!(error = %e, "task store failed");
                ApiError::internal()
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let message = r.body_text();
        match r {
            JsonRejection::JsonSyntaxError(_) => ApiError::bad_request("invalid_json", message),
            JsonRejection::JsonDataError(_) => ApiError::bad_request("invalid_body", message),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a JSON body with `Content-Type: application/json`",
            ),
            other => {
                let status = other.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(status, "payload_too_large", "the request body is too large")
                } else {
                    ApiError::from_status(status, message)
                }
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        match r {
            PathRejection::FailedToDeserializePathParams(e) => {
                ApiError::bad_request("invalid_path", e.body_text())
            }
            other => {
                tracing::error!(rejection = %other.body_text(), "route has no such path parameter");
                ApiError::internal()
            }
        }
    }
}

/// The largest plain-text error body that [`json_errors`] carries over as a message.
const MAX_REWRITTEN_BODY: usize = 4 * 1024;

/// Rewrites error responses that are not JSON (axum's own 405s and extractor rejections in
/// application routes) into the `{"error": {...}}` shape, keeping status and headers.
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REWRITTEN_BODY).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let rewritten = ApiError::from_status(status, text).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let (new_parts, new_body) = rewritten.into_parts();
    parts.headers.extend(new_parts.headers);
    Response::from_parts(parts, new_body)
}

/// The answer to a panicking handler: a logged, opaque 500. The server goes on serving.
pub(crate) fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".into());
    tracing::error!(panic = %message, "a request handler panicked");
    ApiError::internal().into_response()
}

/// The 404 of paths no route matches.
pub(crate) async fn no_route(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route for {} {}",
            request.method(),
            request.uri().path().chars().take(200).collect::<String>()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(e: ApiError) -> (StatusCode, serde_json::Value) {
        let response = e.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn shape_is_code_and_message() {
        let (status, json) = body_json(ApiError::conflict("task is success")).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "conflict", "message": "task is success"}})
        );
    }

    #[tokio::test]
    async fn store_errors_map_to_statuses() {
        let e: ApiError = StoreError::Unavailable("refused".into()).into();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let response = e.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let e: ApiError =
            StoreError::Invalid("UNIQUE constraint failed: tasks.id in /srv/errand.db".into())
                .into();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.code(), "invalid_request");
        assert!(
            !e.message().contains("UNIQUE") && !e.message().contains("/srv"),
            "the store's words stay out of the answer: {}",
            e.message()
        );
        let e: ApiError = StoreError::Backend("disk".into()).into();
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message().contains("disk"));
    }

    #[tokio::test]
    async fn unauthorized_carries_the_bearer_challenge() {
        let response = ApiError::from(TokenError::Signature).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
    }

    #[test]
    fn panic_payloads_become_an_opaque_500() {
        let response = panic_response(Box::new("boom"));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let response = panic_response(Box::new(42u8));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
