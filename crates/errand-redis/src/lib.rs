//! # errand-redis
//!
//! errand's distributed [`Store`](errand_core::Store) on Redis 7 or Valkey: many API and
//! worker processes share one Redis, and every rule of errand holds across them (leases and
//! fencing, delays and retries, idempotency keys, cancellation, status records with a TTL,
//! per-owner listings, live events).
//!
//! ```no_run
//! use errand_core::{Store, Worker, Registry, SealKey};
//! use errand_redis::{RedisConfig, RedisStore};
//! use std::sync::Arc;
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379", RedisConfig::default()).await?;
//! let store: Arc<dyn Store> = Arc::new(store);
//! let worker = Worker::new(store, Arc::new(Registry::new()), SealKey::generate()).start();
//! # worker.shutdown(std::time::Duration::from_secs(1)).await; Ok(()) }
//! ```
//!
//! ## How it talks to Redis
//!
//! - Commands go over one multiplexed connection (redis-rs `ConnectionManager`) shared by all
//!   callers, which pipelines them and reconnects with exponential backoff. Every call is
//!   bounded by [`RedisConfig::connect_timeout`] + [`RedisConfig::response_timeout`]; when
//!   Redis cannot be reached it fails with [`StoreError::Unavailable`](errand_core::StoreError)
//!   (an HTTP 503), and the next call tries again, so the store resumes by itself.
//! - Pub/sub (cancellations, work wake-ups, task events) has a dedicated connection per store,
//!   which reconnects with backoff and subscribes again to what is still wanted.
//! - Every change touching more than one key is one Lua script (`lua/<operation>.lua`, run
//!   with EVALSHA and loaded again on NOSCRIPT). Scripts receive "now" from the store's
//!   [`Clock`](errand_core::Clock), never Redis's, so a manual clock drives leases, delays,
//!   backoff and expiry in tests.
//! - The hot path is batched. A task is one string (see the `record` module), so a script
//!   reads and writes a whole batch with one MGET/MSET: an enqueue batch is one round trip
//!   (one script call per queue and 500 tasks, one MSETNX inside); a claim is one script call
//!   returning up to N tasks; heartbeats, reports and completions are one script call per
//!   queue per batch. The only Redis command paid per task is the final `SET … PX ttl` that
//!   gives a finished record its TTL. Nothing is published per task unless somebody watches
//!   it.
//!
//! ## Key layout
//!
//! Every per-queue key starts with the queue's hash tag `{p:q}` (prefix and queue), so a
//! queue lives in one Redis Cluster slot and every script touches one slot only.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p:q}:t:<id>` | string | a task's record: a header line and length-prefixed blobs (state, fence, attempts, times, error, result, progress, steps, payload); a Redis TTL once finished |
//! | `{p:q}:ready` | list | ids due now, oldest first: claims pop from the head; released and reaped tasks go back to the head |
//! | `{p:q}:schedule` | sorted set | ids due later (delayed, retrying) by due time; each claim first moves the due ones to `ready`, so nothing polls |
//! | `{p:q}:stale` | string | how many `ready` entries belong to tasks cancelled while waiting (claims drop them; cancelling never scans the list) |
//! | `{p:q}:leases` | sorted set | running ids by lease expiry: the reaper's work list |
//! | `{p:q}:finished:<ttl>` | list | `expires\|id\|owner hash` of finished tasks with that TTL, in finishing (so expiry) order: what `purge_expired` reads from the head |
//! | `{p:q}:ttls` | set | the TTLs that have a `finished` list |
//! | `{p:q}:o:<owner hash>` | sorted set | one owner's task ids (score 0, read newest first by id) |
//! | `{p:q}:ids` | sorted set | every task id of the queue (admin listings) |
//! | `{p:q}:k:<scoped key>` | string | an idempotency key (scoped to its owner) → its live task |
//! | `{p:q}:watched` | hash | id → how many processes watch it; scripts publish a task's changes only while it is here |
//! | `{p}:queues` | set | every queue name used, so any process can find a task by id |
//!
//! | channel | carries |
//! |---|---|
//! | `{p:q}:work` | "work may be claimable on q" (enqueue, retry, release, reap) |
//! | `{p:q}:ev:<id>` | a watched task's record after each change |
//! | `p:cancel` | ids of running tasks whose cancellation was requested |
//!
//! What cannot live in the queue's slot is found without a script: a task is found by id by
//! probing each known queue (one pipelined round trip; queues are few), and leases claimed
//! through a store are remembered in process. Idempotency keys are unique per owner *within a
//! queue*: a key is live while its task is pending, scheduled, running or retrying.
//!
//! ## Expiry
//!
//! A finished record gets a Redis TTL equal to its task's TTL, so nothing needs a sweeper
//! for the records themselves; readers also compare the record's `expires_at` with the
//! store's clock. [`purge_expired`](errand_core::Store::purge_expired) (run by workers'
//! maintenance) deletes what expired by that clock and removes expired ids from the listing
//! indexes.
//!
//! ## Watching
//!
//! A process that watches a task subscribes to the task's channel on its pub/sub connection
//! and counts itself in `{p:q}:watched`; scripts publish the task's record after each change
//! only while it is counted there (one EXISTS per script call when nobody watches a task of
//! the queue). When the process's last watcher of a task goes away, the count is lowered.
//! A process killed while watching leaves its count behind: the task then publishes to
//! nobody until `purge_expired` removes it, which costs a little and loses nothing. After a
//! reconnection, each watched task's current record is sent to its watchers, so a stream's
//! last item is always the latest state.
//!
//! ## Redis Cluster
//!
//! The layout is cluster-ready (one hash tag per queue, no script crossing slots), but the
//! store connects with a single-node client: running on a cluster needs redis-rs's cluster
//! client behind the same scripts.
//!
//! ## Delivery
//!
//! At-least-once, as errand promises everywhere: a claim takes a lease that heartbeats renew;
//! a lease that lapses (worker killed, partitioned) is reaped by any worker and the task runs
//! again with the same context; every heartbeat, report and completion carries the claim's
//! fence and is refused once the task was claimed again.
#![warn(missing_docs)]

mod config;
mod error;
mod keyed_lock;
mod keys;
mod listener;
mod now;
mod record;
mod redis_conn;
mod scripts;
mod signal;
mod store;

pub use config::RedisConfig;
pub use error::RedisStoreError;
pub use store::RedisStore;
