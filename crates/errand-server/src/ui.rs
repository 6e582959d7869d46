//! The dashboard at `/ui/`: one HTML page, a script and a stylesheet, compiled into the binary
//! (no Node, no CDN, works offline). The page holds no data: the script signs in with a bearer
//! token (pasted, or from the `#token=` fragment, which never reaches the server) and reads
//! errand's own API, so it sees exactly what the API lets that token see.

use crate::state::AppState;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use std::sync::Arc;

const INDEX: &str = include_str!("../ui/index.html");
const SCRIPT: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/app.css");

/// What the page may load and where it may connect: only this server.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard's routes (public: the page is the same for everyone; the API behind it
/// checks the token).
pub(crate) fn router(state: &AppState) -> Router {
    let page = index_page(state.config.trace_url_template.as_deref());
    let shell = move || {
        let page = page.clone();
        async move { html(page) }
    };
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(shell.clone()))
        .route("/ui/tasks/{id}", get(shell.clone()))
        .route("/ui/queues", get(shell.clone()))
        .route("/ui/workers", get(shell.clone()))
        .route("/ui/activity", get(shell))
        .route(
            "/ui/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

/// The page, with the trace viewer's URL template (`{trace_id}` is replaced by the script).
fn index_page(trace_url_template: Option<&str>) -> Arc<str> {
    INDEX
        .replace(
            "{{TRACE_URL_TEMPLATE}}",
            &escape_attribute(trace_url_template.unwrap_or("")),
        )
        .into()
}

fn escape_attribute(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn security_headers() -> [(HeaderName, HeaderValue); 4] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ]
}

fn html(page: Arc<str>) -> Response {
    (
        security_headers(),
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.to_string(),
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        security_headers(),
        [(header::CONTENT_TYPE, content_type)],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_template_is_escaped_into_the_page() {
        let page = index_page(Some("https://jaeger/trace/{trace_id}?a=1&b=\"x\""));
        assert!(
            page.contains(r#"content="https://jaeger/trace/{trace_id}?a=1&amp;b=&quot;x&quot;""#)
        );
        assert!(!index_page(None).contains("{{"));
    }
}
