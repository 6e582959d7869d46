//! What `serve` and `worker` share: the task-running flags, the registry, the reference
//! pipeline's data, and the worker settings built from them.

use crate::settings::{Settings, StoreChoice};
use errand::reference::{self, Library};
use errand_core::{Registry, WorkerConfig};
use std::sync::Arc;
use std::time::Duration;

/// Flags of the processes that run tasks.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Queues to claim from, comma-separated [default: default].
    #[arg(
        long,
        env = "ERRAND_QUEUES",
        value_delimiter = ',',
        value_name = "Q1,Q2"
    )]
    pub queues: Option<Vec<String>>,
    /// Do not register the reference pipeline (ingest_document, persist_conversation).
    #[arg(long, env = "ERRAND_NO_REFERENCE_TASKS")]
    pub no_reference_tasks: bool,
    /// Time running tasks get to finish at shutdown before they are handed back [default: 30s].
    #[arg(long, env = "ERRAND_DRAIN_TIMEOUT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub drain_timeout: Option<Duration>,
    /// Tasks claimed ahead of the running ones, held with their leases renewed until a slot
    /// frees: larger claim batches for short tasks [default: 0].
    #[arg(long, env = "ERRAND_PREFETCH", value_name = "N")]
    pub prefetch: Option<usize>,
    /// Lease of a claimed task; a worker that dies is replaced after this long [default: 30s].
    #[arg(long, env = "ERRAND_LEASE", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub lease: Option<Duration>,
}

/// How this process runs tasks.
pub struct WorkerPlan {
    /// Tasks at once (0: none).
    pub concurrency: usize,
    /// Tasks claimed ahead of the running ones.
    pub prefetch: usize,
    /// Queues.
    pub queues: Vec<String>,
    /// Drain at shutdown.
    pub drain: Duration,
    /// Poll fallback for work submitted by other processes.
    pub poll: Duration,
    /// Lease.
    pub lease: Duration,
}

impl WorkerPlan {
    /// The plan from the flags, then the config file, then defaults.
    pub fn new(
        settings: &Settings,
        args: &RunArgs,
        concurrency: usize,
        store: &StoreChoice,
    ) -> Self {
        let or_file = |flag: Option<Duration>, file: Option<Duration>| {
            flag.or(file).unwrap_or(Duration::from_secs(30))
        };
        Self {
            concurrency,
            prefetch: args.prefetch.or(settings.file.prefetch).unwrap_or(0),
            queues: settings.queues(&args.queues),
            drain: or_file(args.drain_timeout, settings.file.drain_timeout),
            poll: poll_interval(store),
            lease: or_file(args.lease, settings.file.lease),
        }
    }

    /// The core worker configuration.
    pub fn config(&self) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.concurrency.max(1),
            prefetch: self.prefetch,
            claim_batch: self.concurrency.max(1) + self.prefetch,
            queues: self.queues.clone(),
            poll_interval: self.poll,
            lease: self.lease,
            reap_interval: self.lease / 2,
            ..WorkerConfig::default()
        }
    }
}

/// The registry: the reference pipeline unless turned off (flag or `reference_tasks = false`).
pub fn registry(settings: &Settings, args: &RunArgs) -> anyhow::Result<Registry> {
    let mut registry = Registry::new();
    if !args.no_reference_tasks && settings.file.reference_tasks != Some(false) {
        reference::register(&mut registry)?;
    }
    Ok(registry)
}

/// The reference pipeline's per-user data, shared by every process using this data directory.
pub fn library(settings: &Settings) -> Arc<Library> {
    Arc::new(Library::new(settings.data_dir().join("library")))
}

/// How often a worker looks for work submitted by another process. Redis wakes workers itself;
/// SQLite only wakes workers of the same process, so others poll briefly.
fn poll_interval(store: &StoreChoice) -> Duration {
    match store {
        StoreChoice::Sqlite(_) => Duration::from_millis(100),
        _ => Duration::from_secs(1),
    }
}
