//! [`Server`]: errand's HTTP API as an axum router, and serving it with graceful shutdown.

use crate::caller;
use crate::config::{ConfigError, ServerConfig};
use crate::error;
use crate::metrics::Metrics;
use crate::observe;
use crate::state::AppState;
use crate::streams::StreamLimits;
use crate::token::Verifier;
use crate::validators::Validators;
use crate::{admin, bulk, events, listing, openapi, ops, tasks, ui, workers};
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use errand_core::remote::types::TaskTypes;
use errand_core::{AttemptObserver, Registry, RemoteWorkers, SealKeyRing, Store};
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::OnceLock;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// errand's routes, each with its handler's part of the OpenAPI document.
struct Routes {
    /// The routes behind authentication.
    authenticated: Router<Arc<AppState>>,
    /// The operational routes, open to all.
    public: Router<Arc<AppState>>,
    /// Both sets' document.
    api: utoipa::openapi::OpenApi,
}

impl Routes {
    /// Every route errand serves. `routes!` takes each route's method and path from its
    /// handler's `#[utoipa::path]`, so the router and the document list the same routes.
    fn new() -> Self {
        let (authenticated, mut api) = OpenApiRouter::with_openapi(openapi::base())
            .routes(routes!(tasks::submit, listing::list))
            .routes(routes!(listing::counts))
            .routes(routes!(tasks::get))
            .routes(routes!(events::stream))
            .routes(routes!(tasks::cancel))
            .routes(routes!(tasks::retry))
            .routes(routes!(bulk::bulk))
            .routes(routes!(tasks::task_types))
            .routes(routes!(workers::register_types))
            .routes(routes!(workers::claim))
            .routes(routes!(workers::heartbeat))
            .routes(routes!(workers::complete))
            .routes(routes!(admin::me))
            .routes(routes!(admin::workers))
            .routes(routes!(admin::queues))
            .routes(routes!(admin::activity_view))
            .split_for_parts();
        let (public, public_api) = OpenApiRouter::new()
            .routes(routes!(ops::healthz))
            .routes(routes!(ops::readyz))
            .routes(routes!(ops::metrics))
            .routes(routes!(ops::openapi_document))
            .split_for_parts();
        api.merge(public_api);
        Self {
            authenticated,
            public,
            api,
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
    /// errand's routes, without state.
    authenticated: Router<Arc<AppState>>,
    public: Router<Arc<AppState>>,
    /// The document served at `/openapi.json`.
    openapi: serde_json::Value,
    app_routes: Router,
}

impl Server {
    /// A server over `store`, accepting the tasks of `registry`, sealing callers' contexts
    /// under `seal_keys` (a [`SealKeyRing`], or one [`SealKey`](errand_core::SealKey)). Its
    /// OpenAPI document ([`Server::openapi`]) is built here, from the routes and `registry`'s
    /// tasks. Fails when the configuration cannot authenticate safely (see
    /// [`ServerConfig::validate`]) or its JWKS file cannot be read or holds no usable key.
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        seal_keys: impl Into<SealKeyRing>,
        config: ServerConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let verifier = Verifier::new(&config)?;
        let streams = StreamLimits::new(config.streams_per_user, config.streams_total);
        let routes = Routes::new();
        let routes_document = openapi::routes_document(routes.api);
        let openapi = openapi::with_tasks(routes_document.clone(), &registry.task_types());
        let metrics = Arc::new(Metrics::new(registry.names()));
        Ok(Self {
            state: Arc::new(AppState {
                store,
                registry,
                seal_keys: seal_keys.into(),
                config,
                verifier,
                metrics,
                shutdown: CancellationToken::new(),
                openapi: Bytes::from(openapi.to_string()),
                routes_document,
                streams,
                remote: OnceLock::new(),
                task_types: TaskTypes::new(),
                validators: Validators::default(),
            }),
            authenticated: routes.authenticated,
            public: routes.public,
            openapi,
            app_routes: Router::new(),
        })
    }

    /// The OpenAPI 3.1 document served at `GET /openapi.json`: errand's own routes (not those
    /// given to [`Server::routes`]), and the argument schema of each registered task.
    pub fn openapi(&self) -> &serde_json::Value {
        &self.openapi
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

    /// Serves the worker protocol (`/v1/worker/...`) with `remote`, the remote-worker runtime
    /// of this process (see [`RemoteWorkers::start`]); without it, those routes answer 503
    /// `workers_disabled`. Shut the runtime down with [`RemoteWorkers::shutdown`] after the
    /// server stops.
    pub fn remote_workers(self, remote: Arc<RemoteWorkers>) -> Self {
        let _ = self.state.remote.set(remote);
        self
    }

    /// The attempt histograms of `/metrics` (`errand_task_duration_seconds{task,outcome}`,
    /// `errand_task_queue_wait_seconds{task}`), for a [`Worker`](errand_core::Worker) in this
    /// process to feed through [`Worker::observer`](errand_core::Worker::observer). Task names
    /// the registry does not know are labelled `other`.
    pub fn attempt_observer(&self) -> Arc<dyn AttemptObserver> {
        self.state.metrics.tasks()
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
        let authenticated = self
            .authenticated
            .with_state(Arc::clone(&state))
            .merge(self.app_routes)
            .route_layer(from_fn_with_state(Arc::clone(&state), caller::authenticate));
        self.public
            .with_state(Arc::clone(&state))
            .merge(ui::router(&state))
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
