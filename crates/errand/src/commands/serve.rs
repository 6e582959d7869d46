//! `errand serve`: the HTTP API, plus workers running the registered tasks in this process.

use super::runtime::{RunArgs, WorkerPlan, library, registry};
use crate::auth::{JwksArgs, TokenClaimArgs};
use crate::secrets::{self, Missing};
use crate::settings::{DEFAULT_ADDR, Settings, StoreArgs, StoreKind};
use crate::{shutdown, stores};
use anyhow::Context as _;
use errand::reference;
use errand_core::HeaderAllowList;
use errand_server::Server;
use std::net::SocketAddr;
use std::sync::Arc;

/// Serves the API (and runs workers unless `--workers 0`).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "ERRAND_ADDR", value_name = "HOST:PORT")]
    pub addr: Option<SocketAddr>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Tasks this process runs at once; 0 runs the API only [default: 16].
    #[arg(long, env = "ERRAND_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub claims: TokenClaimArgs,
    #[command(flatten)]
    pub jwks: JwksArgs,
    /// Request headers copied into task contexts, comma-separated (Authorization and cookies never are).
    #[arg(
        long,
        env = "ERRAND_ALLOW_HEADERS",
        value_delimiter = ',',
        value_name = "H1,H2"
    )]
    pub allow_headers: Option<Vec<String>>,
}

pub async fn run(settings: Settings, args: ServeArgs) -> anyhow::Result<()> {
    let addr = args.addr.or(settings.file.addr).unwrap_or_else(|| {
        DEFAULT_ADDR
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)))
    });
    let choice = settings.store(&args.store, StoreKind::Sqlite)?;
    let jwt_secrets = secrets::jwt_secrets(&settings, Missing::Generate)?;
    let seal_key = secrets::seal_key(&settings, Missing::Generate)?;
    let store = stores::open(&choice).await?;
    let registry = Arc::new(registry(&settings, &args.run)?);
    let library = library(&settings);

    let mut config = settings.serve_config(jwt_secrets, &args.claims, &args.jwks);
    if let Some(limit) = settings.file.body_limit {
        config.body_limit = limit;
    }
    if let Some(headers) = args
        .allow_headers
        .clone()
        .or_else(|| settings.file.allow_headers.clone())
    {
        config.header_allow_list = HeaderAllowList::new(headers);
    }
    let signing_key_id = config.signing_key_id();
    let server = Server::new(store.clone(), registry.clone(), seal_key.clone(), config)
        .context("invalid server configuration")?
        .routes(reference::routes(library.clone()));

    let concurrency = args.workers.or(settings.file.workers).unwrap_or(16);
    let plan = WorkerPlan::new(&settings, &args.run, concurrency, &choice);
    let worker = (plan.concurrency > 0).then(|| {
        errand_core::Worker::new(store.clone(), registry.clone(), seal_key.clone())
            .config(plan.config())
            .resource(library.clone())
            .start()
    });

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(
        addr = %local,
        store = %stores::describe(&choice),
        data_dir = %settings.data_dir().display(),
        workers = plan.concurrency,
        signing_key_id = %signing_key_id.as_deref().unwrap_or("none"),
        tasks = ?registry.names().collect::<Vec<_>>(),
        "errand serving"
    );
    // Signals are handled before the server says it is ready: a SIGTERM right after the line
    // below is a graceful shutdown.
    let stop = shutdown::signal();
    // A line for people and scripts, on stdout.
    println!("errand listening on http://{local}");

    let api = tokio::spawn(server.serve(listener, {
        let stop = stop.clone();
        async move { stop.cancelled().await }
    }));
    stop.cancelled().await;
    tracing::info!(drain_timeout = ?plan.drain, "shutting down: no new tasks are claimed; running tasks get the drain timeout");
    if let Some(worker) = worker {
        // Logs its statistics ("worker stopped").
        worker.shutdown(plan.drain).await;
    }
    match api.await {
        Ok(result) => result.context("the API server failed")?,
        Err(e) => anyhow::bail!("the API server task failed: {e}"),
    }
    tracing::info!("errand stopped");
    Ok(())
}
