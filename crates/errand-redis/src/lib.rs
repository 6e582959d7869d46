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
//! - Commands go over one multiplexed connection (redis-rs `ConnectionManager`; on a cluster,
//!   redis-rs's cluster connection, see below) shared by all
//!   callers, which pipelines them and reconnects with exponential backoff. Every round trip
//!   is bounded by [`RedisConfig::connect_timeout`] + [`RedisConfig::response_timeout`] (a
//!   batch of script calls answered NOSCRIPT is loaded and sent again within the same
//!   deadline). A store call makes one round trip (an enqueue, a claim from one queue,
//!   heartbeats, reports and completions of leases claimed through the same store) or a few:
//!   a claim across queues looks at their heads first, calls naming a task by id look it up
//!   first (see below), and listings, sweeps (reap, purge) and `clear` loop. When
//!   Redis cannot be reached, the first round trip fails with
//!   [`StoreError::Unavailable`](errand_core::StoreError) (an HTTP 503), and the next call
//!   tries again, so the store resumes by itself.
//! - Pub/sub (cancellations, work wake-ups, task events) has a dedicated connection per store,
//!   which reconnects with backoff and subscribes again to what is still wanted.
//! - Every change touching more than one key is one Lua script (`lua/<operation>.lua`, run
//!   with EVALSHA and loaded again on NOSCRIPT).
//! - The hot path is batched. A task is one string (see the `record` module), so the scripts
//!   of the hot path read and write tasks with MGET and MSET per batch: an enqueue batch is
//!   one round trip (one script call per queue and 500 tasks, one MSETNX inside); a claim is
//!   one script call returning up to N tasks; heartbeats, reports and completions are one
//!   script call per queue per batch. A worker of one queue writes a batch's completions and
//!   makes its next claim in one script call (`lua/cycle.lua`, through
//!   [`Store::complete_and_claim`](errand_core::Store::complete_and_claim)): one round trip and
//!   one atomic step per batch in the steady state. The Redis commands paid per task rather
//!   than per batch are: the `SET … PX ttl` that gives a finished record its TTL; in an enqueue batch holding
//!   a task with an idempotency key, a `SET … NX` per task, and per keyed task a GET of the
//!   key (and of the task it names, if any) and a SET of it; a GET (and DEL) of a finishing
//!   task's key; while any task of a queue is watched, an HEXISTS per changed task of that
//!   queue, and a PUBLISH per change of a watched task. Nothing is published per task unless
//!   somebody watches it.
//!
//! ## Time
//!
//! By default ([`RedisConfig::clock`] is `None`) every time the store writes or compares
//! (lease ends, due times, expiry, and the times records show: `created_at`, `updated_at`,
//! `started_at`, `completed_at`, `run_at`, `next_attempt_at`, `expires_at`) comes from
//! Redis's own clock: each script reads `TIME` once (Redis 7 replicates a script's effects,
//! so it may then write), and a read that needs "now" asks for `TIME` in the same round trip.
//! A lease written by one host and reaped by another is compared on one clock, however far
//! the hosts' clocks drift. Tests give a [`Clock`](errand_core::Clock) instead (a
//! [`ManualClock`](errand_core::ManualClock)), which every script then receives as its
//! "now"; all processes sharing the keys must then share that clock. Either way, a finished
//! record's Redis TTL runs on Redis's clock.
//!
//! ## Key layout
//!
//! Every per-queue key starts with the queue's hash tag `{p:q}` (prefix and queue). A prefix
//! may not contain `:` (nor braces), so the first `:` in a tag ends the prefix and two
//! prefixes never share a key (`a` with queue `b:c` is `{a:b:c}`; `a:b` is refused);
//! [`RedisStore::clear`] deletes exactly `{p:*`, `{p}:queues` and `{p}:meta`.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p:q}:t:<id>` | string | a task's record: a header line and length-prefixed blobs (state, lease token, attempts, times, error, result, progress, steps, payload with the sealed context); a Redis TTL once finished |
//! | `{p:q}:ready` | list | ids due now, oldest first: claims pop from the head; released and reaped tasks go back to the head |
//! | `{p:q}:schedule` | sorted set | ids due later (delayed, retrying) by due time; each claim first moves the due ones to `ready`, so nothing polls |
//! | `{p:q}:skip` | set | ids whose `ready` entry is dead (cancelled while waiting): claims drop such entries, cancelling never scans the list, and a manual retry revives the entry in place |
//! | `{p:q}:leases` | sorted set | running ids by lease expiry: the reaper's work list |
//! | `{p:q}:finished:<ttl>` | list | `expires\|id\|owner hash` of finished tasks with that TTL, in finishing (so expiry) order: what `purge_expired` reads from the head |
//! | `{p:q}:ttls` | set | the TTLs that have a `finished` list |
//! | `{p:q}:o:<owner hash>` | sorted set | one owner's task ids (score 0, read newest first by id) |
//! | `{p:q}:ids` | sorted set | every task id of the queue (admin listings) |
//! | `{p:q}:o:<owner hash>:s:<state>`, `{p:q}:s:<state>` | sorted set | one owner's, and everyone's, finished tasks in a final state (success, failed, cancelled): added when a task ends, removed by a manual retry or the purge |
//! | `{p:q}:o:<owner hash>:n:<name hash>`, `{p:q}:n:<name hash>` | sorted set | one owner's, and everyone's, tasks of a task name |
//! | `{p:q}:c:<hash>`, `{p:q}:r:<hash>` | sorted set | the tasks of a correlation id, of a request id (the search) |
//! | `{p:q}:counts` | hash | tasks per state: `<state>` for the queue, `<owner hash>:<state>` per owner; every script that changes states adds its sums with one HINCRBY per field and call |
//! | `{p:q}:k:<scoped key>` | string | an idempotency key (scoped to its owner) → its live task |
//! | `{p:q}:watched` | hash | id → how many processes watch it; scripts publish a task's changes only while it is here |
//! | `{p}:queues` | set | every queue name used, so any process can find a task by id; an enqueue adds its queues before it stores the tasks |
//! | `{p}:meta` | hash | deployment facts: the ids of the seal key and token secret the processes use |
//!
//! A waiting task has exactly one entry in `ready` and `schedule` together, so the number of
//! waiting tasks is `LLEN ready + ZCARD schedule - SCARD skip`, exactly. A claim pops entries
//! until it has its limit or the list is empty, looking at no more than its limit plus 1000
//! entries per call; an entry whose task is not due yet (it was moved by a process whose
//! clock was ahead) goes back to the schedule instead of running early.
//!
//! | channel | carries |
//! |---|---|
//! | `{p:q}:work` | "work may be claimable on q" (enqueue, retry, release, reap) |
//! | `{p:q}:ev:<id>` | a watched task's record after each change |
//! | `p:cancel` (on a cluster `{p:q}:cancel`) | ids of running tasks whose cancellation was requested |
//!
//! What cannot live in the queue's slot is found without a script: a task is found by id by
//! probing each known queue while reading `{p}:queues` (one pipelined round trip; queues are
//! few), and probing the queues learnt there in a second round trip only when the task was
//! not found; leases claimed through a store are remembered in process. Idempotency keys are
//! unique per owner *within a queue*: a key is live while its task is pending, scheduled,
//! running or retrying.
//!
//! A record's `owner` header field holds its index tags (owner, name, correlation and request
//! id hashes), so every script that changes a task knows which indexes and counters to change,
//! and the purge's entries carry them with the final state, so a record Redis already deleted
//! still leaves every index. Listings by a waiting or running state read `ready`, `schedule`
//! and `leases` (live tasks only) after the counters said there is one. Keys written before
//! these indexes existed are in none of them: such tasks are listed only unfiltered and are
//! not counted.
//!
//! ## Expiry
//!
//! A finished record gets a Redis TTL equal to its task's TTL (at least a second, so a
//! watcher can read the end), so nothing needs a sweeper for the records themselves; readers
//! also compare the record's `expires_at` with "now". Durations are clamped to
//! [`MAX_DURATION`](errand_core::MAX_DURATION) (100 years).
//! [`purge_expired`](errand_core::Store::purge_expired) (run by workers' maintenance) deletes
//! what expired and removes expired ids from the listing indexes.
//!
//! ## Watching
//!
//! A process that watches a task subscribes to the task's channel on its pub/sub connection
//! and counts itself in `{p:q}:watched`; scripts publish the task's record after each change
//! only while it is counted there (one EXISTS per script call when nobody watches a task of
//! the queue). Watches of one task are set up one after the other, so the process's watchers
//! share one subscription; watches of different tasks are set up concurrently. A watch
//! returns once subscribed, so it sees every change made after it returns. When the
//! process's last watcher of a task goes away, the count is lowered. A process killed while
//! watching leaves its count behind: the task then publishes to nobody until `purge_expired`
//! removes it, which costs a little and loses nothing. After a reconnection, each watched
//! task's current record is sent to its watchers, so a stream's last item is always the
//! latest state.
//!
//! ## Redis Cluster
//!
//! With [`RedisConfig::cluster`], the URL names seed nodes (comma-separated) and every command
//! goes through redis-rs's cluster client. Each script declares one key, `KEYS[1]` (the
//! queue's tag `{p:q}`, or `{p}:meta`), and derives every other key it touches from it, so all
//! of them share one slot; commands outside scripts touch one queue's keys each, or
//! `{p}:queues`. A pipeline is split per slot and its parts sent concurrently (a command
//! without a key, `TIME`, runs with the next one that has a key); the enqueue registers its
//! queues in a round trip before the scripts, since the two are in different slots. A script
//! answered NOSCRIPT is loaded on the node that answered. Channels carry their queue's tag and
//! use sharded pub/sub (`SPUBLISH` in the scripts, `SSUBSCRIBE` on a RESP3 cluster connection
//! of the listener's own); each queue has its own cancellation channel, which a store follows
//! once it claims from the queue. [`RedisStore::clear`] and the warnings visit every primary.
//! With [`RedisConfig::wait_replicas`], each round trip of writes ends with `WAIT` on each node
//! it wrote to, and fails unless enough replicas confirmed it.
//!
//! ## Delivery
//!
//! At-least-once, as errand promises everywhere: a claim takes a lease that heartbeats renew;
//! a lease that lapses (worker killed, partitioned) is reaped by any worker and the task runs
//! again with the same context; every heartbeat, report and completion carries the claim's
//! random lease token (generated by the claiming process, 128 bits) and is refused once the
//! task was claimed again, even by a Redis that lost writes and hands a task out again with
//! the same attempt number.
//!
//! ## Deployment facts and warnings
//!
//! `{p}:meta` is a hash of the key ids the deployment's processes use (see
//! [`errand_core::deployment`]). [`Store::warnings`](errand_core::Store::warnings) reads `INFO`
//! (and `CONFIG GET save` where allowed): a `maxmemory-policy` other than `noeviction` (an
//! evicted lease or record loses its task) and persistence that is off are reported.
#![warn(missing_docs)]

mod attempt_log;
mod cluster;
mod config;
mod error;
mod health;
mod history;
mod keyed_lock;
mod keys;
mod listener;
mod now;
mod pubsub;
mod record;
mod redis_conn;
mod scripts;
mod signal;
mod store;

pub use config::RedisConfig;
pub use error::RedisStoreError;
pub use store::RedisStore;
