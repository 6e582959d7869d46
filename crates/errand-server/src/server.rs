//! [`Server`]: errand's HTTP API as an axum router, and serving it with graceful shutdown.

use crate::caller;
use crate::config::{ConfigError, ServerConfig};
use crate::error;
use crate::metrics::Metrics;
use crate::observe;
use crate::state::AppState;
use crate::{events, ops, tasks};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use errand_core::{Registry, SealKey, Store};
use std::future::Future;
use std::io;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;

/// errand's HTTP API: the routes of DESIGN.md's table behind bearer-token authentication and
/// per-user isolation, plus any application routes given to [`Server::routes`].
///
/// ```
/// use errand_core::{MemoryStore, Registry, SealKey};
/// use errand_server::{Server, ServerConfig};
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ServerConfig { jwt_secret: vec![42; 32], ..Default::default() };
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
    /// A server over `store`, accepting the tasks of `registry`, sealing callers' credentials
    /// under `seal_key`. Fails when the configuration cannot authenticate safely (see
    /// [`ServerConfig::validate`]).
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        seal_key: SealKey,
        config: ServerConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            state: Arc::new(AppState {
                store,
                registry,
                seal_key,
                config,
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
