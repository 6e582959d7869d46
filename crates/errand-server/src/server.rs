//! [`Server`]: errand's HTTP API as an axum router, and serving it with graceful shutdown.

use crate::caller::{self, Caller};
use crate::config::{ConfigError, ServerConfig};
use crate::error::{self, ApiError};
use crate::metrics::Metrics;
use crate::observe;
use crate::token::Verifier;
use crate::{events, ops, tasks};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use errand_core::{Registry, SealKeyRing, Store, StoreError, TaskId, TaskRecord};
use std::future::Future;
use std::io;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;

/// What every handler shares.
pub(crate) struct AppState {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub seal_keys: SealKeyRing,
    pub config: ServerConfig,
    /// Checks bearer tokens against the configured keys.
    pub verifier: Verifier,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server shuts down: open event streams end.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// Counts and logs a store error, and turns it into the API's answer (503 when the store
    /// is unreachable).
    pub fn store_error(&self, operation: &'static str, error: StoreError) -> ApiError {
        self.metrics.store_error(operation, &error);
        if error.is_unavailable() {
            tracing::warn!(operation, %error, "task store unavailable");
        }
        error.into()
    }

    /// Task `id`'s record if the caller may see it; 404 otherwise, whether the task does not
    /// exist or belongs to someone else.
    pub async fn visible_record(
        &self,
        caller: &Caller,
        id: TaskId,
    ) -> Result<TaskRecord, ApiError> {
        match self.store.get(id).await {
            Ok(Some(record)) if caller.may_access(&record.owner) => Ok(record),
            Ok(_) => Err(ApiError::not_found()),
            Err(e) => Err(self.store_error("get", e)),
        }
    }
}

/// errand's HTTP API: the routes of DESIGN.md's table behind bearer-token authentication and
/// per-user isolation, plus any application routes given to [`Server::routes`].
///
/// ```
/// use errand_core::{MemoryStore, Registry, SealKey};
/// use errand_server::{Server, ServerConfig};
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ServerConfig { jwt_secrets: vec![vec![42; 32]], ..Default::default() };
/// let server = Server::new(
///     Arc::new(MemoryStore::new()),
///     Arc::new(Registry::new()),
///     SealKey::generate(),
///     config,
/// )?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// // Serves until the shutdown future completes (here: at once).
/// server.serve(listener, std::future::ready(())).await?;
/// # Ok(()) }
/// ```
pub struct Server {
    state: Arc<AppState>,
    app_routes: Router,
}

impl Server {
    /// A server over `store`, accepting the tasks of `registry`, sealing callers' contexts
    /// under `seal_keys` (a [`SealKeyRing`], or one [`SealKey`](errand_core::SealKey)). Fails
    /// when the configuration cannot authenticate safely (see [`ServerConfig::validate`]) or
    /// its JWKS file cannot be read or holds no usable key.
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        seal_keys: impl Into<SealKeyRing>,
        config: ServerConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let verifier = Verifier::new(&config)?;
        Ok(Self {
            state: Arc::new(AppState {
                store,
                registry,
                seal_keys: seal_keys.into(),
                config,
                verifier,
                metrics: Arc::new(Metrics::default()),
                shutdown: CancellationToken::new(),
            }),
            app_routes: Router::new(),
        })
    }

    /// Adds application routes. They run behind the same layers as errand's own `/v1` routes:
    /// authentication (401 without a valid token), the caller's [`Context`](errand_core::Context)
    /// (read it with the [`Caller`] extractor; handlers run inside its scope), request ids,
    /// logging, metrics, the body limit, panic catching and the JSON error shape.
    ///
    /// The router must not set a fallback (errand answers unmatched paths with a JSON 404), and
    /// its paths must not repeat errand's: axum panics on overlapping routes when they are
    /// merged, here, at startup. Routes given here are not in `/openapi.json`.
    pub fn routes(mut self, router: Router) -> Self {
        self.app_routes = self.app_routes.merge(router);
        self
    }

    /// A token that, when cancelled, ends every open event stream; [`Server::serve`] cancels
    /// it when its shutdown future completes. Cancel it yourself when you serve
    /// [`Server::into_router`] with your own loop, or graceful shutdown waits for those
    /// streams.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    /// The complete router, ready to serve.
    pub fn into_router(self) -> Router {
        let state = self.state;
        let authenticated = Router::new()
            .route("/v1/tasks", post(tasks::submit).get(tasks::list))
            .route("/v1/tasks/{id}", get(tasks::get))
            .route("/v1/tasks/{id}/events", get(events::stream))
            .route("/v1/tasks/{id}/cancel", post(tasks::cancel))
            .route("/v1/tasks/{id}/retry", post(tasks::retry))
            .route("/v1/task-types", get(tasks::task_types))
            .with_state(Arc::clone(&state))
            .merge(self.app_routes)
            .route_layer(from_fn_with_state(Arc::clone(&state), caller::authenticate));
        let public = Router::new()
            .route("/healthz", get(ops::healthz))
            .route("/readyz", get(ops::readyz))
            .route("/metrics", get(ops::metrics))
            .route("/openapi.json", get(ops::openapi))
            .with_state(Arc::clone(&state));
        public
            .merge(authenticated)
            .fallback(error::no_route)
            .layer(DefaultBodyLimit::max(state.config.body_limit))
            .layer(CatchPanicLayer::custom(error::panic_response))
            .layer(from_fn(error::json_errors))
            .layer(from_fn_with_state(Arc::clone(&state), observe::observe))
    }

    /// Serves on `listener` until `shutdown` completes (or [`Server::shutdown_token`] is
    /// cancelled), then shuts down gracefully: stops accepting connections, ends open event
    /// streams, and waits for requests in flight.
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.shutdown_token();
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "errand API listening");
        }
        let router = self.into_router();
        let signal = async move {
            tokio::select! {
                () = shutdown => {}
                () = token.cancelled() => {}
            }
            tracing::info!("errand API shutting down");
            token.cancel();
        };
        axum::serve(listener, router)
            .with_graceful_shutdown(signal)
            .await
    }
}
