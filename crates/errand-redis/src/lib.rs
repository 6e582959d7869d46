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
//! - The hot path is batched: an enqueue batch is one round trip (one script call per queue
//!   and 500 tasks); a claim is one script call returning up to N tasks; heartbeats, reports
//!   and completions are one script call per queue per batch. Inside the scripts a task
//!   costs a handful of Redis commands, and nothing is encoded or published per task unless
//!   somebody watches it.
//!
//! ## Key layout
//!
//! Every per-queue key starts with the queue's hash tag `{prefix:queue}`, so a queue lives in
//! one Redis Cluster slot and every script touches one slot only.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p:q}:t:<id>` | hash | a task's record (fields in the `record` module docs); a TTL once finished |
//! | `{p:q}:ready` | sorted set | waiting tasks (pending, scheduled, retrying) scored by due time (ms): claims take the due ones, oldest first, so delayed and retrying tasks need no promotion |
//! | `{p:q}:leases` | sorted set | running tasks scored by lease expiry (ms): the reaper's work list |
//! | `{p:q}:expiry` | sorted set | finished tasks (`<id>\|<owner hash>`) scored by expiry: what `purge_expired` trims from the listing indexes |
//! | `{p:q}:o:<owner hash>` | sorted set | one owner's task ids (score 0, read newest first by id) |
//! | `{p:q}:ids` | sorted set | every task id of the queue (for admin listings) |
//! | `{p:q}:k:<scoped key>` | string | an idempotency key (scoped to its owner) → its live task |
//! | `{p}:queues` | set | every queue name used, so any process can find a task by id |
//!
//! | channel | carries |
//! |---|---|
//! | `{p:q}:work` | "work may be claimable on q" (enqueue, retry, release, reap) |
//! | `{p:q}:ev:<id>` | a watched task's record after each change |
//! | `p:cancel` | ids of running tasks whose cancellation was requested |
//!
//! What cannot live in the queue's slot is looked up without a script: a task is found by id
//! by probing each known queue (one pipelined round trip; queues are few), and leases claimed
//! through a store are remembered in process. Idempotency keys are unique per owner *within a
//! queue*: a key is live while its task is pending, scheduled, running or retrying.
//!
//! ## Expiry
//!
//! A finished record gets a Redis TTL equal to its task's TTL, so nothing needs a sweeper
//! for the records themselves; readers also compare the record's `expires_at` with the
//! store's clock. [`purge_expired`](errand_core::Store::purge_expired) (run by workers'
//! maintenance) removes the ids of expired records from the listing indexes.
#![warn(missing_docs)]

mod config;
mod error;
mod keys;
mod listener;
mod record;
mod redis_conn;
mod scripts;
mod signal;
mod store;

pub use config::RedisConfig;
pub use error::RedisStoreError;
pub use store::RedisStore;
