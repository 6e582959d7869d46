//! # errand-server
//!
//! errand's HTTP API, as an axum router: submit tasks, follow their status (polling or
//! Server-Sent Events), cancel and retry them, with bearer-token authentication and per-user
//! isolation. It is what `errand serve` runs, and what a service embeds to offer the same API
//! beside its own routes.
//!
//! | route | does |
//! |---|---|
//! | `POST /v1/tasks` | submit `{name, args, key?, delay_s?, max_attempts?, timeout_s?}`: 202 `{id, status, status_url, events_url, deduplicated}`, 200 for a live key |
//! | `GET /v1/tasks/{id}` | the task's record |
//! | `GET /v1/tasks/{id}/events` | SSE: one `status` event per change, until a final state |
//! | `GET /v1/tasks?status=&name=&limit=&cursor=` | the caller's tasks, newest first: `{items, next_cursor}` |
//! | `POST /v1/tasks/{id}/cancel`, `POST /v1/tasks/{id}/retry` | 202 with the record (its `history` names who cancelled or retried it), 409 when the state does not allow it |
//! | `POST /v1/tasks/bulk` | `{action, ids}` or `{action, filter}`: cancel or retry many tasks by the same rules, with a result per task |
//! | `GET /v1/task-types` | registered task names with the JSON schema of their args |
//! | `GET /healthz`, `/readyz`, `/metrics`, `/openapi.json` | liveness, store reachability, Prometheus text, the OpenAPI document (no authentication) |
//!
//! - **The contract**: `/openapi.json` (OpenAPI 3.1, also [`Server::openapi`]) is generated
//!   from the code, never kept by hand: each route is added with utoipa-axum's `routes!` from
//!   its handler's `#[utoipa::path]`, so no route exists undocumented; the schemas are derived
//!   from the types the handlers read and answer (core's status model through its `openapi`
//!   feature); and when the [`Server`] is created, each registered task's argument schema is
//!   added, so the body of `POST /v1/tasks` says which `args` each `name` takes. CI runs
//!   schemathesis against a live server with it (`.ci/schemathesis.sh`).
//! - **Authentication**: `Authorization: Bearer <JWT>`, verified with errand's HS256 secrets
//!   (rotatable; [`mint_token`] makes one) and/or an identity provider's RS256/ES256 keys from
//!   a JWKS file or URL, with optional issuer and audience checks (see the [`token`] module and
//!   `docs/identity-providers.md`). No token, a malformed header or token, an algorithm or key
//!   the server does not accept, a bad signature, an expired token, a wrong issuer or
//!   audience: each is a 401 with its own `code` and message.
//! - **Context**: each authenticated request becomes an [`errand_core::Context`] (user, tenant,
//!   roles, `x-request-id` taken when it is 1 to 128 visible ASCII characters and generated
//!   otherwise, `x-correlation-id` taken alike or equal to the request id, `traceparent`,
//!   allow-listed headers, and the token itself as the credential, expiring with the token). Tasks submitted by the request carry it; [`Caller`] hands it to
//!   application routes.
//! - **Isolation**: everything is scoped to the caller's user and tenant; another user's task
//!   is a 404 everywhere. The admin role sees all.
//! - **Errors**: always `{"error": {"code", "message"}}` ([`ApiError`]); 400 malformed, 401,
//!   404, 409, 413, 415, 422 (unknown task, args that do not fit the task's type), 503 when the
//!   store is unreachable. No input makes it answer 500 or panic; a panicking handler is
//!   answered with a JSON 500 and the server goes on.
//!
//! ```
//! use errand_core::{MemoryStore, Registry, SealKey};
//! use errand_server::{Caller, Json, Server, ServerConfig};
//! use std::sync::Arc;
//!
//! async fn whoami(caller: Caller) -> Json<String> {
//!     Json(caller.user_id().to_string())
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ServerConfig {
//!     jwt_secrets: vec![b"thirty-two bytes of secret at least".to_vec()],
//!     ..Default::default()
//! };
//! let token = config.mint_token("alice", None, false, std::time::Duration::from_secs(3600))?;
//! let router = Server::new(Arc::new(MemoryStore::new()), Arc::new(Registry::new()), SealKey::generate(), config)?
//!     .routes(axum::Router::new().route("/v1/whoami", axum::routing::get(whoami)))
//!     .into_router();
//! # let _ = (router, token); Ok(()) }
//! ```
#![warn(missing_docs)]

mod actions;
mod admin;
mod bulk;
mod caller;
mod config;
mod error;
mod events;
pub mod extract;
mod listing;
mod metrics;
mod observe;
mod openapi;
mod ops;
mod server;
mod state;
mod streams;
mod tasks;
pub mod token;
mod ui;
mod validators;
mod workers;

pub use caller::{Caller, WORKER_ROLE};
pub use config::{ConfigError, ServerConfig};
pub use error::ApiError;
pub use extract::Json;
pub use observe::{CORRELATION_ID_HEADER, REQUEST_ID_HEADER};
pub use server::Server;
pub use token::{TokenError, hs256_key_id, mint_token};
