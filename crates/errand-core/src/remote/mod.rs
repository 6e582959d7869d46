//! [`RemoteWorkers`]: tasks run by workers in other processes and languages, over the worker
//! protocol (`docs/worker-protocol.md`).
//!
//! A remote attempt runs inside the same machinery as a Rust [`Worker`](crate::Worker)'s: this
//! process claims it from the store and holds its lease (renewed by the worker runtime's
//! heartbeat), opens and checks its sealed context, enforces its timeout, fires its
//! cancellation, writes its reports and outcome under the lease token, decides retries and
//! backoff, and hands it back at shutdown. The remote worker only runs the code: it receives
//! the task with its context in clear, heartbeats, and sends its outcome. A worker that goes
//! silent for its lease loses the attempt (`worker_lost`, retryable).

mod held;
pub mod types;
pub mod wire;

use crate::activity::presence::WorkerPresence;
use crate::activity::{Instances, Publisher};
use crate::lease::{Lease, LeaseToken};
use crate::registry::{Prepared, Registry};
use crate::resources::Resources;
use crate::seal::SealKeyRing;
use crate::store::{ClaimRequest, CompleteResult, Store, StoreError};
use crate::task::TaskError;
use crate::worker::{Worker, WorkerConfig, WorkerHandle, WorkerStats, run_task};
use chrono::Utc;
use held::{Ledger, hand_off};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use types::RemoteTaskType;
use wire::{
    Assignment, ClaimSpec, CompletionAnswer, CompletionItem, HeartbeatItem, LeaseAnswer,
    WireOutcome, WorkerInfo,
};

/// Longest wait of a claim.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// The default lease of a remote worker: how long it may go without a heartbeat.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// How long a completion waits for the store's answer before answering "not yet".
const ACK_WAIT: Duration = Duration::from_secs(10);

/// Settings of the remote-worker runtime of one process.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Most remote attempts this process holds at once. Default 10,000.
    pub capacity: usize,
    /// The store lease this process takes on each remote attempt and renews while its worker
    /// heartbeats. Default 30 s.
    pub lease: Duration,
    /// Time a cancelled attempt gets to stop before it is ended as cancelled. Default 5 s.
    pub cancel_grace: Duration,
    /// Longest sleep between two claims of a waiting poll when the store signals nothing.
    /// Default 1 s.
    pub poll_interval: Duration,
    /// This process's id, recorded with its claims.
    pub id: String,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        let worker = WorkerConfig::default();
        Self {
            capacity: 10_000,
            lease: worker.lease,
            cancel_grace: worker.cancel_grace,
            poll_interval: worker.poll_interval,
            id: format!("remote-{}", worker.id),
        }
    }
}

/// Why a claim, heartbeat or completion could not be served.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The process is shutting down and takes no more claims.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The remote-worker runtime of one process. Cheap to share (`Arc`).
pub struct RemoteWorkers {
    store: Arc<dyn Store>,
    ledger: Arc<Ledger>,
    handle: Mutex<Option<WorkerHandle>>,
    shared: Arc<crate::worker::Shared>,
    stop: tokio_util::sync::CancellationToken,
    config: RemoteConfig,
    instances: Arc<Instances>,
}

impl RemoteWorkers {
    /// Starts the runtime on the current tokio runtime: its loops renew the leases of the
    /// attempts it holds, write their reports and outcomes, and listen for cancellations.
    /// It claims nothing until a remote worker asks ([`RemoteWorkers::claim`]).
    pub fn start(
        store: Arc<dyn Store>,
        keys: impl Into<SealKeyRing>,
        config: RemoteConfig,
    ) -> Arc<Self> {
        let ledger = Arc::new(Ledger::default());
        let worker_config = WorkerConfig {
            concurrency: config.capacity.max(1),
            claim_batch: wire::MAX_BATCH,
            lease: config.lease,
            cancel_grace: config.cancel_grace,
            poll_interval: config.poll_interval,
            maintenance: false,
            id: config.id.clone(),
            ..WorkerConfig::default()
        };
        let written = {
            let ledger = ledger.clone();
            Arc::new(move |lease: Lease, result: CompleteResult| ledger.written(lease, result))
        };
        let instances = Arc::new(Instances::default());
        let handle = Worker::new(store.clone(), Arc::new(Registry::new()), keys)
            .config(worker_config)
            .publisher(Publisher::Remote(instances.clone()))
            .resources(Resources::new())
            .start_runtime(false, Some(written));
        Arc::new(Self {
            store,
            ledger,
            shared: handle.shared.clone(),
            stop: handle.stop_claiming.clone(),
            handle: Mutex::new(Some(handle)),
            config,
            instances,
        })
    }

    /// Records that `worker` (the token's worker name), as the instance `info` describes,
    /// was heard from, running `running` tasks when known.
    fn heard(
        &self,
        worker: &str,
        info: Option<&WorkerInfo>,
        queues: Vec<String>,
        running: Option<u32>,
    ) {
        let now = chrono::Utc::now();
        let id = info.map_or_else(
            || worker.to_string(),
            |i| format!("{worker}/{}", i.instance),
        );
        self.instances.heard(
            WorkerPresence {
                id,
                host: info
                    .and_then(|i| i.host.clone())
                    .unwrap_or_else(|| "unknown".into()),
                language: info
                    .and_then(|i| i.language.clone())
                    .unwrap_or_else(|| "unknown".into()),
                queues,
                concurrency: info.and_then(|i| i.concurrency).unwrap_or(0),
                running: 0,
                started_at: now,
                last_seen: now,
            },
            running,
        );
    }

    /// Claims up to `spec.max` tasks of `spec.types` for `worker`, waiting up to
    /// `spec.wait_s` for work; a submission wakes the wait at once. `types` are the remote
    /// task types known now (their policies decide retries).
    pub async fn claim(
        &self,
        worker: &str,
        spec: &ClaimSpec,
        types: &std::collections::BTreeMap<String, RemoteTaskType>,
    ) -> Result<Vec<Assignment>, RemoteError> {
        let max = usize::try_from(spec.max).unwrap_or(usize::MAX);
        if spec.types.is_empty() || !(1..=wire::MAX_BATCH).contains(&max) {
            return Err(RemoteError::Invalid(format!(
                "a claim names at least one task type and a `max` from 1 to {}",
                wire::MAX_BATCH
            )));
        }
        let wait = secs(spec.wait_s, "wait_s", 0.0, MAX_WAIT.as_secs_f64())?.unwrap_or(MAX_WAIT);
        let silence = secs(spec.lease_s, "lease_s", 2.0, 600.0)?.unwrap_or(DEFAULT_LEASE);
        let wanted: BTreeSet<&str> = spec.types.iter().map(String::as_str).collect();
        let queues: Vec<String> = match &spec.queues {
            Some(q) if !q.is_empty() => q.clone(),
            _ => {
                let q: BTreeSet<String> = spec
                    .types
                    .iter()
                    .filter_map(|t| types.get(t).map(|t| t.queue.clone()))
                    .collect();
                if q.is_empty() {
                    return Err(RemoteError::Invalid(
                        "none of the claim's task types is registered; register them first (PUT /v1/worker/task-types)".into(),
                    ));
                }
                q.into_iter().collect()
            }
        };
        if let Some(info) = &spec.worker {
            info.validate().map_err(RemoteError::Invalid)?;
        }
        let info = spec.worker.as_ref();
        // A claim asks for the free slots: what the instance runs is the rest.
        let running = info
            .and_then(|i| i.concurrency)
            .map(|c| c.saturating_sub(spec.max));
        self.heard(worker, info, queues.clone(), running);
        let deadline = tokio::time::Instant::now() + wait;
        let mut ready = self.shared.cancels_ready.clone();
        tokio::select! {
            _ = ready.wait_for(|r| *r) => {}
            _ = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
        }
        let mut signal = self.store.work_signal(&queues).await?;
        loop {
            if self.stop.is_cancelled() {
                return Err(RemoteError::ShuttingDown);
            }
            let mut permits = Vec::new();
            while permits.len() < max {
                match self.shared.slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let claimed = if permits.is_empty() {
                Vec::new()
            } else {
                self.store
                    .claim(&ClaimRequest {
                        queues: queues.clone(),
                        limit: permits.len(),
                        lease: self.config.lease,
                        worker_id: worker.to_string(),
                    })
                    .await?
            };
            let mut waiting = Vec::new();
            let mut foreign = Vec::new();
            for task in claimed {
                let Some(permit) = permits.pop() else {
                    foreign.push(task.lease);
                    continue;
                };
                if !wanted.contains(task.name.as_str()) {
                    foreign.push(task.lease);
                    continue;
                }
                let policy = types
                    .get(&task.name)
                    .map(RemoteTaskType::policy)
                    .unwrap_or_else(|| {
                        // Registered so recently that this copy of the table lacks it.
                        RemoteTaskType::with_defaults(&task.name, &task.queue).policy()
                    });
                let (assign, assigned) = oneshot::channel();
                let ledger = self.ledger.clone();
                let handed = task.clone();
                let prepared = Prepared::new(policy, move |cx| {
                    Box::pin(hand_off(ledger, handed, cx, silence, assign))
                });
                let prepare = Box::new(move |_: &_| Ok(prepared));
                self.shared
                    .tasks
                    .spawn(run_task(self.shared.clone(), task, prepare, permit));
                waiting.push(assigned);
            }
            drop(permits);
            // Another worker's types (or more than asked): back untouched.
            self.shared.hand_back(foreign, "of other task types").await;
            let mut assignments = Vec::with_capacity(waiting.len());
            for assigned in waiting {
                // An attempt that never reaches its run (its context failed its check) drops
                // the sender: it was failed by the runtime, and nothing is handed over.
                if let Ok(a) = assigned.await {
                    assignments.push(a);
                }
            }
            if !assignments.is_empty() {
                return Ok(assignments);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let nap = (deadline - now).min(self.config.poll_interval);
            tokio::select! {
                _ = signal.wait(nap) => {}
                _ = self.stop.cancelled() => return Err(RemoteError::ShuttingDown),
            }
        }
    }

    /// Renews the leases of `worker` (the instance `info` describes, when given) and applies
    /// what their tasks reported; one answer per item.
    pub fn heartbeat(
        &self,
        worker: &str,
        info: Option<&WorkerInfo>,
        items: &[HeartbeatItem],
    ) -> Vec<LeaseAnswer> {
        self.heard(
            worker,
            info,
            Vec::new(),
            Some(u32::try_from(items.len()).unwrap_or(u32::MAX)),
        );
        items
            .iter()
            .map(|item| {
                let held = lease(item.task_id, &item.lease_token).and_then(|l| self.ledger.get(l));
                match held {
                    Some(h) => {
                        h.seen();
                        h.apply(&item.report);
                        LeaseAnswer {
                            task_id: item.task_id,
                            held: true,
                            cancel_requested: self.cancel_requested(h.lease),
                            lease_deadline: Some(Utc::now() + h.silence),
                        }
                    }
                    None => LeaseAnswer {
                        task_id: item.task_id,
                        held: false,
                        cancel_requested: false,
                        lease_deadline: None,
                    },
                }
            })
            .collect()
    }

    fn cancel_requested(&self, lease: Lease) -> bool {
        self.shared
            .lock_running()
            .get(&lease.id)
            .is_some_and(|r| r.lease == lease && r.cancel_requested())
    }

    /// Ends the worker's attempts with their outcomes, each written under its lease; answers
    /// whether each was written (`accepted`) or refused as no longer current (`fenced`).
    pub async fn complete(&self, items: Vec<CompletionItem>) -> Vec<CompletionAnswer> {
        let mut pending = Vec::with_capacity(items.len());
        for item in items {
            let task_id = item.task_id;
            let Some(held) = lease(task_id, &item.lease_token).and_then(|l| self.ledger.get(l))
            else {
                pending.push((task_id, None));
                continue;
            };
            held.seen();
            held.apply(&item.report);
            let acked = held.finish(output(item));
            pending.push((task_id, acked.map(|a| (held.lease, a))));
        }
        let mut answers = Vec::with_capacity(pending.len());
        for (task_id, acked) in pending {
            let answer = match acked {
                None => (false, true),
                Some((lease, acked)) => match tokio::time::timeout(ACK_WAIT, acked).await {
                    Ok(Ok(CompleteResult::Applied)) => (true, false),
                    Ok(Ok(CompleteResult::Stale)) => (false, true),
                    // The attempt ended without a write of this outcome (its lease was lost
                    // meanwhile), or the store is slow to answer.
                    Ok(Err(_)) => (false, true),
                    Err(_) => {
                        self.ledger.written(lease, CompleteResult::Stale);
                        (false, false)
                    }
                },
            };
            answers.push(CompletionAnswer {
                task_id,
                accepted: answer.0,
                fenced: answer.1,
            });
        }
        answers
    }

    /// Remote attempts held now.
    pub fn held(&self) -> usize {
        self.shared.lock_running().len()
    }

    /// Stops claiming; attempts still held get `drain` to finish, then are handed back
    /// without spending an attempt. Returns the runtime's counters (`None` if already
    /// stopped).
    pub async fn shutdown(&self, drain: Duration) -> Option<WorkerStats> {
        let handle = self
            .handle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        // Past the drain no worker will finish them here: each is handed back at once, rather
        // than waiting out the cancel grace for an outcome that cannot come.
        let ledger = self.ledger.clone();
        let give_back = tokio::spawn(async move {
            tokio::time::sleep(drain).await;
            ledger.release_all();
        });
        let stats = handle.shutdown(drain).await;
        give_back.abort();
        Some(stats)
    }
}

fn lease(id: crate::id::TaskId, token: &str) -> Option<Lease> {
    token
        .parse::<LeaseToken>()
        .ok()
        .map(|token| Lease { id, token })
}

fn secs(
    value: Option<f64>,
    field: &str,
    min: f64,
    max: f64,
) -> Result<Option<Duration>, RemoteError> {
    match value {
        None => Ok(None),
        Some(v) if v.is_finite() && v >= min && v <= max => Ok(Some(Duration::from_secs_f64(v))),
        Some(_) => Err(RemoteError::Invalid(format!(
            "`{field}` must be a number of seconds from {min} to {max}"
        ))),
    }
}

/// A worker's outcome as the attempt machinery takes it.
fn output(item: CompletionItem) -> crate::registry::Output {
    match item.outcome {
        WireOutcome::Success => Ok(item
            .result
            .unwrap_or_else(|| serde_json::value::RawValue::NULL.to_owned())),
        WireOutcome::Cancelled => Err(TaskError::cancelled(
            "the worker stopped the task as cancelled",
        )),
        WireOutcome::Released => Err(TaskError::released("the worker handed the task back")),
        WireOutcome::Failure => {
            let e = item.error.unwrap_or(wire::WireError {
                message: "the worker reported a failure without an error".into(),
                kind: None,
                details: None,
                retryable: true,
                retry_in_s: None,
            });
            let mut err = if e.retryable {
                TaskError::retryable(e.message)
            } else {
                TaskError::fatal(e.message)
            };
            if let Some(kind) = e.kind {
                err = err.with_kind(kind);
            }
            if let Some(details) = e.details {
                err = err.with_details(details);
            }
            if let Some(delay) = e
                .retry_in_s
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
            {
                err = err.with_retry_in(delay);
            }
            Err(err)
        }
    }
}
