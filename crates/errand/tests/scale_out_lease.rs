//! Scale-out finding: a live worker must keep the lease of an attempt it has finished until
//! the attempt's completion is written, or the task runs again although nobody crashed.
//!
//! The restart proof (`scale_out.rs`) saw it across processes: after Redis was down 3 s, two
//! workers of 4 slots each re-ran up to 127 finished tasks, where at most 8 were running when
//! Redis went down. The cause is in errand-core's `Worker`:
//! - an attempt leaves the set the heartbeat loop renews as soon as it finishes, before the
//!   completer has written its completion;
//! - its slot is freed at the same moment, so the claim loop takes new work while completions
//!   wait;
//! - the completer retries a failed write with a pause that doubles up to 5 s and is not cut
//!   short when the store answers again (the claim loop, on its own pause, may resume first).
//!
//! So any completion that waits longer than a lease (a store outage, a slow store) lets the
//! reaper hand a finished task to another attempt. This test makes every completion take
//! longer than the lease, on one live worker: each task must still run once.

use async_trait::async_trait;
use errand_core::{
    CancelOutcome, ClaimRequest, Claimed, Client, CompleteResult, Completion, Enqueued,
    EventStream, Lease, LeaseState, ListQuery, NewTask, Page, QueueDepth, Reaped, Registry,
    RetryOutcome, SealKey, StatusUpdate, Store, StoreError, Task, TaskCx, TaskError, TaskId,
    TaskRecord, TaskState, WorkSignal, Worker,
};
use errand_redis::{RedisConfig, RedisStore};
use futures::stream::BoxStream;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A store whose completions take `delay` to be written, as after an outage or on a slow
/// store; everything else goes straight through.
struct SlowCompletions {
    inner: Arc<dyn Store>,
    delay: Duration,
}

#[async_trait]
impl Store for SlowCompletions {
    async fn enqueue(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, StoreError> {
        self.inner.enqueue(tasks).await
    }
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        self.inner.claim(request).await
    }
    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        self.inner.heartbeat(leases, extend).await
    }
    async fn report(
        &self,
        updates: Vec<(Lease, StatusUpdate)>,
    ) -> Result<Vec<LeaseState>, StoreError> {
        self.inner.report(updates).await
    }
    async fn complete(
        &self,
        completions: Vec<Completion>,
    ) -> Result<Vec<CompleteResult>, StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.complete(completions).await
    }
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.inner.get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list(query).await
    }
    async fn cancel(&self, id: TaskId) -> Result<CancelOutcome, StoreError> {
        self.inner.cancel(id).await
    }
    async fn retry(&self, id: TaskId) -> Result<RetryOutcome, StoreError> {
        self.inner.retry(id).await
    }
    async fn watch(&self, id: TaskId) -> Result<EventStream, StoreError> {
        self.inner.watch(id).await
    }
    async fn cancellations(&self) -> Result<BoxStream<'static, TaskId>, StoreError> {
        self.inner.cancellations().await
    }
    async fn work_signal(&self, queues: &[String]) -> Result<Box<dyn WorkSignal>, StoreError> {
        self.inner.work_signal(queues).await
    }
    async fn reap(&self) -> Result<Reaped, StoreError> {
        self.inner.reap().await
    }
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.inner.purge_expired().await
    }
    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        self.inner.depth().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

/// How often each task ran.
#[derive(Default)]
struct RunCounts(Mutex<HashMap<TaskId, u32>>);

/// Counts its run and returns at once.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Quick;

impl Task for Quick {
    const NAME: &'static str = "quick";
    type Output = ();

    async fn run(self, cx: TaskCx) -> Result<(), TaskError> {
        let counts = cx.resource::<RunCounts>()?;
        *counts
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(cx.id())
            .or_default() += 1;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fails until errand-core's Worker keeps a finished attempt's lease (and slot) until its completion is written"]
async fn a_late_completion_does_not_make_a_live_worker_run_a_task_again() {
    let prefix = format!(
        "proof-late-completion-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let redis = RedisStore::connect(
        "redis://127.0.0.1:6379",
        RedisConfig::default().prefix(&prefix),
    )
    .await
    .expect("connect to Redis");
    let lease = Duration::from_secs(1);
    let store: Arc<dyn Store> = Arc::new(SlowCompletions {
        inner: Arc::new(redis.clone()),
        delay: lease * 5 / 2,
    });
    let key = SealKey::generate();
    let mut registry = Registry::new();
    registry.register::<Quick>().expect("register");
    let counts = Arc::new(RunCounts::default());
    let worker = Worker::new(store.clone(), Arc::new(registry), key.clone())
        .concurrency(2)
        .lease(lease)
        .resource(counts.clone())
        .start();
    let client = Client::new(store.clone(), key);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(client.submit(Quick).await.expect("submit").id);
    }
    // A correct worker finishes them in a few slow completions; give it ample time.
    let deadline = Instant::now() + Duration::from_secs(30);
    let statuses = loop {
        let mut statuses = Vec::new();
        for id in &ids {
            statuses.push(store.get(*id).await.expect("get").expect("known").status);
        }
        if statuses.iter().all(|s| s.is_terminal()) || Instant::now() > deadline {
            break statuses;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stats = worker.shutdown(Duration::from_secs(10)).await;
    redis.clear().await.expect("clear the prefix");
    let counts = counts.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let runs: Vec<u32> = ids
        .iter()
        .map(|id| counts.get(id).copied().unwrap_or(0))
        .collect();
    assert_eq!(
        (statuses.as_slice(), runs.as_slice()),
        ([TaskState::Success; 4].as_slice(), [1, 1, 1, 1].as_slice()),
        "(states, runs per task) on one live worker whose completions take longer than a \
         lease; worker stats {stats:?}"
    );
}
