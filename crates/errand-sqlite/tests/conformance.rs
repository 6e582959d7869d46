//! Core's store conformance suite against `SqliteStore`, each case on a fresh file that is
//! removed when the case ends.

use async_trait::async_trait;
use errand_core::{
    CancelOutcome, ClaimRequest, Claimed, CompleteResult, Completion, Enqueued, EventStream, Lease,
    LeaseState, ListQuery, NewTask, Page, QueueDepth, Reaped, RetryOutcome, StatusUpdate, Store,
    StoreError, TaskId, TaskRecord, WorkSignal,
};
use errand_sqlite::{SqliteConfig, SqliteStore};
use futures::stream::BoxStream;
use std::time::Duration;

errand_core::store_conformance!(|clock| async move {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = SqliteConfig {
        clock,
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open(dir.path().join("errand.db"), config).expect("store opens");
    TempStore { store, _dir: dir }
});

/// A store whose directory goes away with it.
struct TempStore {
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

#[async_trait]
impl Store for TempStore {
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
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.store.get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.store.list(query).await
    }
    async fn cancel(&self, id: TaskId) -> Result<CancelOutcome, StoreError> {
        self.store.cancel(id).await
    }
    async fn retry(&self, id: TaskId) -> Result<RetryOutcome, StoreError> {
        self.store.retry(id).await
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
    async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}
