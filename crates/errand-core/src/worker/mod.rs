//! [`Worker`]: claims tasks from a [`Store`] and runs them with their context restored.
//!
//! One worker runs these loops beside its tasks:
//! - **claim**: takes as many tasks as it has free slots (one batch per round trip), sleeping
//!   on the store's work signal when the queues are empty; the slots are `concurrency` plus
//!   the `prefetch`, and a task claimed ahead waits for a run slot;
//! - **complete**: writes finished attempts in batches;
//! - **heartbeat**: renews every held lease in one call, a third of the lease apart;
//! - **report**: writes coalesced progress and steps in batches;
//! - **cancellations**: fires the token of a running task whose cancellation was requested;
//! - **maintenance**: reaps lapsed leases and purges expired records.
//!
//! Each task runs in its own tokio task, inside [`Context::scope`] and a tracing span carrying
//! `task_id`, `task`, `user_id`, `tenant`, `correlation_id` and `attempt`, under its timeout,
//! with panics caught.

mod attempt;
mod claim;
mod complete;
mod loops;
mod shared;

pub(crate) use attempt::run_task;
pub(crate) use shared::Shared;

use crate::activity::minutes::Recorder;
use crate::activity::presence::host_name;
use crate::activity::{Publisher, WorkerPresence, publish_loop};
use crate::observer::AttemptObserver;
use crate::registry::Registry;
use crate::resources::Resources;
use crate::seal::SealKeyRing;
use crate::store::Store;
use crate::task::DEFAULT_QUEUE;
use serde::Serialize;
use shared::{Counters, Running, StopReason};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

/// Worker settings. Every field has a default that suits one machine.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Tasks run at once. Default 32.
    pub concurrency: usize,
    /// Queues claimed from. Default `["default"]`.
    pub queues: Vec<String>,
    /// Tasks claimed ahead of the running ones: held by this worker, their leases renewed,
    /// each waiting for one of the `concurrency` run slots. Default 0. A few hundred let a
    /// worker of short tasks claim and complete in large batches (one round trip each) while
    /// only `concurrency` run at once; a held task shows `running` from its claim, its timeout
    /// counts from when it starts, a cancellation ends it before it runs, and a shutdown hands
    /// it back at once without spending its attempt. Other workers cannot run what one holds.
    pub prefetch: usize,
    /// Most tasks claimed per round trip. Default: `concurrency` (plus `prefetch` when set with
    /// [`Worker::prefetch`]).
    pub claim_batch: usize,
    /// Lease taken on each claimed task and renewed while it runs. Default 30 s.
    pub lease: Duration,
    /// Longest sleep between claims when the store signals nothing (the poll fallback for
    /// other processes' work). Default 1 s.
    pub poll_interval: Duration,
    /// Least time between two status writes of this worker. Default 250 ms.
    pub report_interval: Duration,
    /// Time a cancelled task gets to stop on its own before it is dropped. Default 5 s.
    pub cancel_grace: Duration,
    /// Whether this worker reaps lapsed leases and purges expired records. Default true.
    pub maintenance: bool,
    /// Time between two reaper passes. Default: half the lease.
    pub reap_interval: Duration,
    /// Time between two purges of expired records. Default 60 s.
    pub purge_interval: Duration,
    /// This worker's id, recorded with its claims. Default `worker-<pid>-<random>`.
    pub id: String,
    /// Time between two publications of this worker's presence and attempt counts to the
    /// store, for the dashboard's operator views ([`activity`](crate::activity)). Default 5 s.
    pub publish_interval: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        let lease = Duration::from_secs(30);
        Self {
            concurrency: 32,
            queues: vec![DEFAULT_QUEUE.to_string()],
            prefetch: 0,
            claim_batch: 32,
            lease,
            poll_interval: Duration::from_secs(1),
            report_interval: Duration::from_millis(250),
            cancel_grace: Duration::from_secs(5),
            maintenance: true,
            reap_interval: lease / 2,
            purge_interval: Duration::from_secs(60),
            id: format!(
                "worker-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ),
            publish_interval: Duration::from_secs(5),
        }
    }
}

/// Runs registered tasks claimed from a store.
///
/// ```
/// use errand_core::*;
/// use std::{sync::Arc, time::Duration};
///
/// #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// struct Greet { name: String }
/// impl Task for Greet {
///     const NAME: &'static str = "greet";
///     type Output = String;
///     async fn run(self, cx: TaskCx) -> Result<String, TaskError> {
///         Ok(format!("hello {} (for {:?})", self.name, cx.user_id()))
///     }
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
/// let key = SealKey::generate();
/// let mut registry = Registry::new();
/// registry.register::<Greet>()?;
/// let worker = Worker::new(store.clone(), Arc::new(registry), key.clone()).start();
///
/// let client = Client::new(store.clone(), key);
/// let ctx = Context::builder().user_id("alice").build();
/// let id = client.submit(Greet { name: "bob".into() }).context(ctx).await?.id;
/// let record = loop {
///     let r = store.get(id).await?.unwrap();
///     if r.status.is_terminal() { break r; }
///     tokio::time::sleep(Duration::from_millis(5)).await;
/// };
/// assert_eq!(record.result.unwrap().get(), r#""hello bob (for Some(\"alice\"))""#);
/// let stats = worker.shutdown(Duration::from_secs(5)).await;
/// assert_eq!(stats.succeeded, 1);
/// # Ok(()) }
/// ```
pub struct Worker {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    keys: SealKeyRing,
    config: WorkerConfig,
    resources: Resources,
    observer: Option<Arc<dyn AttemptObserver>>,
    publisher: Option<Publisher>,
}

impl Worker {
    /// A worker with default settings, opening contexts with `keys` (a [`SealKeyRing`], or one
    /// [`SealKey`](crate::SealKey)).
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        keys: impl Into<SealKeyRing>,
    ) -> Self {
        Self {
            store,
            registry,
            keys: keys.into(),
            config: WorkerConfig::default(),
            resources: Resources::new(),
            observer: None,
            publisher: None,
        }
    }

    /// Tells `observer` about every attempt (for metrics).
    pub fn observer(mut self, observer: Arc<dyn AttemptObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Gives tasks a shared value, reachable with [`TaskCx::resource`].
    pub fn resource<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.resources.insert(value);
        self
    }

    /// Replaces the shared values given to tasks.
    pub fn resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }

    /// Replaces the settings.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets how many tasks run at once (and the claim batch to match, with the prefetch).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self.config.claim_batch = self.config.concurrency.saturating_add(self.config.prefetch);
        self
    }

    /// Sets how many tasks are claimed ahead of the running ones ([`WorkerConfig::prefetch`]),
    /// and the claim batch to match.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.config.prefetch = n;
        self.config.claim_batch = self.config.concurrency.max(1).saturating_add(n);
        self
    }

    /// Sets the queues to claim from.
    pub fn queues<I: IntoIterator<Item = S>, S: Into<String>>(mut self, queues: I) -> Self {
        self.config.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the lease (and the reap interval to half of it).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self.config.reap_interval = lease / 2;
        self
    }

    /// Publishes `publisher`'s presence instead of this worker's own.
    pub(crate) fn publisher(mut self, publisher: Publisher) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// Starts the worker's loops on the current tokio runtime.
    pub fn start(self) -> WorkerHandle {
        self.start_runtime(true, None)
    }

    /// Starts the loops that keep attempts (leases, reports, cancellations, completions,
    /// maintenance), and the claim loop when `claims`; `written` hears the store's answer to
    /// each completion.
    pub(crate) fn start_runtime(
        self,
        claims: bool,
        written: Option<shared::Written>,
    ) -> WorkerHandle {
        let config = self.config;
        let publisher = self.publisher.unwrap_or_else(|| {
            let now = chrono::Utc::now();
            Publisher::Local(WorkerPresence {
                id: config.id.clone(),
                host: host_name(),
                language: "rust".into(),
                queues: config.queues.clone(),
                concurrency: u32::try_from(config.concurrency).unwrap_or(u32::MAX),
                running: 0,
                started_at: now,
                last_seen: now,
            })
        });
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            store: self.store,
            registry: self.registry,
            keys: self.keys,
            resources: Arc::new(self.resources),
            observer: self.observer,
            recorder: Arc::new(Recorder::default()),
            slots: Arc::new(Semaphore::new(
                config
                    .concurrency
                    .max(1)
                    .saturating_add(config.prefetch)
                    .min(Semaphore::MAX_PERMITS),
            )),
            run_slots: Arc::new(Semaphore::new(
                config.concurrency.clamp(1, Semaphore::MAX_PERMITS),
            )),
            stopping: CancellationToken::new(),
            running: Mutex::new(HashMap::new()),
            report_wake: Arc::new(Notify::new()),
            done_tx,
            tasks: TaskTracker::new(),
            stats: Counters::default(),
            written,
            cancels_ready: ready_rx,
            claims_open: tokio::sync::RwLock::new(claims),
            config,
        });
        let stop_claiming = CancellationToken::new();
        let stop_loops = CancellationToken::new();
        let stop_completer = CancellationToken::new();
        // Nothing is claimed before the cancellation listener has tried to subscribe
        // (`Shared::cancels_ready`): a cancellation sent before it listens would only reach the
        // task at a heartbeat.
        let claimer = tokio::spawn({
            let (shared, stop) = (shared.clone(), stop_claiming.clone());
            async move {
                if claims {
                    claim::claim_loop(shared, stop).await;
                }
            }
        });
        let completer = tokio::spawn(complete::complete_loop(
            shared.clone(),
            done_rx,
            stop_completer.clone(),
        ));
        let loops = TaskTracker::new();
        loops.spawn(loops::heartbeat_loop(shared.clone(), stop_loops.clone()));
        loops.spawn(loops::report_loop(shared.clone(), stop_loops.clone()));
        loops.spawn(loops::cancel_loop(
            shared.clone(),
            stop_loops.clone(),
            ready_tx,
        ));
        if shared.config.maintenance {
            loops.spawn(loops::maintenance_loop(shared.clone(), stop_loops.clone()));
        }
        loops.spawn({
            let held = shared.clone();
            publish_loop(
                shared.store.clone(),
                publisher,
                shared.recorder.clone(),
                // Attempts running now: those holding a run slot (not the ones claimed ahead).
                move || {
                    held.config
                        .concurrency
                        .max(1)
                        .saturating_sub(held.run_slots.available_permits())
                },
                shared.config.publish_interval,
                stop_loops.clone(),
            )
        });
        loops.close();
        WorkerHandle {
            shared,
            stop_claiming,
            stop_loops,
            stop_completer,
            claimer,
            loops,
            completer,
            started: Instant::now(),
            claims,
        }
    }
}

/// A running worker. Call [`WorkerHandle::shutdown`] to stop it gracefully; dropping the
/// handle leaves the worker running until the runtime ends.
pub struct WorkerHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) stop_claiming: CancellationToken,
    stop_loops: CancellationToken,
    stop_completer: CancellationToken,
    claimer: tokio::task::JoinHandle<()>,
    loops: TaskTracker,
    completer: tokio::task::JoinHandle<()>,
    started: Instant,
    /// Whether it claims on its own (a [`Worker`]), or runs remote workers' attempts.
    claims: bool,
}

/// Where a worker is, in its [`WorkerStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Still running (a live snapshot).
    #[default]
    Running,
    /// Stopped: every running task finished within the drain (tasks claimed ahead that had not
    /// started were handed back).
    Completed,
    /// Stopped: the drain passed; the remaining tasks were cancelled and handed back.
    Timeout,
}

impl std::fmt::Display for WorkerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkerStatus::Running => "running",
            WorkerStatus::Completed => "completed",
            WorkerStatus::Timeout => "timeout",
        })
    }
}

/// Counts of what a worker did; returned by [`WorkerHandle::shutdown`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WorkerStats {
    /// How the worker stopped (or `running`, for a live snapshot).
    pub status: WorkerStatus,
    /// Attempts claimed.
    pub claimed: u64,
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts that failed for good.
    pub failed: u64,
    /// Attempts that failed and were scheduled for retry.
    pub retried: u64,
    /// Attempts that timed out (also counted as retried or failed).
    pub timed_out: u64,
    /// Attempts that panicked (also counted as retried or failed).
    pub panicked: u64,
    /// Attempts cancelled on request.
    pub cancelled: u64,
    /// Attempts handed back unfinished at shutdown, without spending the attempt.
    pub released: u64,
    /// Attempts abandoned because their lease was lost.
    pub lost: u64,
    /// Tasks held when shutdown began (running, claimed ahead, or finished with their result
    /// unwritten).
    pub running_at_shutdown: u64,
    /// Milliseconds from shutdown to stop (or the worker's age for a live snapshot).
    pub duration_ms: u64,
}

impl WorkerHandle {
    /// Tasks this worker holds: running, claimed ahead, or finished with their result not yet
    /// written.
    pub fn running(&self) -> usize {
        self.shared.lock_running().len()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> WorkerStats {
        self.shared
            .stats
            .snapshot(WorkerStatus::Running, 0, self.started.elapsed())
    }

    /// Stops gracefully: no more claims; tasks claimed ahead that have not started are handed
    /// back at once; running tasks get `drain` to finish; the rest are cancelled and handed
    /// back to the store without spending an attempt. Returns the counters.
    pub async fn shutdown(self, drain: Duration) -> WorkerStats {
        let began = Instant::now();
        let running_at_shutdown = self.shared.lock_running().len() as u64;
        self.stop_claiming.cancel();
        self.shared.stopping.cancel();
        let _ = self.claimer.await;
        *self.shared.claims_open.write().await = false;
        let shared = &self.shared;
        shared.tasks.close();
        let drained = tokio::time::timeout(drain, shared.tasks.wait())
            .await
            .is_ok();
        if !drained {
            let running: Vec<Arc<Running>> = shared.lock_running().values().cloned().collect();
            info!(
                remaining = running.len(),
                "drain timeout passed; cancelling running tasks and handing them back"
            );
            for r in running {
                r.stop(StopReason::Shutdown);
            }
            shared.tasks.wait().await;
        }
        // Every attempt has ended and queued its completion: write them while the heartbeat
        // still renews their leases, then stop the side loops.
        self.stop_completer.cancel();
        let _ = self.completer.await;
        self.stop_loops.cancel();
        self.loops.wait().await;
        let status = if drained {
            WorkerStatus::Completed
        } else {
            WorkerStatus::Timeout
        };
        let stats = self
            .shared
            .stats
            .snapshot(status, running_at_shutdown, began.elapsed());
        if !self.claims {
            // The runtime of remote workers' attempts: its process reports its own stop.
            tracing::debug!(
                claimed = stats.claimed,
                released = stats.released,
                "remote attempts' runtime stopped"
            );
            return stats;
        }
        info!(
            status = %stats.status,
            claimed = stats.claimed,
            succeeded = stats.succeeded,
            failed = stats.failed,
            retried = stats.retried,
            cancelled = stats.cancelled,
            released = stats.released,
            lost = stats.lost,
            running_at_shutdown = stats.running_at_shutdown,
            duration_ms = stats.duration_ms,
            "worker stopped"
        );
        stats
    }
}
