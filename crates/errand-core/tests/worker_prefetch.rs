//! Prefetch: tasks claimed ahead of the running ones wait for a run slot with their leases
//! renewed, never run more than `concurrency` at once, time out from their start, end unrun
//! when cancelled, and are handed back at once, their attempt unspent, when the worker stops.

mod common;

use common::faulty_store::FaultyStore;
use common::{LONG, until};
use errand_core::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// What the [`Gated`] tasks of one test share: how many started, how many run now and the
/// most that ran at once, and the gate they wait behind.
#[derive(Default)]
struct Gate {
    started: AtomicUsize,
    running: AtomicUsize,
    most: AtomicUsize,
    open: AtomicBool,
}

/// Runs until its test opens the [`Gate`] (and at least `ms`), deaf to cancellation, under a
/// timeout of `timeout_ms`.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct Gated {
    ms: u64,
    timeout_ms: u64,
}

impl Task for Gated {
    const NAME: &'static str = "gated";
    type Output = ();
    async fn run(self, cx: TaskCx) -> Result<(), TaskError> {
        let gate = cx.resource::<Gate>()?;
        gate.started.fetch_add(1, Ordering::SeqCst);
        let now = gate.running.fetch_add(1, Ordering::SeqCst) + 1;
        gate.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        while !gate.open.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        gate.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// The workers' lease: short, so that a held task whose lease were not renewed would be
/// reaped within the tests, yet with heartbeats (a third of it apart) that survive a loaded
/// machine's stalls.
const LEASE: Duration = Duration::from_millis(1000);

struct Bench {
    store: Arc<dyn Store>,
    client: Client,
    gate: Arc<Gate>,
}

/// A worker running `concurrency` tasks at once with `prefetch` more claimed ahead, on a short
/// lease that the heartbeat must renew for the held tasks, and its own reaper.
fn start(concurrency: usize, prefetch: usize, gate_open: bool) -> (Bench, WorkerHandle) {
    start_on(
        Arc::new(MemoryStore::new()),
        concurrency,
        prefetch,
        gate_open,
    )
}

/// [`start`] on `store`.
fn start_on(
    store: Arc<dyn Store>,
    concurrency: usize,
    prefetch: usize,
    gate_open: bool,
) -> (Bench, WorkerHandle) {
    let key = SealKey::generate();
    let mut registry = Registry::new();
    registry.register::<Gated>().expect("one task");
    let gate = Arc::new(Gate {
        open: AtomicBool::new(gate_open),
        ..Gate::default()
    });
    let worker = Worker::new(store.clone(), Arc::new(registry), key.clone())
        .config(WorkerConfig {
            cancel_grace: Duration::from_millis(1000),
            publish_interval: Duration::from_millis(50),
            ..WorkerConfig::default()
        })
        .concurrency(concurrency)
        .prefetch(prefetch)
        .lease(LEASE)
        .resource(gate.clone())
        .start();
    let bench = Bench {
        client: Client::new(store.clone(), key),
        store,
        gate,
    };
    (bench, worker)
}

async fn submit(b: &Bench, n: usize, ms: u64, timeout_ms: u64) -> Vec<TaskId> {
    b.client
        .submit_batch((0..n).map(|_| Gated { ms, timeout_ms }))
        .await
        .expect("submit")
        .into_iter()
        .map(|e| e.id)
        .collect()
}

/// Waits until a task has started (the store shows a task `running` from its claim on).
async fn first_started(b: &Bench) {
    let deadline = tokio::time::Instant::now() + LONG;
    while b.gate.started.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no task started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until every task of `ids` is claimed.
async fn all_running(b: &Bench, ids: &[TaskId]) {
    for id in ids {
        until(&b.store, *id, LONG, |r| r.status == TaskState::Running).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_tasks_wait_for_a_slot_under_renewed_leases() {
    let (b, worker) = start(2, 3, false);
    let ids = submit(&b, 5, 0, 3_600_000).await;
    // All five are claimed at once, two of them run.
    all_running(&b, &ids).await;
    // Three leases pass: a held task whose lease were not renewed would be reaped and claimed
    // again as a second attempt.
    tokio::time::sleep(LEASE * 3 + Duration::from_millis(200)).await;
    assert_eq!(b.gate.started.load(Ordering::SeqCst), 2);
    // The operators' view counts the two running, not the three held.
    let presence = errand_core::activity::workers(b.store.as_ref())
        .await
        .expect("presences");
    assert_eq!(
        presence.iter().map(|p| p.running).collect::<Vec<_>>(),
        vec![2]
    );
    for id in &ids {
        let r = b.store.get(*id).await.expect("get").expect("record");
        assert_eq!((r.status, r.attempt), (TaskState::Running, 1), "{id}");
    }
    b.gate.open.store(true, Ordering::SeqCst);
    for id in &ids {
        let r = common::finished(&b.store, *id, LONG).await;
        assert_eq!((r.status, r.attempt), (TaskState::Success, 1), "{id}");
    }
    assert_eq!(b.gate.started.load(Ordering::SeqCst), 5);
    assert_eq!(b.gate.most.load(Ordering::SeqCst), 2);
    let stats = worker.shutdown(LONG).await;
    assert_eq!((stats.claimed, stats.succeeded, stats.lost), (5, 5, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_task_times_out_from_its_start_not_its_claim() {
    // One at a time, 200 ms each under a 600 ms timeout (three times what each needs): the
    // fourth starts 600 ms after its claim, and would time out if its clock started there.
    let (b, worker) = start(1, 3, true);
    let ids = submit(&b, 4, 200, 600).await;
    for id in &ids {
        let r = common::finished(&b.store, *id, LONG).await;
        assert_eq!(
            (r.status, r.attempt),
            (TaskState::Success, 1),
            "{id}: {r:?}"
        );
    }
    assert_eq!(b.gate.most.load(Ordering::SeqCst), 1);
    let stats = worker.shutdown(LONG).await;
    assert_eq!((stats.succeeded, stats.timed_out), (4, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_held_task_ends_without_running() {
    let (b, worker) = start(1, 1, false);
    let ids = submit(&b, 2, 0, 3_600_000).await;
    all_running(&b, &ids).await;
    // The store shows both running from their claim; one of them starts.
    first_started(&b).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.gate.started.load(Ordering::SeqCst), 1);
    // Both are cancelled: the running one (deaf to its token) is dropped after the grace, the
    // held one ends at once without ever taking the slot the other frees.
    for id in &ids {
        let outcome = b
            .store
            .cancel(*id, &Owner::new("tester", None))
            .await
            .expect("cancel");
        assert!(
            matches!(outcome, CancelOutcome::Requested(_)),
            "{outcome:?}"
        );
    }
    for id in &ids {
        let r = common::finished(&b.store, *id, LONG).await;
        assert_eq!(r.status, TaskState::Cancelled, "{id}");
    }
    let stats = worker.shutdown(LONG).await;
    assert_eq!(
        b.gate.started.load(Ordering::SeqCst),
        1,
        "the held task never ran"
    );
    assert_eq!(stats.cancelled, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_held_tasks_back_at_once() {
    let (b, worker) = start(1, 2, false);
    let ids = submit(&b, 3, 0, 3_600_000).await;
    all_running(&b, &ids).await;
    first_started(&b).await;
    // The running task finishes within the drain; the two held ones must not start in it.
    let gate = b.gate.clone();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        gate.open.store(true, Ordering::SeqCst);
    });
    let stats = worker.shutdown(LONG).await;
    release.await.expect("the release runs");
    assert_eq!(stats.status, WorkerStatus::Completed);
    assert_eq!((stats.succeeded, stats.released), (1, 2));
    assert_eq!(stats.claimed, 3, "a handed-back task was claimed again");
    assert_eq!(b.gate.started.load(Ordering::SeqCst), 1);
    let mut states = Vec::new();
    for id in &ids {
        let r = b.store.get(*id).await.expect("get").expect("record");
        states.push((r.status, r.attempt));
    }
    states.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(
        states,
        vec![
            (TaskState::Pending, 0),
            (TaskState::Pending, 0),
            (TaskState::Success, 1)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_returns_during_the_shutdown_starts_nothing() {
    // The claim answers 500 ms after it took the task; the shutdown begins meanwhile. Its task
    // finds a free run slot, but a worker that claims ahead starts nothing once it stops.
    let store = Arc::new(FaultyStore {
        claim_delay: Duration::from_millis(500),
        ..Default::default()
    });
    let (b, worker) = start_on(store, 1, 2, true);
    let ids = submit(&b, 1, 0, 3_600_000).await;
    all_running(&b, &ids).await;
    let stats = worker.shutdown(LONG).await;
    assert_eq!(b.gate.started.load(Ordering::SeqCst), 0);
    assert_eq!((stats.claimed, stats.released), (1, 1));
    let r = b.store.get(ids[0]).await.expect("get").expect("record");
    assert_eq!((r.status, r.attempt), (TaskState::Pending, 0));
}
