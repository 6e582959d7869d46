//! `errand worker`: runs the registered tasks, without an API, against a shared store.

use super::runtime::{RunArgs, WorkerPlan, library, registry};
use super::serve::HEALTH_CHECK;
use crate::deployment::{self, Keys};
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
    #[command(flatten)]
    pub telemetry: crate::settings::TelemetryArgs,
}

pub async fn run(settings: Settings, args: WorkerArgs) -> anyhow::Result<()> {
    // A worker is most often pointed at a Redis or a PostgreSQL; with no URL it shares the
    // SQLite file.
    let default = if settings.has_redis_url(&args.store) {
        StoreKind::Redis
    } else if settings.has_postgres_url(&args.store) {
        StoreKind::Postgres
    } else {
        StoreKind::Sqlite
    };
    let choice = settings.store(&args.store, default)?;
    let seal_keys = secrets::seal_keys(&settings, Missing::Fail)?;
    // Signals are handled from here on (a SIGTERM while waiting for the store stops the wait).
    let stop = shutdown::signal();
    let store = stores::open_waiting(&choice, &stop).await?;
    let keys = Keys {
        seal: &seal_keys,
        token: None,
    };
    deployment::check(&*store, &keys, &stop).await?;
    deployment::warn_about(&*store).await;
    let registry = Arc::new(registry(&settings, &args.run)?);
    let concurrency = args
        .concurrency
        .or(settings.file.concurrency)
        .unwrap_or(32)
        .max(1);
    let plan = WorkerPlan::new(&settings, &args.run, concurrency, &choice);
    let config = plan.config();
    let worker_id = config.id.clone();
    let worker = errand_core::Worker::new(store.clone(), registry.clone(), seal_keys.clone())
        .config(config)
        .resource(library(&settings))
        .start();
    tracing::info!(
        worker_id = %worker_id,
        store = %stores::describe(&choice),
        concurrency = plan.concurrency,
        prefetch = plan.prefetch,
        queues = ?plan.queues,
        tasks = ?registry.names().collect::<Vec<_>>(),
        "errand worker running"
    );
    println!("errand worker {worker_id} running");
    let broken = tokio::select! {
        () = stop.cancelled() => None,
        reason = deployment::unhealthy(&*store, HEALTH_CHECK) => Some(reason),
    };
    if let Some(reason) = &broken {
        tracing::error!(%reason, "the task store can no longer be written through this process; stopping");
    }
    tracing::info!(drain_timeout = ?plan.drain, "shutting down: no new tasks are claimed; running tasks get the drain timeout");
    let stats = worker.shutdown(plan.drain).await;
    // The stats as JSON on stdout, for scripts.
    println!("{}", serde_json::to_string(&stats)?);
    if let Some(reason) = broken {
        anyhow::bail!("stopped because the task store can no longer be written: {reason}");
    }
    Ok(())
}
