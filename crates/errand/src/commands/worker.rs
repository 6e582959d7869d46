//! `errand worker`: runs the registered tasks, without an API, against a shared store.

use super::runtime::{RunArgs, WorkerPlan, library, registry};
use crate::secrets::{self, Missing};
use crate::settings::{Settings, StoreArgs, StoreKind};
use crate::{shutdown, stores};
use std::sync::Arc;

/// Runs workers only, with the reference tasks registered.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Tasks run at once [default: 32].
    #[arg(long, env = "ERRAND_CONCURRENCY", value_name = "N")]
    pub concurrency: Option<usize>,
    #[command(flatten)]
    pub run: RunArgs,
}

pub async fn run(settings: Settings, args: WorkerArgs) -> anyhow::Result<()> {
    // A worker is most often pointed at a Redis; with no URL it shares the SQLite file.
    let default = if settings.has_redis_url(&args.store) {
        StoreKind::Redis
    } else {
        StoreKind::Sqlite
    };
    let choice = settings.store(&args.store, default)?;
    let seal_key = secrets::seal_key(&settings, Missing::Fail)?;
    let store = stores::open(&choice).await?;
    let registry = Arc::new(registry(&settings, &args.run)?);
    let concurrency = args
        .concurrency
        .or(settings.file.concurrency)
        .unwrap_or(32)
        .max(1);
    let plan = WorkerPlan::new(&settings, &args.run, concurrency, &choice);
    let config = plan.config();
    let worker_id = config.id.clone();
    let worker = errand_core::Worker::new(store, registry.clone(), seal_key)
        .config(config)
        .resource(library(&settings))
        .start();
    tracing::info!(
        worker_id = %worker_id,
        store = %stores::describe(&choice),
        concurrency = plan.concurrency,
        queues = ?plan.queues,
        tasks = ?registry.names().collect::<Vec<_>>(),
        "errand worker running"
    );
    // Signals are handled before the worker says it runs.
    let stop = shutdown::signal();
    println!("errand worker {worker_id} running");
    stop.cancelled().await;
    tracing::info!(drain_timeout = ?plan.drain, "shutting down: no new tasks are claimed; running tasks get the drain timeout");
    let stats = worker.shutdown(plan.drain).await;
    // The stats as JSON on stdout, for scripts.
    println!("{}", serde_json::to_string(&stats)?);
    Ok(())
}
