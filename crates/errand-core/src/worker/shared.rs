//! What a worker's loops share: the store, the attempts it holds ([`Running`]), the slots, the
//! counters, and the backoff of a loop whose store calls fail ([`Outage`]).

use super::WorkerConfig;
use super::attempt::Done;
use super::{WorkerStats, WorkerStatus};
use crate::cx::Reporter;
use crate::id::TaskId;
use crate::lease::Lease;
use crate::observer::AttemptObserver;
use crate::registry::Registry;
use crate::resources::Resources;
use crate::seal::SealKeyRing;
use crate::status::StatusUpdate;
use crate::store::{CompleteResult, Completion, Outcome, Store, StoreError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Told the store's answer to each written completion.
pub(crate) type Written = Arc<dyn Fn(Lease, CompleteResult) + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) keys: SealKeyRing,
    pub(crate) resources: Arc<Resources>,
    pub(crate) observer: Option<Arc<dyn AttemptObserver>>,
    /// Counts attempts per minute and queue for the operator views.
    pub(crate) recorder: Arc<crate::activity::Recorder>,
    pub(crate) config: WorkerConfig,
    /// Tasks held: `concurrency` plus the prefetch. A claim takes one per task.
    pub(crate) slots: Arc<Semaphore>,
    /// Tasks running: `concurrency`. An attempt takes one when it starts, and gives it up when
    /// its run ends (before its result is written).
    pub(crate) run_slots: Arc<Semaphore>,
    /// Fired when the worker begins to stop: nothing more is claimed (with completions or
    /// alone), and tasks claimed ahead that have not started are handed back.
    pub(crate) stopping: CancellationToken,
    pub(crate) running: Mutex<HashMap<TaskId, Arc<Running>>>,
    pub(crate) report_wake: Arc<Notify>,
    pub(crate) done_tx: mpsc::UnboundedSender<Done>,
    pub(crate) tasks: TaskTracker,
    pub(crate) stats: Counters,
    /// Told of every completion the store answered.
    pub(crate) written: Option<Written>,
    /// Turns true once the cancellation listener has tried to subscribe: nothing is claimed
    /// before (a cancellation sent earlier would only reach the task at a heartbeat).
    pub(crate) cancels_ready: tokio::sync::watch::Receiver<bool>,
    /// Whether the complete loop may claim with its writes ([`Store::complete_and_claim`]):
    /// true while a worker that claims runs. A claim with a write holds it for reading until
    /// its tasks started, so a shutdown that sets it false (taking it for writing) knows no
    /// such claim is still under way.
    pub(crate) claims_open: tokio::sync::RwLock<bool>,
}

impl Shared {
    pub(crate) fn lock_running(&self) -> MutexGuard<'_, HashMap<TaskId, Arc<Running>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives tasks a claim took but will not run back to the store untouched (`Released`: no
    /// attempt spent); `why` says what they were, in the log if the store refuses.
    pub(crate) async fn hand_back(&self, leases: Vec<Lease>, why: &'static str) {
        if leases.is_empty() {
            return;
        }
        let back = leases
            .into_iter()
            .map(|lease| Completion {
                lease,
                outcome: Outcome::Released,
                report: StatusUpdate::default(),
            })
            .collect();
        if let Err(e) = self.store.complete(back).await {
            warn!(error = %e, tasks = why, "could not hand back tasks a claim took; their leases will lapse");
        }
    }

    /// Stops tracking the attempts holding `leases` (a newer attempt of a task stays).
    pub(crate) fn forget(&self, leases: impl IntoIterator<Item = Lease>) {
        let mut running = self.lock_running();
        for lease in leases {
            if running.get(&lease.id).is_some_and(|r| r.lease == lease) {
                running.remove(&lease.id);
            }
        }
    }
}

/// One running attempt, as the worker's loops see it.
pub(crate) struct Running {
    pub(crate) lease: Lease,
    pub(crate) token: CancellationToken,
    pub(crate) reporter: Arc<Reporter>,
    pub(crate) reason: AtomicU8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum StopReason {
    None = 0,
    CancelRequested = 1,
    Shutdown = 2,
    LeaseLost = 3,
}

impl Running {
    pub(crate) fn stop(&self, reason: StopReason) {
        let _ = self.reason.compare_exchange(
            StopReason::None as u8,
            reason as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.token.cancel();
    }

    /// Whether the attempt was stopped because someone cancelled the task.
    pub(crate) fn cancel_requested(&self) -> bool {
        self.reason() == StopReason::CancelRequested
    }

    pub(crate) fn reason(&self) -> StopReason {
        match self.reason.load(Ordering::Acquire) {
            1 => StopReason::CancelRequested,
            2 => StopReason::Shutdown,
            3 => StopReason::LeaseLost,
            _ => StopReason::None,
        }
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) claimed: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) lost: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(
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
pub(crate) struct Outage {
    pub(crate) what: &'static str,
    pub(crate) pause: Duration,
    pub(crate) max_pause: Duration,
    pub(crate) since: Option<Instant>,
}

impl Outage {
    pub(crate) fn new(what: &'static str, max_pause: Duration) -> Self {
        Self {
            what,
            pause: Duration::from_millis(50),
            max_pause: max_pause.max(Duration::from_millis(50)),
            since: None,
        }
    }

    pub(crate) fn ok(&mut self) {
        if let Some(since) = self.since.take() {
            info!(
                what = self.what,
                down_ms = since.elapsed().as_millis() as u64,
                "task store reachable again"
            );
        }
        self.pause = Duration::from_millis(50);
    }

    pub(crate) async fn failed(&mut self, err: &StoreError, stop: &CancellationToken) {
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
