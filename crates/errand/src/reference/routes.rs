//! The reference pipeline's read routes, merged into the API with
//! [`Server::routes`](errand_server::Server::routes): they sit behind errand's authentication,
//! and read only the caller's own data.

use super::library::{Hit, Library, LibraryError, StoredMessage};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use errand_core::Owner;
use errand_server::extract::{Path, Query};
use errand_server::{ApiError, Caller, Json};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `GET /v1/search?q=&limit=` and `GET /v1/conversations/{session_id}`.
pub fn routes(library: Arc<Library>) -> Router {
    Router::new()
        .route("/v1/search", get(search))
        .route("/v1/conversations/{session_id}", get(conversation))
        .with_state(library)
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    q: String,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    10
}

#[derive(Debug, Serialize)]
struct SearchAnswer {
    query: String,
    results: Vec<Hit>,
}

#[derive(Debug, Serialize)]
struct ConversationAnswer {
    session_id: String,
    messages: Vec<StoredMessage>,
}

fn unavailable(e: LibraryError) -> ApiError {
    tracing::warn!(error = %e, "reference index unavailable");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "index_unavailable",
        "the search index is unavailable; try again shortly",
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LibraryError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "index thread failed");
            ApiError::internal()
        })?
        .map_err(unavailable)
}

/// The caller's own documents matching `q`.
async fn search(
    State(library): State<Arc<Library>>,
    caller: Caller,
    Query(query): Query<SearchQuery>,
) -> Result<Json<SearchAnswer>, ApiError> {
    if query.q.trim().is_empty() || query.q.len() > 1000 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q must be 1 to 1000 characters",
        ));
    }
    let limit = query.limit.clamp(1, 100);
    let owner: Owner = caller.owner();
    let q = query.q.clone();
    let results = blocking(move || library.search(&owner, &q, limit)).await?;
    Ok(Json(SearchAnswer {
        query: query.q,
        results,
    }))
}

/// The caller's own conversation; 404 when the caller has none by that id.
async fn conversation(
    State(library): State<Arc<Library>>,
    caller: Caller,
    Path(session_id): Path<String>,
) -> Result<Json<ConversationAnswer>, ApiError> {
    let owner = caller.owner();
    let id = session_id.clone();
    match blocking(move || library.conversation(&owner, &id)).await? {
        Some(messages) => Ok(Json(ConversationAnswer {
            session_id,
            messages,
        })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such conversation (it does not exist or is not yours)",
        )),
    }
}
