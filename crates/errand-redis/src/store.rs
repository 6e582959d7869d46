//! [`RedisStore`]: the [`Store`] on Redis.

use crate::config::RedisConfig;
use crate::error::{RedisStoreError, corrupt};
use crate::keyed_lock::KeyedLocks;
use crate::keys::{Keys, check_prefix, check_queue, index_tags};
use crate::listener::{Bus, Listener, Route};
use crate::now::Now;
use crate::record::{self, NewRecord, Stored, array, bytes, int, millis, scored, task_id, text};
use crate::redis_conn::Redis;
use crate::scripts::Call;
use crate::signal::RedisSignal;
use async_trait::async_trait;
use errand_core::{
    CancelOutcome, ClaimRequest, Claimed, CompleteResult, Completion, Enqueued, EventStream, Lease,
    LeaseState, LeaseToken, ListQuery, NewTask, Outcome, Owner, OwnerFilter, Page, QueueDepth,
    Reaped, RetryOutcome, StatusUpdate, Store, StoreError, TaskId, TaskRecord, TaskState,
    WorkSignal, lease_expired_error,
};
use errand_core::{QueueCounts, StateCounts};
use futures::StreamExt;
use futures::stream::BoxStream;
use redis::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_stream::wrappers::BroadcastStream;
use tracing::{debug, warn};

mod actions;
mod listing;

/// Most tasks per enqueue script call (a batch may take several calls, sent in one pipeline).
const ENQUEUE_CHUNK: usize = 500;
/// Most tasks one claim hands out.
const CLAIM_MAX: usize = 1000;
/// Most leases or completions per script call.
const LEASE_CHUNK: usize = 500;
/// Most lapsed leases or expired records handled per script call (each call blocks Redis
/// briefly; the store loops until done).
const SWEEP_CHUNK: usize = 500;

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

/// Where a task was found: its queue and, when asked for, its stored record.
struct Found {
    queue: Arc<str>,
    stored: Option<Vec<u8>>,
}

/// What [`RedisStore::locate`] asks each queue about a task.
#[derive(Clone, Copy)]
enum Probe {
    /// Whether it holds the task.
    Exists,
    /// The task's stored record.
    Get,
}

impl RedisStore {
    /// A store on the Redis at `url` (`redis://[user:password@]host:port[/db]`).
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
        let keys = Keys::new(&config.prefix);
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
            }),
        };
        if let Err(e) = store.inner.redis.load_scripts().await {
            warn!(error = %e, "Redis is not reachable yet; the store answers 'unavailable' until it is");
        }
        Ok(store)
    }

    /// Deletes every key under this store's prefix (tasks, indexes, queues), and no other
    /// prefix's, and returns how many. For tests, benchmarks and retiring a deployment; never
    /// while workers run.
    pub async fn clear(&self) -> Result<u64, StoreError> {
        let pattern = self.inner.keys.pattern();
        let mut cursor: u64 = 0;
        let mut unlink = redis::cmd("UNLINK");
        unlink
            .arg(self.inner.keys.queues())
            .arg(self.inner.keys.meta());
        let mut deleted = self.inner.redis.query::<u64>(&unlink).await?;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = self.inner.redis.query(&scan).await?;
            if !keys.is_empty() {
                let mut unlink = redis::cmd("UNLINK");
                unlink.arg(&keys);
                deleted += self.inner.redis.query::<u64>(&unlink).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
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

    fn cached_queues(&self) -> Vec<Arc<str>> {
        lock(&self.inner.queues).clone()
    }

    /// Replaces the cached queue list with Redis's answer, and returns it.
    fn learn_queues(&self, members: Vec<String>) -> Vec<Arc<str>> {
        let list: Vec<Arc<str>> = members.into_iter().map(Arc::from).collect();
        lock(&self.inner.queues).clone_from(&list);
        list
    }

    /// Every queue ever used (one round trip).
    async fn queue_list(&self) -> Result<Vec<Arc<str>>, StoreError> {
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(self.keys().queues());
        let members: Vec<String> = self.inner.redis.query(&cmd).await?;
        Ok(self.learn_queues(members))
    }

    /// Finds the queue of each task in `ids` (and its stored record with [`Probe::Get`]): one
    /// round trip probing every queue this process knows while reading the set of queues,
    /// and a second one probing the queues of that set it did not probe, only if some task
    /// is still missing. Also returns "now", read in the first round trip. A task found
    /// nowhere gets `None`.
    async fn locate(
        &self,
        ids: &[TaskId],
        probe: Probe,
    ) -> Result<(i64, Vec<Option<Found>>), StoreError> {
        let mut found: Vec<Option<Found>> = ids.iter().map(|_| None).collect();
        let mut queues = self.cached_queues();
        let mut now = 0;
        // Twice at most: with the queues known here, then with the ones Redis adds.
        for round in 0..2 {
            let missing: Vec<usize> = (0..ids.len()).filter(|&i| found[i].is_none()).collect();
            let mut pipe = redis::pipe();
            if round == 0 {
                self.inner.now.ask(&mut pipe);
            }
            pipe.cmd("SMEMBERS").arg(self.keys().queues());
            for &i in &missing {
                for q in &queues {
                    pipe.cmd(match probe {
                        Probe::Exists => "EXISTS",
                        Probe::Get => "GET",
                    })
                    .arg(self.keys().task(q, ids[i]));
                }
            }
            let mut values = self.inner.redis.pipeline(&pipe).await?.into_iter();
            if round == 0 {
                now = self.inner.now.read(&mut values)?;
            }
            let members: Vec<String> = match values.next() {
                Some(v) => redis::from_redis_value(v).map_err(corrupt)?,
                None => return Err(corrupt("empty answer to a lookup")),
            };
            for &i in &missing {
                for q in &queues {
                    let stored = match values.next() {
                        Some(Value::BulkString(stored)) => Some(stored),
                        Some(Value::Int(1)) => None,
                        _ => continue,
                    };
                    found[i].get_or_insert_with(|| Found {
                        queue: q.clone(),
                        stored,
                    });
                }
            }
            // Not "new to the cache": a concurrent lookup may have learnt them meanwhile.
            let probed = queues;
            queues = self.learn_queues(members);
            queues.retain(|q| !probed.contains(q));
            if queues.is_empty() || found.iter().all(Option::is_some) {
                break;
            }
        }
        Ok((now, found))
    }

    /// Finds the queue holding task `id`.
    async fn find(&self, id: TaskId) -> Result<Option<Arc<str>>, StoreError> {
        let (_, mut found) = self.locate(&[id], Probe::Exists).await?;
        Ok(found.pop().flatten().map(|f| f.queue))
    }

    /// The queue of each task, in order: from the leases this store holds, else located. A
    /// task that cannot be found gets `None` (its lease is lost).
    async fn route(&self, ids: &[TaskId]) -> Result<Vec<Option<Arc<str>>>, StoreError> {
        let mut out: Vec<Option<Arc<str>>> = {
            let held = lock(&self.inner.held);
            ids.iter().map(|id| held.get(id).cloned()).collect()
        };
        let unknown: Vec<usize> = (0..ids.len()).filter(|&i| out[i].is_none()).collect();
        if unknown.is_empty() {
            return Ok(out);
        }
        let wanted: Vec<TaskId> = unknown.iter().map(|&i| ids[i]).collect();
        let (_, found) = self.locate(&wanted, Probe::Exists).await?;
        for (i, f) in unknown.into_iter().zip(found) {
            out[i] = f.map(|f| f.queue);
        }
        Ok(out)
    }

    fn release_held(&self, ids: impl IntoIterator<Item = TaskId>) {
        let mut held = lock(&self.inner.held);
        for id in ids {
            held.remove(&id);
        }
    }

    /// Runs one script call per chunk of items per queue, all in one round trip, and hands
    /// each item its answer (one value per item, in order). Items without a queue get `None`.
    async fn per_queue<'s, T>(
        &'s self,
        queues: &[Option<Arc<str>>],
        items: &[T],
        make: impl Fn(&str) -> Call<'s>,
        add: impl Fn(&mut Call<'s>, &T) -> Result<(), StoreError>,
    ) -> Result<Vec<Option<Value>>, StoreError> {
        let mut groups: Vec<(Arc<str>, Vec<usize>)> = Vec::new();
        for (i, q) in queues.iter().enumerate() {
            let Some(q) = q else { continue };
            match groups.iter_mut().find(|(g, _)| g == q) {
                Some((_, list)) => list.push(i),
                None => groups.push((q.clone(), vec![i])),
            }
        }
        let mut calls = Vec::new();
        let mut positions = Vec::new();
        for (queue, list) in &groups {
            let base = self.keys().base(queue);
            for chunk in list.chunks(LEASE_CHUNK) {
                let mut call = make(&base);
                for &i in chunk {
                    add(&mut call, &items[i])?;
                }
                calls.push(call);
                positions.push(chunk);
            }
        }
        let mut out: Vec<Option<Value>> = vec![None; items.len()];
        let values = self.inner.redis.run(&[], calls).await?;
        for (value, chunk) in values.into_iter().zip(positions) {
            let answers = array(value)?;
            if answers.len() != chunk.len() {
                return Err(corrupt("a script answered for the wrong number of items"));
            }
            for (answer, &i) in answers.into_iter().zip(chunk) {
                out[i] = Some(answer);
            }
        }
        Ok(out)
    }

    /// Claims up to the given number of tasks from each queue (one script call per queue,
    /// all in one round trip), each with a lease of `lease_ms`.
    async fn claim_from(
        &self,
        requests: &[(Arc<str>, usize)],
        lease_ms: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let scripts = self.inner.redis.scripts();
        let now = self.now_arg();
        let calls = requests
            .iter()
            .map(|(queue, limit)| {
                let mut call = scripts.claim.call(&self.keys().base(queue), now);
                // One fresh random token for each task the call may claim.
                let mut tokens = Vec::with_capacity(limit * 32);
                for _ in 0..*limit {
                    tokens.extend_from_slice(&LeaseToken::random().to_hex());
                }
                call.arg(*limit).arg(lease_ms).arg(tokens);
                call
            })
            .collect();
        let values = self.inner.redis.run(&[], calls).await?;
        let mut claimed = Vec::new();
        let mut held = Vec::new();
        for ((queue, _), value) in requests.iter().zip(values) {
            let answer = array(value)?;
            for triple in answer.chunks(3) {
                let [id, stored, due] = triple else {
                    return Err(corrupt("a claim answer has the wrong shape"));
                };
                let id = task_id(id)?;
                claimed.push(Stored::parse(bytes(stored)?)?.claimed(id, queue, text(due)?)?);
                held.push((id, queue.clone()));
            }
        }
        lock(&self.inner.held).extend(held);
        Ok(claimed)
    }

    /// Runs a sweeping script (reap, purge) over every queue until each is done; returns the
    /// sum of each answer's counters (all but the last value, which is 1 while the queue may
    /// have more to sweep).
    async fn sweep<'s>(
        &'s self,
        make: impl Fn(&str, Option<i64>) -> Call<'s>,
        counters: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let now = self.now_arg();
        let mut pending: Vec<Arc<str>> = self.queue_list().await?;
        let mut totals = vec![0u64; counters];
        while !pending.is_empty() {
            let calls = pending
                .iter()
                .map(|q| make(&self.keys().base(q), now))
                .collect();
            let values = self.inner.redis.run(&[], calls).await?;
            let mut again = Vec::new();
            for (queue, value) in pending.iter().zip(values) {
                let answer = array(value)?;
                if answer.len() != counters + 1 {
                    return Err(corrupt("a sweep answered with the wrong shape"));
                }
                for (total, v) in totals.iter_mut().zip(&answer) {
                    *total += int(v)?;
                }
                if int(&answer[counters])? == 1 {
                    again.push(queue.clone());
                }
            }
            pending = again;
        }
        Ok(totals)
    }

    /// Fetches records in one round trip; missing or expired ones are skipped.
    async fn records(&self, ids: &[(TaskId, Arc<str>)]) -> Result<Vec<TaskRecord>, StoreError> {
        let mut pipe = redis::pipe();
        self.inner.now.ask(&mut pipe);
        for (id, queue) in ids {
            pipe.cmd("GET").arg(self.keys().task(queue, *id));
        }
        let mut values = self.inner.redis.pipeline(&pipe).await?.into_iter();
        let now = self.inner.now.read(&mut values)?;
        let mut out = Vec::with_capacity(ids.len());
        for ((id, queue), value) in ids.iter().zip(values) {
            if let Value::BulkString(raw) = value {
                let stored = Stored::parse(&raw)?;
                if stored.expires_ms().is_none_or(|x| x > now) {
                    out.push(stored.record(*id, queue)?);
                }
            }
        }
        Ok(out)
    }
}

fn lease_code(value: Option<Value>) -> Result<LeaseState, StoreError> {
    match value.as_ref().map(int).transpose()? {
        Some(1) => Ok(LeaseState::Held),
        Some(2) => Ok(LeaseState::CancelRequested),
        _ => Ok(LeaseState::Lost),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// The report's fields as script arguments ('' when unchanged).
fn report_args(report: &StatusUpdate) -> Result<(String, String), StoreError> {
    Ok((
        report
            .progress
            .as_ref()
            .map(to_json)
            .transpose()?
            .unwrap_or_default(),
        report
            .steps
            .as_ref()
            .map(to_json)
            .transpose()?
            .unwrap_or_default(),
    ))
}

#[async_trait]
impl Store for RedisStore {
    async fn enqueue(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now_arg();
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, t) in tasks.iter().enumerate() {
            match groups.iter_mut().find(|(q, _)| *q == t.queue) {
                Some((_, list)) => list.push(i),
                None => {
                    check_queue(&t.queue)?;
                    groups.push((&t.queue, vec![i]));
                }
            }
        }
        let scripts = self.inner.redis.scripts();
        let mut calls = Vec::new();
        let mut positions = Vec::new();
        let mut fresh: Vec<TaskState> = Vec::with_capacity(tasks.len());
        for t in &tasks {
            fresh.push(match t.delay {
                Some(d) if !d.is_zero() => TaskState::Scheduled,
                _ => TaskState::Pending,
            });
        }
        for (queue, list) in &groups {
            let base = self.keys().base(queue);
            for chunk in list.chunks(ENQUEUE_CHUNK) {
                let keyed = chunk.iter().any(|&i| tasks[i].key.is_some());
                let mut call = scripts.enqueue.call(&base, now);
                call.arg(chunk.len()).arg(u8::from(keyed));
                for &i in chunk {
                    let t = &tasks[i];
                    // A scheduled task is due at least a millisecond after its creation.
                    let delay = (fresh[i] == TaskState::Scheduled)
                        .then(|| t.delay.map_or(0, millis).max(1));
                    let key_name = t
                        .scoped_key()
                        .map(|k| self.keys().idempotency(queue, &k))
                        .unwrap_or_default();
                    let owner = index_tags(t);
                    let tail = NewRecord {
                        ttl: millis(t.ttl),
                        owner_hash: &owner,
                        key_name: &key_name,
                        payload: &record::payload(t, delay)?,
                    }
                    .tail();
                    call.arg(t.id.to_string())
                        .arg(delay.unwrap_or(0))
                        .arg(&owner)
                        .arg(&key_name)
                        .arg(t.max_attempts.max(1))
                        .arg(tail);
                }
                calls.push(call);
                positions.push(chunk);
            }
        }
        // The queue names go to the set every process reads to find tasks by id, before the
        // tasks are stored: a connection lost in between leaves a queue known and empty,
        // never a task that cannot be found.
        let mut register = redis::cmd("SADD");
        register.arg(self.keys().queues());
        for (queue, _) in &groups {
            register.arg(*queue);
        }
        let values = self.inner.redis.run(&[register], calls).await?;
        let mut out: Vec<Enqueued> = tasks
            .iter()
            .zip(&fresh)
            .map(|(t, status)| Enqueued {
                id: t.id,
                status: *status,
                deduplicated: false,
            })
            .collect();
        for (value, chunk) in values.into_iter().zip(positions) {
            // Empty: every task of the chunk was stored as given.
            let answer = array(value)?;
            if answer.is_empty() {
                continue;
            }
            if answer.len() != chunk.len() * 3 {
                return Err(corrupt("enqueue answered for the wrong number of tasks"));
            }
            for (triple, &i) in answer.chunks(3).zip(chunk) {
                out[i] = Enqueued {
                    id: task_id(&triple[0])?,
                    status: text(&triple[1])?.parse().map_err(corrupt)?,
                    deduplicated: int(&triple[2])? == 1,
                };
            }
        }
        Ok(out)
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        let limit = req.limit.min(CLAIM_MAX);
        if limit == 0 || req.queues.is_empty() {
            return Ok(Vec::new());
        }
        for q in &req.queues {
            check_queue(q)?;
        }
        let lease_ms = millis(req.lease);
        if let [queue] = req.queues.as_slice() {
            return self
                .claim_from(&[(queue.as_str().into(), limit)], lease_ms)
                .await;
        }
        // Several queues: a queue is a cluster slot, so each gets its own claim script. Look
        // at what each has due (the head of its ready list and the earliest of its schedule,
        // kept if due by now) and share the limit oldest first across them, by id (ids are
        // creation-ordered).
        let mut pipe = redis::pipe();
        self.inner.now.ask(&mut pipe);
        for q in &req.queues {
            pipe.cmd("LRANGE")
                .arg(self.keys().ready(q))
                .arg(0)
                .arg(limit - 1);
            pipe.cmd("ZRANGE")
                .arg(self.keys().schedule(q))
                .arg(0)
                .arg(limit - 1)
                .arg("WITHSCORES");
        }
        let mut values = self.inner.redis.pipeline(&pipe).await?.into_iter();
        let now = self.inner.now.read(&mut values)?;
        let mut due: Vec<(Vec<u8>, usize)> = Vec::new();
        for qi in 0..req.queues.len() {
            let (Some(ready), Some(scheduled)) = (values.next(), values.next()) else {
                return Err(corrupt("a claim preview answered for too few queues"));
            };
            for id in array(ready)? {
                due.push((bytes(&id)?.to_vec(), qi));
            }
            for (id, score) in scored(scheduled)? {
                if score <= now {
                    due.push((id, qi));
                }
            }
        }
        due.sort();
        due.truncate(limit);
        let requests: Vec<(Arc<str>, usize)> = req
            .queues
            .iter()
            .enumerate()
            .filter_map(|(qi, q)| {
                let n = due.iter().filter(|(_, i)| *i == qi).count();
                (n > 0).then(|| (q.as_str().into(), n))
            })
            .collect();
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut claimed = self.claim_from(&requests, lease_ms).await?;
        claimed.sort_by_key(|c| c.lease.id);
        Ok(claimed)
    }

    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: std::time::Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        let ids: Vec<TaskId> = leases.iter().map(|l| l.id).collect();
        let queues = self.route(&ids).await?;
        let now = self.now_arg();
        let extend_ms = millis(extend);
        let scripts = self.inner.redis.scripts();
        let answers = self
            .per_queue(
                &queues,
                leases,
                |base| {
                    let mut call = scripts.heartbeat.call(base, now);
                    call.arg(extend_ms);
                    call
                },
                |call, lease| {
                    call.arg(lease.id.to_string())
                        .arg(&lease.token.to_hex()[..]);
                    Ok(())
                },
            )
            .await?;
        let states = answers
            .into_iter()
            .map(lease_code)
            .collect::<Result<Vec<_>, _>>()?;
        self.release_held(
            leases
                .iter()
                .zip(&states)
                .filter(|(_, s)| **s == LeaseState::Lost)
                .map(|(l, _)| l.id),
        );
        Ok(states)
    }

    async fn report(
        &self,
        updates: Vec<(Lease, StatusUpdate)>,
    ) -> Result<Vec<LeaseState>, StoreError> {
        let ids: Vec<TaskId> = updates.iter().map(|(l, _)| l.id).collect();
        let queues = self.route(&ids).await?;
        let now = self.now_arg();
        let scripts = self.inner.redis.scripts();
        let answers = self
            .per_queue(
                &queues,
                &updates,
                |base| scripts.report.call(base, now),
                |call, (lease, update)| {
                    let (progress, steps) = report_args(update)?;
                    call.arg(lease.id.to_string())
                        .arg(&lease.token.to_hex()[..])
                        .arg(progress)
                        .arg(steps);
                    Ok(())
                },
            )
            .await?;
        let states = answers
            .into_iter()
            .map(lease_code)
            .collect::<Result<Vec<_>, _>>()?;
        self.release_held(
            ids.iter()
                .zip(&states)
                .filter(|(_, s)| **s == LeaseState::Lost)
                .map(|(id, _)| *id),
        );
        Ok(states)
    }

    async fn complete(
        &self,
        completions: Vec<Completion>,
    ) -> Result<Vec<CompleteResult>, StoreError> {
        let ids: Vec<TaskId> = completions.iter().map(|c| c.lease.id).collect();
        let queues = self.route(&ids).await?;
        let now = self.now_arg();
        let scripts = self.inner.redis.scripts();
        let answers = self
            .per_queue(
                &queues,
                &completions,
                |base| scripts.complete.call(base, now),
                |call, c| {
                    let (outcome, payload, delay) = match &c.outcome {
                        Outcome::Success(result) => ("S", result.get().to_string(), 0),
                        Outcome::Failed(error) => ("F", to_json(error)?, 0),
                        Outcome::Cancelled => ("C", String::new(), 0),
                        Outcome::Retry { error, delay } => ("R", to_json(error)?, millis(*delay)),
                        Outcome::Released => ("L", String::new(), 0),
                    };
                    let (progress, steps) = report_args(&c.report)?;
                    call.arg(c.lease.id.to_string())
                        .arg(&c.lease.token.to_hex()[..])
                        .arg(outcome)
                        .arg(payload)
                        .arg(delay)
                        .arg(progress)
                        .arg(steps);
                    Ok(())
                },
            )
            .await?;
        self.release_held(ids);
        answers
            .into_iter()
            .map(|a| {
                Ok(match a.as_ref().map(int).transpose()? {
                    Some(1) => CompleteResult::Applied,
                    _ => CompleteResult::Stale,
                })
            })
            .collect()
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let (now, mut found) = self.locate(&[id], Probe::Get).await?;
        let Some(Found {
            queue,
            stored: Some(raw),
        }) = found.pop().flatten()
        else {
            return Ok(None);
        };
        let stored = Stored::parse(&raw)?;
        if stored.expires_ms().is_some_and(|x| x <= now) {
            return Ok(None);
        }
        let record = stored.record(id, &queue)?;
        Ok(Some(TaskRecord {
            args: Some(stored.args()?),
            ..record
        }))
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
        // Another watcher of this task being set up finishes first, so this one joins it.
        let _setup = self.inner.watch_setup.lock(id).await;
        let rx = match self.inner.bus.join_watch(id) {
            Some(rx) => rx,
            None => {
                let Some(queue) = self.find(id).await? else {
                    return Ok(futures::stream::pending().boxed());
                };
                let channel = self.keys().event_channel(&queue, id);
                let subscription = self
                    .inner
                    .listener
                    .subscribe(vec![(channel, Route::Event(id))])
                    .await?;
                let count = self.watch_count(&queue, id, 1).await?;
                if count < 0 {
                    return Ok(futures::stream::pending().boxed());
                }
                self.inner.bus.start_watch(id, queue, subscription)
            }
        };
        let guard = Unwatch {
            store: self.clone(),
            id,
        };
        Ok(BroadcastStream::new(rx)
            .filter_map(move |r| {
                let _keep = &guard;
                // A lagging watcher skips records; the next one carries the latest state.
                futures::future::ready(r.ok())
            })
            .boxed())
    }

    async fn cancellations(&self) -> Result<BoxStream<'static, TaskId>, StoreError> {
        let rx = self.inner.bus.cancels();
        let channel = self.keys().cancel_channel().to_string();
        let subscription = self
            .inner
            .listener
            .subscribe(vec![(channel, Route::Cancel)])
            .await?;
        Ok(BroadcastStream::new(rx)
            .filter_map(move |id| {
                let _keep = &subscription;
                // A listener that falls behind skips ids; heartbeats report cancellation too.
                futures::future::ready(id.ok())
            })
            .boxed())
    }

    async fn work_signal(&self, queues: &[String]) -> Result<Box<dyn WorkSignal>, StoreError> {
        for q in queues {
            check_queue(q)?;
        }
        let mut receivers: Vec<_> = queues.iter().map(|q| self.inner.bus.work(q)).collect();
        for rx in &mut receivers {
            // The first wait returns at once: work may have arrived before the signal existed.
            rx.mark_changed();
        }
        let channels = queues
            .iter()
            .map(|q| (self.keys().work_channel(q), Route::Work(q.as_str().into())))
            .collect();
        let subscription = self.inner.listener.subscribe(channels).await?;
        Ok(Box::new(RedisSignal {
            receivers,
            queues: queues.to_vec(),
            redis: self.inner.redis.clone(),
            keys: self.keys().clone(),
            now: self.inner.now.clone(),
            _subscription: subscription,
        }))
    }

    async fn reap(&self) -> Result<Reaped, StoreError> {
        let retryable = to_json(&lease_expired_error(true))?;
        let last = to_json(&lease_expired_error(false))?;
        let scripts = self.inner.redis.scripts();
        let totals = self
            .sweep(
                |base, now| {
                    let mut call = scripts.reap.call(base, now);
                    call.arg(SWEEP_CHUNK).arg(&retryable).arg(&last);
                    call
                },
                3,
            )
            .await?;
        Ok(Reaped {
            requeued: totals[0],
            failed: totals[1],
            cancelled: totals[2],
        })
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let scripts = self.inner.redis.scripts();
        let totals = self
            .sweep(
                |base, now| {
                    let mut call = scripts.purge.call(base, now);
                    call.arg(SWEEP_CHUNK);
                    call
                },
                1,
            )
            .await?;
        Ok(totals[0])
    }

    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        let queues = self.queue_list().await?;
        if queues.is_empty() {
            return Ok(QueueDepth::default());
        }
        let mut pipe = redis::pipe();
        for q in &queues {
            pipe.cmd("LLEN").arg(self.keys().ready(q));
            pipe.cmd("ZCARD").arg(self.keys().schedule(q));
            pipe.cmd("SCARD").arg(self.keys().skip(q));
            pipe.cmd("ZCARD").arg(self.keys().leases(q));
        }
        let values = self.inner.redis.pipeline(&pipe).await?;
        let mut depth = QueueDepth::default();
        for four in values.chunks(4) {
            if let [ready, scheduled, dead, running] = four {
                depth.waiting += (int(ready)? + int(scheduled)?).saturating_sub(int(dead)?);
                depth.running += int(running)?;
            }
        }
        Ok(depth)
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

impl RedisStore {
    /// Raises or lowers how many processes watch `id`; -1 when the task does not exist.
    async fn watch_count(&self, queue: &str, id: TaskId, delta: i64) -> Result<i64, StoreError> {
        let scripts = self.inner.redis.scripts();
        let mut call = scripts.watch.call(&self.keys().base(queue), self.now_arg());
        call.arg(id.to_string()).arg(delta);
        match self.run_one(call, "watch").await? {
            Value::Int(n) => Ok(n),
            other => Err(corrupt(format!("unexpected answer to watch: {other:?}"))),
        }
    }
}

/// Ends one watcher's stream: the process's last watcher of a task unsubscribes and lowers
/// the task's watcher count, so its changes stop being published.
struct Unwatch {
    store: RedisStore,
    id: TaskId,
}

impl Drop for Unwatch {
    fn drop(&mut self) {
        let Some(queue) = self.store.inner.bus.leave_watch(self.id) else {
            return;
        };
        // Outside a runtime the count stays raised: the task then publishes its changes to
        // nobody until it expires, which costs a little and loses nothing.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, id) = (self.store.clone(), self.id);
            runtime.spawn(async move {
                if let Err(e) = store.watch_count(&queue, id, -1).await {
                    debug!(task_id = %id, error = %e, "could not lower the task's watcher count");
                }
            });
        }
    }
}
