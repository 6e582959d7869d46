//! [`FaultyStore`]: a memory store with faults the worker tests switch on.

use errand_core::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// A memory store with faults to switch on: slow claims, slow completions, an outage, stalled
/// heartbeats, a result it refuses for good; it counts `report` calls.
#[derive(Default)]
pub struct FaultyStore {
    pub inner: MemoryStore,
    pub reports: AtomicUsize,
    pub complete_delay: Duration,
    pub claim_delay: Duration,
    pub down: AtomicBool,
    pub heartbeats_stalled: AtomicBool,
    pub refuse_result_of: std::sync::Mutex<Option<TaskId>>,
}

impl FaultyStore {
    fn up(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("switched off by the test".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for FaultyStore {
    async fn enqueue(&self, t: Vec<NewTask>) -> Result<Vec<Enqueued>, StoreError> {
        self.up()?;
        self.inner.enqueue(t).await
    }
    async fn claim(&self, r: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        self.up()?;
        let claimed = self.inner.claim(r).await;
        tokio::time::sleep(self.claim_delay).await;
        claimed
    }
    async fn heartbeat(&self, l: &[Lease], e: Duration) -> Result<Vec<LeaseState>, StoreError> {
        self.up()?;
        if self.heartbeats_stalled.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "heartbeats stalled by the test".into(),
            ));
        }
        self.inner.heartbeat(l, e).await
    }
    async fn report(&self, u: Vec<(Lease, StatusUpdate)>) -> Result<Vec<LeaseState>, StoreError> {
        self.up()?;
        self.reports.fetch_add(1, Ordering::Relaxed);
        self.inner.report(u).await
    }
    async fn complete(&self, c: Vec<Completion>) -> Result<Vec<CompleteResult>, StoreError> {
        tokio::time::sleep(self.complete_delay).await;
        self.up()?;
        let refused = *self.refuse_result_of.lock().expect("lock");
        if c.iter().any(|c| Some(c.lease.id) == refused) {
            return Err(StoreError::Invalid(
                "this result is too large for the store".into(),
            ));
        }
        self.inner.complete(c).await
    }
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.inner.get(id).await
    }
    async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list(q).await
    }
    async fn cancel(&self, id: TaskId, by: &Owner) -> Result<CancelOutcome, StoreError> {
        self.inner.cancel(id, by).await
    }
    async fn retry(&self, id: TaskId, by: &Owner) -> Result<RetryOutcome, StoreError> {
        self.inner.retry(id, by).await
    }
    async fn watch(&self, id: TaskId) -> Result<EventStream, StoreError> {
        self.inner.watch(id).await
    }
    async fn cancellations(
        &self,
    ) -> Result<futures::stream::BoxStream<'static, TaskId>, StoreError> {
        self.inner.cancellations().await
    }
    async fn work_signal(&self, q: &[String]) -> Result<Box<dyn WorkSignal>, StoreError> {
        self.inner.work_signal(q).await
    }
    async fn reap(&self) -> Result<Reaped, StoreError> {
        self.up()?;
        self.inner.reap().await
    }
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.inner.purge_expired().await
    }
    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        self.inner.depth().await
    }
    async fn counts(&self, owner: &OwnerFilter) -> Result<StateCounts, StoreError> {
        self.inner.counts(owner).await
    }
    async fn queues(&self) -> Result<Vec<QueueCounts>, StoreError> {
        self.inner.queues().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.up()
    }
    async fn healthy(&self) -> Result<(), StoreError> {
        self.inner.healthy().await
    }
    async fn warnings(&self) -> Result<Vec<String>, StoreError> {
        self.inner.warnings().await
    }
    async fn get_meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.inner.get_meta(name).await
    }
    async fn swap_meta(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        self.inner.swap_meta(name, expected, value).await
    }
}
