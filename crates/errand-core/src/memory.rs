//! [`MemoryStore`]: the in-memory [`Store`], the fallback store and the reference the others are
//! measured against. Nothing survives the process.
//!
//! Every operation takes the one lock over its `State` (`state`) once. The operations live in
//! a module each: `enqueue`, `claim`, `attempts` (heartbeats, reports, completions), `reads`,
//! `actions` (cancel, retry) and `sweep` (reap, purge); the listing indexes are `index`.

use crate::clock::{Clock, SystemClock};
use crate::events::{CancelBus, Watchers, WorkNotifier};
use crate::id::TaskId;
use crate::lease::{Lease, LeaseState};
use crate::status::{Owner, StatusUpdate, TaskRecord};
use crate::store::{
    CancelOutcome, ClaimRequest, Claimed, CompleteResult, Completion, Enqueued, EventStream,
    ListQuery, NewTask, OwnerFilter, Page, QueueCounts, QueueDepth, Reaped, RetryOutcome,
    StateCounts, Store, StoreError, WorkSignal,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use state::{State, ms};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

mod actions;
mod attempts;
mod claim;
mod enqueue;
mod index;
mod reads;
mod state;
mod sweep;

/// A [`Store`] in process memory: fast, complete, and gone when the process ends.
///
/// ```
/// use errand_core::{MemoryStore, Store};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryStore::new();
/// store.ping().await.unwrap();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    watchers: Arc<Watchers>,
    cancels: CancelBus,
    work: WorkNotifier,
}

impl MemoryStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store reading time from `clock` (tests drive leases and TTLs with it).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                clock,
                watchers: Arc::new(Watchers::default()),
                cancels: CancelBus::default(),
                work: WorkNotifier::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    fn publish(&self, record: &TaskRecord) {
        self.shared.watchers.publish(record);
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn enqueue(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, StoreError> {
        Ok(self.enqueue_tasks(tasks))
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        Ok(self.claim_tasks(req))
    }

    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        Ok(self.heartbeat_leases(leases, extend))
    }

    async fn report(
        &self,
        updates: Vec<(Lease, StatusUpdate)>,
    ) -> Result<Vec<LeaseState>, StoreError> {
        Ok(self.report_updates(updates))
    }

    async fn complete(
        &self,
        completions: Vec<Completion>,
    ) -> Result<Vec<CompleteResult>, StoreError> {
        Ok(self.complete_leases(completions))
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.get_task(id))
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        Ok(self.list_tasks(query))
    }

    async fn cancel(&self, id: TaskId, by: &Owner) -> Result<CancelOutcome, StoreError> {
        Ok(self.cancel_by(id, by))
    }

    async fn retry(&self, id: TaskId, by: &Owner) -> Result<RetryOutcome, StoreError> {
        self.retry_by(id, by)
    }

    async fn watch(&self, id: TaskId) -> Result<EventStream, StoreError> {
        Ok(self.shared.watchers.subscribe(id))
    }

    async fn cancellations(&self) -> Result<BoxStream<'static, TaskId>, StoreError> {
        Ok(self.shared.cancels.subscribe())
    }

    async fn work_signal(&self, queues: &[String]) -> Result<Box<dyn WorkSignal>, StoreError> {
        let store = self.clone();
        let queues = queues.to_vec();
        Ok(self.shared.work.signal(move || {
            let now_ms = ms(store.now());
            store.lock().next_due(&queues, now_ms)
        }))
    }

    async fn reap(&self) -> Result<Reaped, StoreError> {
        Ok(self.reap_lapsed())
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        Ok(self.purge_records())
    }

    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        Ok(self.queue_depth())
    }

    async fn counts(&self, owner: &OwnerFilter) -> Result<StateCounts, StoreError> {
        Ok(self.lock().index.counts(owner))
    }

    async fn queues(&self) -> Result<Vec<QueueCounts>, StoreError> {
        Ok(self.lock().index.queues())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn healthy(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn warnings(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    async fn get_meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().meta.get(name).cloned())
    }

    async fn swap_meta(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        let mut st = self.lock();
        if st.meta.get(name).map(String::as_str) != expected {
            return Ok(false);
        }
        st.meta.insert(name.to_string(), value.to_string());
        Ok(true)
    }
}
