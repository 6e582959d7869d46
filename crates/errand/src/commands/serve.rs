//! `errand serve`: the HTTP API, plus workers running the registered tasks in this process.

use super::runtime::{RunArgs, WorkerPlan, library, registry};
use crate::auth::{JwksArgs, TokenClaimArgs};
use crate::deployment::{self, Keys};
use crate::secrets::{self, Missing};
use crate::settings::{DEFAULT_ADDR, Settings, StoreArgs, StoreKind};
use crate::{shutdown, stores};
use anyhow::Context as _;
use errand::reference;
use errand_core::HeaderAllowList;
use errand_server::Server;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often the process checks that it can still write through its store.
pub const HEALTH_CHECK: Duration = Duration::from_secs(1);

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
    let seal_keys = secrets::seal_keys(&settings, Missing::Generate)?;
    let token_ids: Vec<String> = jwt_secrets
        .iter()
        .map(|s| errand_server::hs256_key_id(s))
        .collect();
    // Signals are handled from here on: a SIGTERM while waiting for the store stops the wait,
    // and one right after the ready line below is a graceful shutdown.
    let stop = shutdown::signal();
    let store = stores::open(&choice).await?;
    let keys = Keys {
        seal: &seal_keys,
        token: token_ids.first().map(|signing| {
            (
                signing.as_str(),
                token_ids.iter().map(String::as_str).collect(),
            )
        }),
    };
    deployment::check(&*store, &keys, &stop).await?;
    deployment::warn_about(&*store).await;
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
    let server = Server::new(store.clone(), registry.clone(), seal_keys.clone(), config)
        .context("invalid server configuration")?
        .routes(reference::routes(library.clone()));

    let concurrency = args.workers.or(settings.file.workers).unwrap_or(16);
    let plan = WorkerPlan::new(&settings, &args.run, concurrency, &choice);
    let worker = (plan.concurrency > 0).then(|| {
        errand_core::Worker::new(store.clone(), registry.clone(), seal_keys.clone())
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
    // A line for people and scripts, on stdout.
    println!("errand listening on http://{local}");

    let api = tokio::spawn(server.serve(listener, {
        let stop = stop.clone();
        async move { stop.cancelled().await }
    }));
    let broken = tokio::select! {
        () = stop.cancelled() => None,
        reason = deployment::unhealthy(&*store, HEALTH_CHECK) => Some(reason),
    };
    if let Some(reason) = &broken {
        tracing::error!(%reason, "the task store can no longer be written through this process; stopping");
        stop.cancel();
    }
    tracing::info!(drain_timeout = ?plan.drain, "shutting down: no new tasks are claimed; running tasks get the drain timeout");
    if let Some(worker) = worker {
        // Logs its statistics ("worker stopped").
        worker.shutdown(plan.drain).await;
    }
    match api.await {
        Ok(result) => result.context("the API server failed")?,
        Err(e) => anyhow::bail!("the API server task failed: {e}"),
    }
    if let Some(reason) = broken {
        anyhow::bail!("stopped because the task store can no longer be written: {reason}");
    }
    tracing::info!("errand stopped");
    Ok(())
}
