//! [`Worker`]: claims tasks from a [`Store`] and runs them with their context restored.
//!
//! One worker runs these loops beside its tasks:
//! - **claim**: takes as many tasks as it has free slots (one batch per round trip), sleeping
//!   on the store's work signal when the queues are empty;
//! - **complete**: writes finished attempts in batches;
//! - **heartbeat**: renews every held lease in one call, a third of the lease apart;
//! - **report**: writes coalesced progress and steps in batches;
//! - **cancellations**: fires the token of a running task whose cancellation was requested;
//! - **maintenance**: reaps lapsed leases and purges expired records.
//!
//! Each task runs in its own tokio task, inside [`Context::scope`] and a tracing span carrying
//! `task_id`, `task`, `user_id`, `tenant`, `correlation_id` and `attempt`, under its timeout,
//! with panics caught.

use crate::context::Context;
use crate::cx::{CxParts, Reporter, TaskCx};
use crate::id::TaskId;
use crate::lease::{Lease, LeaseState};
use crate::observer::{AttemptObserver, AttemptOutcome};
use crate::registry::{PrepareError, Registry};
use crate::resources::Resources;
use crate::seal::SealKeyRing;
use crate::sealed::CONTEXT_INTEGRITY;
use crate::status::{ErrorInfo, Owner, StatusUpdate};
use crate::store::{ClaimRequest, Claimed, CompleteResult, Completion, Outcome, Store, StoreError};
use crate::task::{DEFAULT_QUEUE, TaskError, panic_message};
use futures::FutureExt;
use futures::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, warn};

/// Worker settings. Every field has a default that suits one machine.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Tasks run at once. Default 32.
    pub concurrency: usize,
    /// Queues claimed from. Default `["default"]`.
    pub queues: Vec<String>,
    /// Most tasks claimed per round trip. Default: `concurrency`.
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
}

impl Default for WorkerConfig {
    fn default() -> Self {
        let lease = Duration::from_secs(30);
        Self {
            concurrency: 32,
            queues: vec![DEFAULT_QUEUE.to_string()],
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

    /// Sets how many tasks run at once (and the claim batch to match).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self.config.claim_batch = n.max(1);
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

    /// Starts the worker's loops on the current tokio runtime.
    pub fn start(self) -> WorkerHandle {
        let config = self.config;
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            store: self.store,
            registry: self.registry,
            keys: self.keys,
            resources: Arc::new(self.resources),
            observer: self.observer,
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            running: Mutex::new(HashMap::new()),
            report_wake: Arc::new(Notify::new()),
            done_tx,
            tasks: TaskTracker::new(),
            stats: Counters::default(),
            config,
        });
        let stop_claiming = CancellationToken::new();
        let stop_loops = CancellationToken::new();
        let stop_completer = CancellationToken::new();
        // Nothing is claimed before the cancellation listener has tried to subscribe: a
        // cancellation sent before it listens would only reach the task at a heartbeat.
        let (listening, cancels_ready) = tokio::sync::oneshot::channel();
        let claimer = tokio::spawn(claim_loop(
            shared.clone(),
            stop_claiming.clone(),
            cancels_ready,
        ));
        let completer = tokio::spawn(complete_loop(
            shared.clone(),
            done_rx,
            stop_completer.clone(),
        ));
        let loops = TaskTracker::new();
        loops.spawn(heartbeat_loop(shared.clone(), stop_loops.clone()));
        loops.spawn(report_loop(shared.clone(), stop_loops.clone()));
        loops.spawn(cancel_loop(shared.clone(), stop_loops.clone(), listening));
        if shared.config.maintenance {
            loops.spawn(maintenance_loop(shared.clone(), stop_loops.clone()));
        }
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
        }
    }
}

/// A running worker. Call [`WorkerHandle::shutdown`] to stop it gracefully; dropping the
/// handle leaves the worker running until the runtime ends.
pub struct WorkerHandle {
    shared: Arc<Shared>,
    stop_claiming: CancellationToken,
    stop_loops: CancellationToken,
    stop_completer: CancellationToken,
    claimer: tokio::task::JoinHandle<()>,
    loops: TaskTracker,
    completer: tokio::task::JoinHandle<()>,
    started: Instant,
}

/// Where a worker is, in its [`WorkerStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Still running (a live snapshot).
    #[default]
    Running,
    /// Stopped: every task finished within the drain.
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
    /// Attempts held when shutdown began (running, or finished with their result unwritten).
    pub running_at_shutdown: u64,
    /// Milliseconds from shutdown to stop (or the worker's age for a live snapshot).
    pub duration_ms: u64,
}

impl WorkerHandle {
    /// Attempts this worker holds: running, or finished with their result not yet written.
    pub fn running(&self) -> usize {
        self.shared.lock_running().len()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> WorkerStats {
        self.shared
            .stats
            .snapshot(WorkerStatus::Running, 0, self.started.elapsed())
    }

    /// Stops gracefully: no more claims; running tasks get `drain` to finish; the rest are
    /// cancelled and handed back to the store without spending an attempt. Returns the
    /// counters.
    pub async fn shutdown(self, drain: Duration) -> WorkerStats {
        let began = Instant::now();
        self.stop_claiming.cancel();
        let _ = self.claimer.await;
        let running_at_shutdown = self.shared.lock_running().len() as u64;
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

struct Shared {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    keys: SealKeyRing,
    resources: Arc<Resources>,
    observer: Option<Arc<dyn AttemptObserver>>,
    config: WorkerConfig,
    slots: Arc<Semaphore>,
    running: Mutex<HashMap<TaskId, Arc<Running>>>,
    report_wake: Arc<Notify>,
    done_tx: mpsc::UnboundedSender<Done>,
    tasks: TaskTracker,
    stats: Counters,
}

impl Shared {
    fn lock_running(&self) -> MutexGuard<'_, HashMap<TaskId, Arc<Running>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops tracking the attempts holding `leases` (a newer attempt of a task stays).
    fn forget(&self, leases: impl IntoIterator<Item = Lease>) {
        let mut running = self.lock_running();
        for lease in leases {
            if running.get(&lease.id).is_some_and(|r| r.lease == lease) {
                running.remove(&lease.id);
            }
        }
    }
}

/// One running attempt, as the worker's loops see it.
struct Running {
    lease: Lease,
    token: CancellationToken,
    reporter: Arc<Reporter>,
    reason: AtomicU8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum StopReason {
    None = 0,
    CancelRequested = 1,
    Shutdown = 2,
    LeaseLost = 3,
}

impl Running {
    fn stop(&self, reason: StopReason) {
        let _ = self.reason.compare_exchange(
            StopReason::None as u8,
            reason as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.token.cancel();
    }

    fn reason(&self) -> StopReason {
        match self.reason.load(Ordering::Acquire) {
            1 => StopReason::CancelRequested,
            2 => StopReason::Shutdown,
            3 => StopReason::LeaseLost,
            _ => StopReason::None,
        }
    }
}

#[derive(Default)]
struct Counters {
    claimed: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    timed_out: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
    released: AtomicU64,
    lost: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(
        &self,
        status: WorkerStatus,
        running_at_shutdown: u64,
        took: Duration,
    ) -> WorkerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerStats {
            status,
            claimed: get(&self.claimed),
            succeeded: get(&self.succeeded),
            failed: get(&self.failed),
            retried: get(&self.retried),
            timed_out: get(&self.timed_out),
            panicked: get(&self.panicked),
            cancelled: get(&self.cancelled),
            released: get(&self.released),
            lost: get(&self.lost),
            running_at_shutdown,
            duration_ms: took.as_millis() as u64,
        }
    }
}

/// Retries a failing store call's loop with growing pauses, logging the outage once.
struct Outage {
    what: &'static str,
    pause: Duration,
    max_pause: Duration,
    since: Option<Instant>,
}

impl Outage {
    fn new(what: &'static str, max_pause: Duration) -> Self {
        Self {
            what,
            pause: Duration::from_millis(50),
            max_pause: max_pause.max(Duration::from_millis(50)),
            since: None,
        }
    }

    fn ok(&mut self) {
        if let Some(since) = self.since.take() {
            info!(
                what = self.what,
                down_ms = since.elapsed().as_millis() as u64,
                "task store reachable again"
            );
        }
        self.pause = Duration::from_millis(50);
    }

    async fn failed(&mut self, err: &StoreError, stop: &CancellationToken) {
        if self.since.is_none() {
            self.since = Some(Instant::now());
            warn!(what = self.what, error = %err, "task store call failed; retrying with backoff");
        } else {
            debug!(what = self.what, error = %err, "task store still failing");
        }
        tokio::select! {
            _ = tokio::time::sleep(self.pause) => {}
            _ = stop.cancelled() => {}
        }
        self.pause = (self.pause * 2).min(self.max_pause);
    }
}

async fn claim_loop(
    shared: Arc<Shared>,
    stop: CancellationToken,
    cancels_ready: tokio::sync::oneshot::Receiver<()>,
) {
    tokio::select! {
        _ = cancels_ready => {}
        _ = stop.cancelled() => return,
    }
    let cfg = &shared.config;
    let mut outage = Outage::new("claim", Duration::from_secs(5));
    let mut signal = None;
    let request = |limit| ClaimRequest {
        queues: cfg.queues.clone(),
        limit,
        lease: cfg.lease,
        worker_id: cfg.id.clone(),
    };
    loop {
        // Wait for a free slot, then take every free slot up to a batch.
        let first = tokio::select! {
            p = shared.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.cancelled() => return,
        };
        let mut permits = vec![first];
        while permits.len() < cfg.claim_batch.max(1) {
            match shared.slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        if signal.is_none() {
            match shared.store.work_signal(&cfg.queues).await {
                Ok(s) => signal = Some(s),
                Err(e) => {
                    outage.failed(&e, &stop).await;
                    continue;
                }
            }
        }
        let wanted = permits.len();
        let claimed = match shared.store.claim(&request(wanted)).await {
            Ok(c) => {
                outage.ok();
                c
            }
            Err(e) => {
                drop(permits);
                outage.failed(&e, &stop).await;
                continue;
            }
        };
        let got = claimed.len();
        let mut extra = Vec::new();
        for task in claimed {
            let Some(permit) = permits.pop() else {
                extra.push(task);
                continue;
            };
            Counters::bump(&shared.stats.claimed);
            let s = shared.clone();
            shared.tasks.spawn(run_task(s, task, permit));
        }
        drop(permits);
        if !extra.is_empty() {
            // The store handed out more than asked: give the rest back untouched.
            warn!(
                extra = extra.len(),
                "the store returned more tasks than claimed; handing them back"
            );
            let back = extra
                .into_iter()
                .map(|t| Completion {
                    lease: t.lease,
                    outcome: Outcome::Released,
                    report: StatusUpdate::default(),
                })
                .collect();
            if let Err(e) = shared.store.complete(back).await {
                warn!(error = %e, "could not hand back the extra tasks; their leases will lapse");
            }
        }
        if got < wanted
            && let Some(signal) = signal.as_mut()
        {
            tokio::select! {
                _ = signal.wait(cfg.poll_interval) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// How an attempt ended, before it is turned into a store [`Outcome`].
enum Ended {
    Finished(Result<Box<serde_json::value::RawValue>, TaskError>),
    TimedOut,
    Stopped(
        StopReason,
        Option<Result<Box<serde_json::value::RawValue>, TaskError>>,
    ),
}

async fn run_task(shared: Arc<Shared>, task: Claimed, permit: OwnedSemaphorePermit) {
    let id = task.lease.id;
    let user = task.owner.user_id.as_deref().unwrap_or("");
    let span = tracing::info_span!(
        "task",
        task_id = %id,
        task = %task.name,
        user_id = %user,
        tenant = %task.owner.tenant.as_deref().unwrap_or(""),
        correlation_id = %task.correlation_id.as_deref().unwrap_or(""),
        attempt = task.attempt,
    );
    let running = Arc::new(Running {
        lease: task.lease,
        token: CancellationToken::new(),
        reporter: Arc::new(Reporter::new(Some(shared.report_wake.clone()))),
        reason: AtomicU8::new(StopReason::None as u8),
    });
    let lease = task.lease;
    if let Some(older) = shared.lock_running().insert(id, running.clone())
        && older.lease != lease
    {
        // This worker still held an earlier claim of the task, whose lease lapsed (or which a
        // store that lost writes handed out again): a newer claim supersedes it, whatever the
        // attempt numbers say.
        older.stop(StopReason::LeaseLost);
    }
    let name = shared.observer.as_ref().map(|o| {
        let waited = task
            .due_at
            .and_then(|due| (chrono::Utc::now() - due).to_std().ok());
        o.started(&task.name, waited);
        task.name.clone()
    });
    let began = Instant::now();
    // A panic anywhere in the attempt (the task's arguments, its policy, errand's own code) is
    // a failed attempt, never a task stuck `running` under a lease this worker renews.
    let completion = AssertUnwindSafe(execute(&shared, task, &running))
        .catch_unwind()
        .instrument(span.clone())
        .await
        .unwrap_or_else(|panic| {
            let message = format!(
                "the attempt panicked outside the task's run: {}",
                panic_message(&panic)
            );
            span.in_scope(|| error!(error = %message, "task failed"));
            Counters::bump(&shared.stats.failed);
            Counters::bump(&shared.stats.panicked);
            Some(Completion {
                lease,
                outcome: Outcome::Failed(ErrorInfo {
                    message,
                    kind: "panic".into(),
                    details: None,
                    retryable: false,
                }),
                report: StatusUpdate::default(),
            })
        });
    if let (Some(observer), Some(name)) = (&shared.observer, &name) {
        let outcome = match completion.as_ref().map(|c| &c.outcome) {
            None => AttemptOutcome::Lost,
            Some(Outcome::Success(_)) => AttemptOutcome::Success,
            Some(Outcome::Retry { .. }) => AttemptOutcome::Retrying,
            Some(Outcome::Failed(_)) => AttemptOutcome::Failed,
            Some(Outcome::Cancelled) => AttemptOutcome::Cancelled,
            Some(Outcome::Released) => AttemptOutcome::Released,
        };
        observer.ended(name, outcome, began.elapsed());
    }
    // Until its completion is written, the attempt keeps its lease (the heartbeat renews it)
    // and its slot (so a slow or unreachable store stops new claims instead of letting results
    // pile up until their leases lapse and the tasks run again).
    let unsent = match completion {
        Some(completion) => shared
            .done_tx
            .send(Done { completion, permit })
            .err()
            .map(|e| e.0.permit),
        None => Some(permit),
    };
    if let Some(permit) = unsent {
        shared.forget([lease]);
        drop(permit);
    }
}

/// A finished attempt on its way to the store, holding its worker slot until it is written.
struct Done {
    completion: Completion,
    permit: OwnedSemaphorePermit,
}

/// Runs one attempt and decides its outcome; `None` when the lease was lost.
async fn execute(shared: &Shared, task: Claimed, running: &Running) -> Option<Completion> {
    let stats = &shared.stats;
    let fatal = |kind: &str, message: String| {
        Outcome::Failed(ErrorInfo {
            message,
            kind: kind.to_string(),
            details: None,
            retryable: false,
        })
    };
    let done = |outcome, report| Completion {
        lease: running.lease,
        outcome,
        report,
    };

    let prepared = match shared.registry.prepare(&task.name, &task.args) {
        Ok(p) => p,
        Err(e) => {
            let kind = match e {
                PrepareError::Unknown(_) => "unregistered",
                PrepareError::InvalidArgs { .. } => "invalid_args",
            };
            error!(error = %e, "task failed: {kind}");
            Counters::bump(&stats.failed);
            return Some(done(fatal(kind, e.to_string()), StatusUpdate::default()));
        }
    };
    // A task whose context cannot be opened and checked never runs: not anonymously, not as
    // anyone.
    let context = match open_context(&shared.keys, &task) {
        Ok(c) => c,
        Err(err) => {
            let retry = err.is_retryable() && task.attempt < task.max_attempts;
            error!(error = %err, kind = err.kind(), "task not run: its context could not be restored");
            return Some(if retry {
                Counters::bump(&stats.retried);
                let delay = prepared.policy.backoff.delay(task.attempt);
                done(
                    Outcome::Retry {
                        error: err.into_info(),
                        delay,
                    },
                    StatusUpdate::default(),
                )
            } else {
                Counters::bump(&stats.failed);
                done(Outcome::Failed(err.into_info()), StatusUpdate::default())
            });
        }
    };
    let backoff = prepared.policy.backoff;
    let cx = TaskCx::new(CxParts {
        id: task.lease.id,
        name: task.name.clone(),
        attempt: task.attempt,
        max_attempts: task.max_attempts,
        context: context.clone(),
        token: running.token.clone(),
        reporter: running.reporter.clone(),
        resources: shared.resources.clone(),
    });
    info!("task started");
    let began = Instant::now();
    let work = Context::scope_opt(context, AssertUnwindSafe(prepared.run(cx)).catch_unwind())
        .map(|r| r.unwrap_or_else(|panic| Err(panic_error(panic))));
    tokio::pin!(work);
    // A fired token decides, even if the task also returned in the same instant.
    let ended = tokio::select! {
        biased;
        _ = running.token.cancelled() => {
            let reason = running.reason();
            // Give the task a moment to notice its token and stop on its own.
            let late = tokio::time::timeout(shared.config.cancel_grace, &mut work).await.ok();
            Ended::Stopped(reason, late)
        }
        // The token can fire while the task is being polled, and the task return because of
        // it in that same poll: that is a stop, not the task's own outcome.
        r = &mut work => if running.token.is_cancelled() {
            Ended::Stopped(running.reason(), Some(r))
        } else {
            Ended::Finished(r)
        },
        _ = tokio::time::sleep(task.timeout) => Ended::TimedOut,
    };
    let took_ms = began.elapsed().as_millis() as u64;
    let failure = |err: TaskError| {
        if err.kind() == "panic" {
            Counters::bump(&stats.panicked);
        }
        let report = running.reporter.finish(Some(err.message()));
        let info = err.clone().into_info();
        if err.is_retryable() && task.attempt < task.max_attempts {
            let delay = backoff.delay(task.attempt);
            warn!(error = %err, retry_in_ms = delay.as_millis() as u64, took_ms, "task retrying");
            Counters::bump(&stats.retried);
            done(Outcome::Retry { error: info, delay }, report)
        } else {
            error!(error = %err, took_ms, "task failed");
            Counters::bump(&stats.failed);
            done(Outcome::Failed(info), report)
        }
    };
    Some(match ended {
        Ended::Finished(Ok(result)) | Ended::Stopped(StopReason::Shutdown, Some(Ok(result))) => {
            info!(took_ms, "task succeeded");
            Counters::bump(&stats.succeeded);
            done(Outcome::Success(result), running.reporter.finish(None))
        }
        Ended::Finished(Err(err)) => failure(err),
        Ended::TimedOut => {
            running.token.cancel();
            Counters::bump(&stats.timed_out);
            warn!(
                timeout_ms = task.timeout.as_millis() as u64,
                "task timed out"
            );
            failure(
                TaskError::retryable(format!(
                    "the attempt exceeded its timeout of {:?}",
                    task.timeout
                ))
                .with_kind("timeout"),
            )
        }
        Ended::Stopped(StopReason::LeaseLost, _) => {
            warn!("task abandoned: its lease was lost (another worker may run it)");
            Counters::bump(&stats.lost);
            return None;
        }
        Ended::Stopped(StopReason::Shutdown, _) => {
            info!("task released: worker shutting down, handed back without spending the attempt");
            Counters::bump(&stats.released);
            done(Outcome::Released, running.reporter.release())
        }
        Ended::Stopped(_, _) => {
            info!(took_ms, "task cancelled");
            Counters::bump(&stats.cancelled);
            done(
                Outcome::Cancelled,
                running.reporter.finish(Some("cancelled")),
            )
        }
    })
}

/// Opens a claimed task's sealed context and checks it against what the store says about the
/// task: the owner and correlation id the store shows (and lists the task under) must be the
/// ones sealed, and a task with an owner must have a context.
fn open_context(keys: &SealKeyRing, task: &Claimed) -> Result<Option<Context>, TaskError> {
    let integrity = |message: String| TaskError::fatal(message).with_kind(CONTEXT_INTEGRITY);
    let Some(sealed) = &task.context else {
        if task.owner != Owner::default() {
            return Err(integrity(
                "the task's record names an owner but carries no sealed context: it was altered in the store".into(),
            ));
        }
        return Ok(None);
    };
    let context = sealed.open(keys, task.seal_binding()).map_err(|e| {
        let error = if e.is_retryable() {
            TaskError::retryable(e.to_string())
        } else {
            TaskError::fatal(e.to_string())
        };
        error.with_kind(e.kind())
    })?;
    let sealed_owner = Owner {
        user_id: context.user_id().map(str::to_string),
        tenant: context.tenant().map(str::to_string),
    };
    if sealed_owner != task.owner || context.correlation_id() != task.correlation_id.as_deref() {
        return Err(integrity(
            "the task's record names another owner or correlation id than its sealed context: it was altered in the store".into(),
        ));
    }
    Ok(Some(context))
}

fn panic_error(panic: Box<dyn std::any::Any + Send>) -> TaskError {
    TaskError::retryable(format!("the task panicked: {}", panic_message(&panic))).with_kind("panic")
}

async fn complete_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Done>,
    stop: CancellationToken,
) {
    // Pauses stay well under a lease, so results are written soon after the store is back.
    let mut outage = Outage::new("complete", shared.config.lease / 3);
    let mut batch: Vec<Done> = Vec::with_capacity(256);
    let mut give_up: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, 256) => if n == 0 { return },
            _ = stop.cancelled(), if give_up.is_none() => {
                // Shutting down: every attempt has ended, so what is queued is all there is.
                give_up = Some(shutdown_deadline(&shared));
                while let Ok(d) = rx.try_recv() {
                    batch.push(d);
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        let (completions, permits): (Vec<Completion>, Vec<OwnedSemaphorePermit>) =
            batch.drain(..).map(|d| (d.completion, d.permit)).unzip();
        write_completions(&shared, &completions, &stop, &mut give_up, &mut outage).await;
        // Written (or given up on): the leases and slots are free.
        shared.forget(completions.iter().map(|c| c.lease));
        drop(permits);
        if give_up.is_some() && rx.is_empty() {
            return;
        }
    }
}

/// How long a stopping worker keeps trying to write results: one lease, after which the leases
/// lapse anyway.
fn shutdown_deadline(shared: &Shared) -> tokio::time::Instant {
    tokio::time::Instant::now() + shared.config.lease
}

/// Writes finished attempts. While the worker runs, a store that cannot be reached is retried
/// until it answers (if a lease lapses meanwhile, the store rejects that completion as stale and
/// the newer attempt wins); once it stops, for one more lease at most. A completion the store
/// refuses for good (not an outage) is written alone, so it cannot hold up the others, and
/// given up on: its lease lapses and the task runs again.
async fn write_completions(
    shared: &Shared,
    completions: &[Completion],
    stop: &CancellationToken,
    give_up: &mut Option<tokio::time::Instant>,
    outage: &mut Outage,
) {
    loop {
        let error = match shared.store.complete(completions.to_vec()).await {
            Ok(results) => {
                outage.ok();
                for (c, r) in completions.iter().zip(results) {
                    if r == CompleteResult::Stale {
                        warn!(task_id = %c.lease.id, "completion rejected: the lease was lost to a newer attempt");
                    }
                }
                return;
            }
            Err(e) => e,
        };
        if !error.is_unavailable() {
            for c in completions {
                if let Err(e) = shared.store.complete(vec![c.clone()]).await {
                    error!(
                        task_id = %c.lease.id,
                        error = %e,
                        "the store refused this attempt's result; its lease will lapse and the task run again"
                    );
                }
            }
            return;
        }
        if stop.is_cancelled() && give_up.is_none() {
            *give_up = Some(shutdown_deadline(shared));
        }
        if give_up.is_some_and(|at| tokio::time::Instant::now() >= at) {
            error!(
                error = %error,
                tasks = completions.len(),
                "stopping without writing these results; their leases will lapse and the tasks run again"
            );
            return;
        }
        // A shutdown cuts the running pause short once; after that, pauses run to the end.
        let cut = if give_up.is_none() {
            stop.clone()
        } else {
            CancellationToken::new()
        };
        outage.failed(&error, &cut).await;
    }
}

async fn heartbeat_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let every = (shared.config.lease / 3).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        let running: Vec<Arc<Running>> = shared.lock_running().values().cloned().collect();
        if running.is_empty() {
            continue;
        }
        let leases: Vec<Lease> = running.iter().map(|r| r.lease).collect();
        match shared.store.heartbeat(&leases, shared.config.lease).await {
            Ok(states) => apply_lease_states(&running, &states),
            Err(e) => warn!(error = %e, tasks = leases.len(), "lease renewal failed"),
        }
    }
}

fn apply_lease_states(running: &[Arc<Running>], states: &[LeaseState]) {
    for (r, state) in running.iter().zip(states) {
        match state {
            LeaseState::Held => {}
            LeaseState::CancelRequested => r.stop(StopReason::CancelRequested),
            LeaseState::Lost => r.stop(StopReason::LeaseLost),
        }
    }
}

async fn report_loop(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = shared.report_wake.notified() => {}
            _ = stop.cancelled() => return,
        }
        let running: Vec<Arc<Running>> = shared.lock_running().values().cloned().collect();
        let (who, updates): (Vec<_>, Vec<_>) = running
            .iter()
            .filter_map(|r| r.reporter.take_dirty().map(|u| (r.clone(), (r.lease, u))))
            .unzip();
        if !updates.is_empty() {
            match shared.store.report(updates.clone()).await {
                Ok(states) => apply_lease_states(&who, &states),
                Err(e) => {
                    debug!(error = %e, "status report failed; the next one carries it");
                    for (r, (_, update)) in who.iter().zip(&updates) {
                        r.reporter.redirty(update);
                    }
                    shared.report_wake.notify_one();
                }
            }
        }
        // Coalesce: whatever is reported during this pause goes out in one write.
        tokio::select! {
            _ = tokio::time::sleep(shared.config.report_interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn cancel_loop(
    shared: Arc<Shared>,
    stop: CancellationToken,
    listening: tokio::sync::oneshot::Sender<()>,
) {
    let mut outage = Outage::new("cancellations", Duration::from_secs(5));
    // Claims start after the first try, whether it subscribed or not (heartbeats are the
    // backstop while the store cannot be reached).
    let mut listening = Some(listening);
    loop {
        let subscribed = shared.store.cancellations().await;
        if let Some(tx) = listening.take() {
            let _ = tx.send(());
        }
        let mut stream = match subscribed {
            Ok(s) => {
                outage.ok();
                s
            }
            Err(e) => {
                outage.failed(&e, &stop).await;
                if stop.is_cancelled() {
                    return;
                }
                continue;
            }
        };
        loop {
            let id = tokio::select! {
                id = stream.next() => id,
                _ = stop.cancelled() => return,
            };
            let Some(id) = id else { break };
            let target = shared.lock_running().get(&id).cloned();
            if let Some(r) = target {
                r.stop(StopReason::CancelRequested);
            }
        }
        // The stream ended (connection lost): subscribe again after a pause.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn maintenance_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let cfg = &shared.config;
    let mut last_purge = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(cfg.reap_interval.max(Duration::from_millis(10))) => {}
            _ = stop.cancelled() => return,
        }
        match shared.store.reap().await {
            Ok(r) if r.requeued + r.failed + r.cancelled > 0 => info!(
                requeued = r.requeued,
                failed = r.failed,
                cancelled = r.cancelled,
                "reclaimed tasks whose lease lapsed"
            ),
            Ok(_) => {}
            Err(e) => debug!(error = %e, "reaper pass failed"),
        }
        if last_purge.elapsed() >= cfg.purge_interval {
            last_purge = Instant::now();
            match shared.store.purge_expired().await {
                Ok(0) => {}
                Ok(n) => debug!(purged = n, "purged expired task records"),
                Err(e) => debug!(error = %e, "purge failed"),
            }
        }
    }
}
