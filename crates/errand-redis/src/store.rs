//! [`RedisStore`]: the [`Store`] on Redis.

use crate::config::RedisConfig;
use crate::error::RedisStoreError;
use crate::keyed_lock::KeyedLocks;
use crate::keys::{Keys, check_prefix};
use crate::listener::{Bus, Listener, Subscription};
use crate::now::Now;
use crate::redis_conn::Redis;
use async_trait::async_trait;
use errand_core::{
    CancelOutcome, ClaimRequest, Claimed, CompleteResult, Completion, Enqueued, EventStream, Lease,
    LeaseState, ListQuery, NewTask, Owner, OwnerFilter, Page, QueueCounts, QueueDepth, Reaped,
    RetryOutcome, StateCounts, StatusUpdate, Store, StoreError, TaskId, TaskRecord, WorkSignal,
};
use futures::stream::BoxStream;
use redis::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::warn;

mod actions;
mod attempts;
mod claim;
mod cycle;
mod enqueue;
mod events;
mod listing;
mod lookup;
mod sweep;

/// errand's [`Store`] on Redis (or Valkey): many API and worker processes share one Redis.
///
/// Cheap to clone: clones share the command connection, the pub/sub connection and the
/// in-process listeners.
///
/// ```no_run
/// use errand_core::Store;
/// use errand_redis::{RedisConfig, RedisStore};
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379", RedisConfig::default()).await?;
/// store.ping().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    keys: Keys,
    now: Now,
    bus: Arc<Bus>,
    listener: Listener,
    /// The queue of each lease claimed through this store and not yet completed, so
    /// heartbeats and completions go straight to the right queue.
    held: Mutex<HashMap<TaskId, Arc<str>>>,
    /// Queue names seen so far (the `{prefix}:queues` set, cached).
    queues: Mutex<Vec<Arc<str>>>,
    /// Serializes the setting up of watches per task, so two watchers of one task share one
    /// subscription while watchers of different tasks set up concurrently.
    watch_setup: KeyedLocks<TaskId>,
    /// On a cluster, the cancellation channels followed: those of the queues claimed from.
    cancel_channels: Mutex<HashMap<Arc<str>, Subscription>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.inner.redis.server())
            .field("keys", &self.inner.keys)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RedisStore {
    /// A store on the Redis at `url` (`redis://[user:password@]host:port[/db]`), or with
    /// [`RedisConfig::cluster`] on the Redis Cluster whose seed nodes `url` names (one or more
    /// such URLs separated by commas; the others are learnt from them).
    ///
    /// Redis being down is not an error: the store starts, its calls answer
    /// [`StoreError::Unavailable`] until Redis is back, and it then resumes by itself. Only
    /// a malformed URL or prefix (see [`RedisConfig::prefix`]) is refused. Must be called
    /// inside a tokio runtime (it starts the pub/sub listener).
    pub async fn connect(url: &str, config: RedisConfig) -> Result<Self, RedisStoreError> {
        if !check_prefix(&config.prefix) {
            return Err(RedisStoreError::InvalidPrefix(config.prefix));
        }
        let redis = Redis::new(url, &config)?;
        let keys = Keys::new(&config.prefix, config.cluster);
        let bus = Arc::new(Bus::default());
        let listener = Listener::start(redis.clone(), keys.clone(), bus.clone(), &config);
        let store = Self {
            inner: Arc::new(Inner {
                redis,
                keys,
                now: Now::new(config.clock),
                bus,
                listener,
                held: Mutex::new(HashMap::new()),
                queues: Mutex::new(Vec::new()),
                watch_setup: KeyedLocks::default(),
                cancel_channels: Mutex::new(HashMap::new()),
            }),
        };
        if let Err(e) = store.inner.redis.load_scripts().await {
            warn!(error = %e, "Redis is not reachable yet; the store answers 'unavailable' until it is");
        }
        Ok(store)
    }

    /// Deletes every key under this store's prefix (tasks, indexes, queues), and no other
    /// prefix's, and returns how many: it scans every primary of a cluster. For tests,
    /// benchmarks and retiring a deployment; never while workers run.
    pub async fn clear(&self) -> Result<u64, StoreError> {
        let redis = &self.inner.redis;
        let mut unlink = redis::cmd("UNLINK");
        unlink
            .arg(self.inner.keys.queues())
            .arg(self.inner.keys.meta());
        let mut deleted = redis.query::<u64>(&unlink).await?;
        let mut cursors: Vec<_> = redis.nodes().await?.into_iter().map(|n| (n, 0)).collect();
        while let Some((node, cursor)) = cursors.pop() {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(self.inner.keys.pattern())
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = redis.query_on(node.as_ref(), &scan).await?;
            if !keys.is_empty() {
                // On a cluster, redis-rs splits an UNLINK of keys of several slots per slot.
                let mut unlink = redis::cmd("UNLINK");
                unlink.arg(&keys);
                deleted += redis.query::<u64>(&unlink).await?;
            }
            if next != 0 {
                cursors.push((node, next));
            }
        }
        lock(&self.inner.queues).clear();
        Ok(deleted)
    }

    /// "Now" for a script call: the injected clock's, or `None` for Redis's.
    fn now_arg(&self) -> Option<i64> {
        self.inner.now.script_arg()
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub(crate) fn redis(&self) -> &Redis {
        &self.inner.redis
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(e.to_string()))
}

#[async_trait]
impl Store for RedisStore {
    async fn enqueue(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, StoreError> {
        self.enqueue_tasks(tasks).await
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        self.claim_tasks(req).await
    }

    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: std::time::Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        self.heartbeat_leases(leases, extend).await
    }

    async fn report(
        &self,
        updates: Vec<(Lease, StatusUpdate)>,
    ) -> Result<Vec<LeaseState>, StoreError> {
        self.report_updates(updates).await
    }

    async fn complete(
        &self,
        completions: Vec<Completion>,
    ) -> Result<Vec<CompleteResult>, StoreError> {
        self.complete_leases(completions).await
    }

    /// True: a worker of one queue ends a batch and claims the next in one script call.
    fn claims_with_completions(&self) -> bool {
        true
    }

    async fn complete_and_claim(
        &self,
        completions: Vec<Completion>,
        claim: &ClaimRequest,
    ) -> Result<(Vec<CompleteResult>, Vec<Claimed>), StoreError> {
        self.complete_and_claim_tasks(completions, claim).await
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.get_task(id).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.list_tasks(query).await
    }

    async fn cancel(&self, id: TaskId, by: &Owner) -> Result<CancelOutcome, StoreError> {
        self.cancel_by(id, by).await
    }

    async fn retry(&self, id: TaskId, by: &Owner) -> Result<RetryOutcome, StoreError> {
        self.retry_by(id, by).await
    }

    async fn watch(&self, id: TaskId) -> Result<EventStream, StoreError> {
        self.watch_task(id).await
    }

    async fn cancellations(&self) -> Result<BoxStream<'static, TaskId>, StoreError> {
        self.cancellation_stream().await
    }

    async fn work_signal(&self, queues: &[String]) -> Result<Box<dyn WorkSignal>, StoreError> {
        self.work_signal_for(queues).await
    }

    async fn reap(&self) -> Result<Reaped, StoreError> {
        self.reap_lapsed().await
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.purge_records().await
    }

    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        self.queue_depth().await
    }

    async fn counts(&self, owner: &OwnerFilter) -> Result<StateCounts, StoreError> {
        self.counts_of(owner).await
    }

    async fn queues(&self) -> Result<Vec<QueueCounts>, StoreError> {
        self.queue_counts().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner
            .redis
            .query::<Value>(&redis::cmd("PING"))
            .await
            .map(drop)
    }

    /// Always healthy: nothing in this process stops for good when Redis is away.
    async fn healthy(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn warnings(&self) -> Result<Vec<String>, StoreError> {
        self.redis_warnings().await
    }

    async fn get_meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.meta(name).await
    }

    async fn swap_meta(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        self.swap(name, expected, value).await
    }
}
