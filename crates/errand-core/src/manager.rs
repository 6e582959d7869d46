//! [`Manager`]: tracked in-process background tasks (fire-and-forget with names, timeouts,
//! context, bounded capacity, cancellation and graceful shutdown). Not durable: for work that
//! must survive the process, submit a [`Task`](crate::Task) to a store instead.

use crate::context::{Context, ContextSummary};
use crate::task::panic_message;
use futures::FutureExt;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn};

/// Manager settings.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Most tasks tracked at once; a spawn beyond it is rejected. Default 10,000.
    pub capacity: usize,
    /// Timeout of tasks spawned without one. Default: none.
    pub default_timeout: Option<Duration>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            default_timeout: None,
        }
    }
}

/// Why a spawn was refused. Work is never dropped silently: the caller gets this error.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SpawnError {
    /// The manager tracks `capacity` tasks already.
    #[error("the task manager is full ({capacity} tasks running); task {name:?} was rejected")]
    Full {
        /// The configured capacity.
        capacity: usize,
        /// The rejected task's name.
        name: String,
    },
    /// The manager is shutting down or shut down.
    #[error("the task manager is shut down; task {0:?} was rejected")]
    ShutDown(String),
}

/// How a managed task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEnd {
    /// It returned normally.
    Succeeded,
    /// It returned an error (the message).
    Failed(String),
    /// It panicked (the panic message).
    Panicked(String),
    /// It ran past its timeout and was dropped.
    TimedOut,
    /// It was cancelled.
    Cancelled,
}

/// What a managed future may return: `()` always succeeds, a `Result` fails on `Err`.
pub trait TaskResult: Send + 'static {
    /// The error message, if the task failed.
    fn failure(self) -> Option<String>;
}

impl TaskResult for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<T: Send + 'static, E: Display + Send + 'static> TaskResult for Result<T, E> {
    fn failure(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

/// Tracks background tasks of this process.
///
/// ```
/// use errand_core::{Context, Manager};
/// use std::time::Duration;
///
/// # #[tokio::main] async fn main() {
/// let manager = Manager::new(Default::default());
/// let ctx = Context::builder().user_id("alice").build();
/// manager
///     .task("publish_event")
///     .context(ctx)
///     .timeout(Duration::from_secs(10))
///     .metadata("event", "node_finished")
///     .spawn(async { Ok::<_, std::io::Error>(()) })
///     .unwrap();
/// let stats = manager.shutdown(Duration::from_secs(5)).await;
/// assert_eq!(stats.status, errand_core::ShutdownStatus::Completed);
/// # }
/// ```
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    config: ManagerConfig,
    tasks: Mutex<HashMap<u64, Tracked>>,
    /// Woken whenever the last task finishes.
    idle: Notify,
    next_id: AtomicU64,
    accepting: AtomicBool,
    counters: Counters,
}

struct Tracked {
    name: String,
    created: Instant,
    timeout: Option<Duration>,
    context: Option<Context>,
    metadata: BTreeMap<String, serde_json::Value>,
    token: CancellationToken,
    done: CancellationToken,
}

#[derive(Default)]
struct Counters {
    created: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    timed_out: AtomicU64,
    cancelled: AtomicU64,
    rejected: AtomicU64,
}

/// Lifetime counters of a [`Manager`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ManagerCounters {
    /// Tasks accepted.
    pub created: u64,
    /// Tasks that returned normally.
    pub succeeded: u64,
    /// Tasks that returned an error or panicked.
    pub failed: u64,
    /// Tasks that panicked (also counted in `failed`).
    pub panicked: u64,
    /// Tasks dropped at their timeout.
    pub timed_out: u64,
    /// Tasks cancelled.
    pub cancelled: u64,
    /// Spawns refused (full or shut down).
    pub rejected: u64,
}

/// One tracked task, as [`Manager::info`] shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskInfo {
    /// The manager's id for it.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Time since it was spawned, in seconds.
    pub age_s: f64,
    /// Its timeout, in seconds.
    pub timeout_s: Option<f64>,
    /// Who it runs for.
    pub context: Option<ContextSummary>,
    /// The metadata it was spawned with.
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// `running`, or `cancelling` once its token fired.
    pub state: &'static str,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownStatus {
    /// Every task finished within the drain.
    Completed,
    /// The drain passed; the remaining tasks were cancelled.
    Timeout,
    /// The manager had been shut down before.
    AlreadyShutdown,
}

/// What [`Manager::shutdown`] returns; the same shape on every call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShutdownStats {
    /// How it went.
    pub status: ShutdownStatus,
    /// Tasks running when shutdown began.
    pub initial: u64,
    /// Of those, how many returned normally.
    pub completed: u64,
    /// Of those, how many failed, panicked or timed out.
    pub failed: u64,
    /// Of those, how many were cancelled.
    pub cancelled: u64,
    /// Tasks still not finished when shutdown returned (stuck in blocking code).
    pub remaining: u64,
    /// How long shutdown took, in seconds.
    pub duration_s: f64,
}

impl Manager {
    /// A manager with `config`.
    pub fn new(config: ManagerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                tasks: Mutex::new(HashMap::new()),
                idle: Notify::new(),
                next_id: AtomicU64::new(1),
                accepting: AtomicBool::new(true),
                counters: Counters::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Tracked>> {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts describing a task called `name`; finish with [`SpawnBuilder::spawn`]. The context
    /// defaults to [`Context::current`] at this call.
    pub fn task(&self, name: impl Into<String>) -> SpawnBuilder<'_> {
        SpawnBuilder {
            manager: self,
            name: name.into(),
            timeout: self.inner.config.default_timeout,
            context: Context::current(),
            metadata: BTreeMap::new(),
        }
    }

    /// Tasks running now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no task runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The running tasks.
    pub fn info(&self) -> Vec<TaskInfo> {
        let mut out: Vec<TaskInfo> = self
            .lock()
            .iter()
            .map(|(id, t)| TaskInfo {
                id: *id,
                name: t.name.clone(),
                age_s: t.created.elapsed().as_secs_f64(),
                timeout_s: t.timeout.map(|d| d.as_secs_f64()),
                context: t.context.as_ref().map(Context::summary),
                metadata: t.metadata.clone(),
                state: if t.token.is_cancelled() {
                    "cancelling"
                } else {
                    "running"
                },
            })
            .collect();
        out.sort_by_key(|i| i.id);
        out
    }

    /// The lifetime counters.
    pub fn counters(&self) -> ManagerCounters {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ManagerCounters {
            created: get(&c.created),
            succeeded: get(&c.succeeded),
            failed: get(&c.failed),
            panicked: get(&c.panicked),
            timed_out: get(&c.timed_out),
            cancelled: get(&c.cancelled),
            rejected: get(&c.rejected),
        }
    }

    /// Cancels every running task and returns once all of them have actually finished;
    /// returns how many were cancelled.
    pub async fn cancel_all(&self) -> usize {
        let done: Vec<CancellationToken> = self
            .lock()
            .values()
            .map(|t| {
                t.token.cancel();
                t.done.clone()
            })
            .collect();
        for d in &done {
            d.cancelled().await;
        }
        done.len()
    }

    /// Waits until no task runs, at most `timeout`; never cancels anything. Returns whether
    /// every task finished.
    pub async fn wait_for_all(&self, timeout: Duration) -> bool {
        let idle = async {
            loop {
                let notified = self.inner.idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.is_empty() {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, idle).await.is_ok()
    }

    /// Stops accepting tasks, lets running ones finish within `drain`, cancels the rest, and
    /// reports. A second call reports `already_shutdown`.
    pub async fn shutdown(&self, drain: Duration) -> ShutdownStats {
        let began = Instant::now();
        if !self.inner.accepting.swap(false, Ordering::AcqRel) {
            return ShutdownStats {
                status: ShutdownStatus::AlreadyShutdown,
                initial: 0,
                completed: 0,
                failed: 0,
                cancelled: 0,
                remaining: self.len() as u64,
                duration_s: 0.0,
            };
        }
        let before = self.counters();
        let initial = self.len() as u64;
        let status = if self.wait_for_all(drain).await {
            ShutdownStatus::Completed
        } else {
            let stuck: Vec<CancellationToken> = self
                .lock()
                .values()
                .map(|t| {
                    t.token.cancel();
                    t.done.clone()
                })
                .collect();
            info!(
                remaining = stuck.len(),
                "manager drain timed out; cancelling remaining tasks"
            );
            // Cancelled futures are dropped at their next await; allow a moment for that.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                for d in &stuck {
                    d.cancelled().await;
                }
            })
            .await;
            ShutdownStatus::Timeout
        };
        let after = self.counters();
        let stats = ShutdownStats {
            status,
            initial,
            completed: after.succeeded - before.succeeded,
            failed: (after.failed - before.failed) + (after.timed_out - before.timed_out),
            cancelled: after.cancelled - before.cancelled,
            remaining: self.len() as u64,
            duration_s: began.elapsed().as_secs_f64(),
        };
        info!(?stats, "task manager shut down");
        stats
    }
}

/// Describes a task for [`Manager::task`].
#[must_use = "nothing runs until .spawn() is called"]
pub struct SpawnBuilder<'a> {
    manager: &'a Manager,
    name: String,
    timeout: Option<Duration>,
    context: Option<Context>,
    metadata: BTreeMap<String, serde_json::Value>,
}

impl SpawnBuilder<'_> {
    /// Drops the task if it runs longer than `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Runs it with `ctx` instead of the current context.
    pub fn context(mut self, ctx: Context) -> Self {
        self.context = Some(ctx);
        self
    }

    /// Runs it without context.
    pub fn without_context(mut self) -> Self {
        self.context = None;
        self
    }

    /// Attaches a metadata field, shown by [`Manager::info`].
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Spawns `future`.
    pub fn spawn<F>(self, future: F) -> Result<TaskHandle, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: TaskResult,
    {
        self.spawn_with(|_| future)
    }

    /// Spawns the future `make` builds from the task's cancellation token. The future itself
    /// is dropped as soon as the token fires (cleanup belongs in `Drop`); the token is for
    /// what the task hands it to, such as work it spawned elsewhere.
    pub fn spawn_with<F, M>(self, make: M) -> Result<TaskHandle, SpawnError>
    where
        M: FnOnce(CancellationToken) -> F,
        F: Future + Send + 'static,
        F::Output: TaskResult,
    {
        let inner = &self.manager.inner;
        let token = CancellationToken::new();
        let done = CancellationToken::new();
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut tasks = self.manager.lock();
            let refusal = if !inner.accepting.load(Ordering::Acquire) {
                Some(SpawnError::ShutDown(self.name.clone()))
            } else if tasks.len() >= inner.config.capacity {
                Some(SpawnError::Full {
                    capacity: inner.config.capacity,
                    name: self.name.clone(),
                })
            } else {
                None
            };
            if let Some(err) = refusal {
                inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
                warn!(task = %self.name, error = %err, "background task rejected");
                return Err(err);
            }
            tasks.insert(
                id,
                Tracked {
                    name: self.name.clone(),
                    created: Instant::now(),
                    timeout: self.timeout,
                    context: self.context.clone(),
                    metadata: self.metadata,
                    token: token.clone(),
                    done: done.clone(),
                },
            );
        }
        inner.counters.created.fetch_add(1, Ordering::Relaxed);

        let field =
            |f: fn(&Context) -> Option<&str>| self.context.as_ref().and_then(f).unwrap_or("");
        let span = tracing::info_span!(
            "background_task",
            task = %self.name,
            task_id = id,
            user_id = %field(Context::user_id),
            tenant = %field(Context::tenant),
            correlation_id = %field(Context::correlation_id),
        );
        // The task's own code (its future and its output's Display) runs under catch_unwind.
        let work = Context::scope_opt(
            self.context,
            AssertUnwindSafe(make(token.clone()).map(TaskResult::failure)).catch_unwind(),
        );
        let manager = self.manager.clone();
        let timeout = self.timeout;
        let cancel = token.clone();
        let join = tokio::spawn(
            async move {
                let deadline = async {
                    match timeout {
                        Some(t) => tokio::time::sleep(t).await,
                        None => std::future::pending().await,
                    }
                };
                // A fired token decides, even if the task also returned: it was cancelled.
                let end = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => TaskEnd::Cancelled,
                    // The token can fire after its branch was polled and before the task's,
                    // which then returns because of it in the same poll: still a cancellation.
                    r = work => match r {
                        _ if cancel.is_cancelled() => TaskEnd::Cancelled,
                        Ok(None) => TaskEnd::Succeeded,
                        Ok(Some(msg)) => TaskEnd::Failed(msg),
                        Err(panic) => TaskEnd::Panicked(panic_message(&panic)),
                    },
                    _ = deadline => TaskEnd::TimedOut,
                };
                manager.finished(id, &end);
                end
            }
            .instrument(span),
        );
        Ok(TaskHandle {
            id,
            token,
            join,
            done,
        })
    }
}

impl Manager {
    fn finished(&self, id: u64, end: &TaskEnd) {
        let c = &self.inner.counters;
        match end {
            TaskEnd::Succeeded => {
                c.succeeded.fetch_add(1, Ordering::Relaxed);
                debug!("background task succeeded");
            }
            TaskEnd::Failed(msg) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                error!(error = %msg, "background task failed");
            }
            TaskEnd::Panicked(msg) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                c.panicked.fetch_add(1, Ordering::Relaxed);
                error!(panic = %msg, "background task panicked");
            }
            TaskEnd::TimedOut => {
                c.timed_out.fetch_add(1, Ordering::Relaxed);
                warn!("background task timed out and was dropped");
            }
            TaskEnd::Cancelled => {
                c.cancelled.fetch_add(1, Ordering::Relaxed);
                debug!("background task cancelled");
            }
        }
        let mut tasks = self.lock();
        if let Some(t) = tasks.remove(&id) {
            t.done.cancel();
        }
        if tasks.is_empty() {
            self.inner.idle.notify_waiters();
        }
    }
}

/// A spawned task: its id, a way to cancel it, and its end.
pub struct TaskHandle {
    id: u64,
    token: CancellationToken,
    join: tokio::task::JoinHandle<TaskEnd>,
    done: CancellationToken,
}

impl TaskHandle {
    /// The manager's id for the task.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Cancels the task (it is dropped at its next await point).
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Whether it has finished.
    pub fn is_finished(&self) -> bool {
        self.done.is_cancelled()
    }

    /// Waits for the task's end.
    pub async fn wait(self) -> TaskEnd {
        self.join.await.unwrap_or(TaskEnd::Cancelled)
    }
}
