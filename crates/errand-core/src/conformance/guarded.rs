//! [`Guarded`]: a store that keeps something alive (a temporary directory, a key-cleaning
//! guard) for as long as the store lives, and otherwise forwards every call.

use crate::lease::{Lease, LeaseState};
use crate::store::{
    CancelOutcome, ClaimRequest, Claimed, CompleteResult, Completion, Enqueued, EventStream,
    ListQuery, NewTask, OwnerFilter, Page, QueueCounts, QueueDepth, Reaped, RetryOutcome,
    StateCounts, Store, StoreError, WorkSignal,
};
use crate::{Owner, StatusUpdate, TaskId, TaskRecord};
use async_trait::async_trait;
use futures::stream::BoxStream;
use std::time::Duration;

/// `store`, with `guard` dropped after it: give a conformance case a store whose temporary
/// data is removed when the case ends.
///
/// ```ignore
/// errand_core::store_conformance!(|clock| async move {
///     let dir = tempfile::tempdir().unwrap();
///     let store = MyStore::open(dir.path(), clock);
///     errand_core::conformance::Guarded::new(store, dir)
/// });
/// ```
pub struct Guarded<S, G> {
    store: S,
    _guard: G,
}

impl<S, G> Guarded<S, G> {
    /// Wraps `store`, keeping `guard` until the wrapper is dropped.
    pub fn new(store: S, guard: G) -> Self {
        Self {
            store,
            _guard: guard,
        }
    }

    /// The wrapped store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

#[async_trait]
impl<S: Store, G: Send + Sync + 'static> Store for Guarded<S, G> {
    async fn enqueue(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, StoreError> {
        self.store.enqueue(tasks).await
    }
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        self.store.claim(request).await
    }
    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        self.store.heartbeat(leases, extend).await
    }
    async fn report(
        &self,
        updates: Vec<(Lease, StatusUpdate)>,
    ) -> Result<Vec<LeaseState>, StoreError> {
        self.store.report(updates).await
    }
    async fn complete(
        &self,
        completions: Vec<Completion>,
    ) -> Result<Vec<CompleteResult>, StoreError> {
        self.store.complete(completions).await
    }
    fn claims_with_completions(&self) -> bool {
        self.store.claims_with_completions()
    }
    async fn complete_and_claim(
        &self,
        completions: Vec<Completion>,
        claim: &ClaimRequest,
    ) -> Result<(Vec<CompleteResult>, Vec<Claimed>), StoreError> {
        self.store.complete_and_claim(completions, claim).await
    }
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.store.get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.store.list(query).await
    }
    async fn cancel(&self, id: TaskId, by: &Owner) -> Result<CancelOutcome, StoreError> {
        self.store.cancel(id, by).await
    }
    async fn retry(&self, id: TaskId, by: &Owner) -> Result<RetryOutcome, StoreError> {
        self.store.retry(id, by).await
    }
    async fn watch(&self, id: TaskId) -> Result<EventStream, StoreError> {
        self.store.watch(id).await
    }
    async fn cancellations(&self) -> Result<BoxStream<'static, TaskId>, StoreError> {
        self.store.cancellations().await
    }
    async fn work_signal(&self, queues: &[String]) -> Result<Box<dyn WorkSignal>, StoreError> {
        self.store.work_signal(queues).await
    }
    async fn reap(&self) -> Result<Reaped, StoreError> {
        self.store.reap().await
    }
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.store.purge_expired().await
    }
    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        self.store.depth().await
    }
    async fn counts(&self, owner: &OwnerFilter) -> Result<StateCounts, StoreError> {
        self.store.counts(owner).await
    }
    async fn queues(&self) -> Result<Vec<QueueCounts>, StoreError> {
        self.store.queues().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
    async fn healthy(&self) -> Result<(), StoreError> {
        self.store.healthy().await
    }
    async fn warnings(&self) -> Result<Vec<String>, StoreError> {
        self.store.warnings().await
    }
    async fn get_meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.store.get_meta(name).await
    }
    async fn swap_meta(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        self.store.swap_meta(name, expected, value).await
    }
}
