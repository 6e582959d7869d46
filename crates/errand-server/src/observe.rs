//! The outermost layer of every route: request and correlation ids, the request's log line and
//! its metrics.
//!
//! `x-request-id` is taken from the request when it is a sane id (1 to 128 visible ASCII
//! characters) and generated (UUIDv7) otherwise; `x-correlation-id` is taken, or set equal to
//! the request id. Both are echoed on every response, errors and panics included.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tracing::Instrument;

/// The request id header.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// The correlation id header.
pub const CORRELATION_ID_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

/// The longest request or correlation id taken from a client.
pub(crate) const MAX_ID_LEN: usize = 128;

/// The ids of the request being served, for the context layer.
#[derive(Debug, Clone)]
pub(crate) struct RequestIds {
    pub request_id: String,
    pub correlation_id: String,
}

/// Where the context layer leaves the authenticated user for the request's log line.
#[derive(Debug, Clone, Default)]
pub(crate) struct UserSlot(Arc<OnceLock<String>>);

impl UserSlot {
    /// Records the request's user.
    pub fn set(&self, user: &str) {
        let _ = self.0.set(user.to_string());
    }
}

/// A client-supplied id, if it is one errand can carry and echo safely.
fn client_id(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    let sane = !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value.bytes().all(|b| b.is_ascii_graphic());
    sane.then(|| value.to_string())
}

/// Sets the ids, runs the request in a span carrying them, then logs and counts it.
pub(crate) async fn observe(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // A clone shares the template (no allocation per request).
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let request_id = client_id(request.headers(), &REQUEST_ID_HEADER)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let correlation_id =
        client_id(request.headers(), &CORRELATION_ID_HEADER).unwrap_or_else(|| request_id.clone());
    let user = UserSlot::default();
    request.extensions_mut().insert(RequestIds {
        request_id: request_id.clone(),
        correlation_id: correlation_id.clone(),
    });
    request.extensions_mut().insert(user.clone());

    let span = tracing::info_span!(
        "http_request",
        %method,
        %route,
        %request_id,
        %correlation_id,
        user_id = tracing::field::Empty,
    );
    // With spans exported, the request joins its caller's trace (W3C `traceparent`).
    let traceparent = request.headers().get("traceparent");
    errand_core::otel::join(&span, traceparent.and_then(|v| v.to_str().ok()));
    let mut response = next.run(request).instrument(span).await;

    let headers = response.headers_mut();
    for (name, value) in [
        (REQUEST_ID_HEADER, &request_id),
        (CORRELATION_ID_HEADER, &correlation_id),
    ] {
        // Both ids are visible ASCII (checked or generated), so this always succeeds.
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    let latency = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.request(&method, route, status, latency);
    let user_id = user.0.get().map_or("-", String::as_str);
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if response.status().is_server_error() {
        tracing::error!(%method, %route, status, latency_ms, %request_id, %correlation_id, user_id, "request failed");
    } else {
        tracing::info!(%method, %route, status, latency_ms, %request_id, %correlation_id, user_id, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_client_ids_are_taken() {
        let mut headers = HeaderMap::new();
        assert_eq!(client_id(&headers, &REQUEST_ID_HEADER), None);
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("req-42"));
        assert_eq!(
            client_id(&headers, &REQUEST_ID_HEADER).as_deref(),
            Some("req-42")
        );
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("has space"));
        assert_eq!(client_id(&headers, &REQUEST_ID_HEADER), None);
        let long = "x".repeat(MAX_ID_LEN + 1);
        headers.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_str(&long).expect("value"),
        );
        assert_eq!(client_id(&headers, &REQUEST_ID_HEADER), None);
    }
}
