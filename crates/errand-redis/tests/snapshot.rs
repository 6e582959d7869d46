//! Fencing that survives a store's data loss: Redis restarted from a snapshot taken while a
//! task was queued forgets the claim that started it, and hands the task out again with the
//! same attempt number. The first attempt's lease token is not the new claim's, so it is
//! refused and stopped, and exactly one attempt's result lands.
//!
//! Uses a `redis-server` of its own: `SAVE` while the task is queued, let a worker start it,
//! then kill -9 Redis and start it again from that RDB file.

mod common;

use common::PrivateRedis;
use errand_core::{
    Context, NewTask, Registry, SealKey, SealKeyRing, Store, Task, TaskCx, TaskError, TaskId,
    TaskState, Worker, WorkerConfig, WorkerHandle,
};
use errand_redis::{RedisConfig, RedisStore};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// One attempt as the task body saw it.
#[derive(Debug, Clone)]
struct Run {
    attempt: u32,
    started: Instant,
    ended: Option<Instant>,
    finished: bool,
}

/// What every attempt did, and the gate that holds them.
struct Journal {
    runs: Mutex<Vec<Run>>,
    gate: Semaphore,
}

impl Journal {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            runs: Mutex::new(Vec::new()),
            gate: Semaphore::new(0),
        })
    }

    fn runs(&self) -> Vec<Run> {
        self.runs.lock().expect("lock").clone()
    }
}

/// Waits at the gate (or until its token fires), recording when it ran.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Held;

impl Task for Held {
    const NAME: &'static str = "held";
    type Output = u32;

    async fn run(self, cx: TaskCx) -> Result<u32, TaskError> {
        let journal = cx.resource::<Journal>()?;
        let index = {
            let mut runs = journal.runs.lock().expect("lock");
            runs.push(Run {
                attempt: cx.attempt(),
                started: Instant::now(),
                ended: None,
                finished: false,
            });
            runs.len() - 1
        };
        let passed = tokio::select! {
            p = journal.gate.acquire() => p.map(|p| p.forget()).is_ok(),
            () = cx.cancelled() => false,
        };
        let mut runs = journal.runs.lock().expect("lock");
        runs[index].ended = Some(Instant::now());
        runs[index].finished = passed;
        if passed {
            Ok(cx.attempt())
        } else {
            Err(TaskError::retryable("stopped"))
        }
    }

    fn max_attempts(&self) -> u32 {
        5
    }
}

const LEASE: Duration = Duration::from_millis(1_500);

fn config() -> RedisConfig {
    RedisConfig::default()
        .prefix(common::unique_prefix())
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(800))
        .reconnect_delay(Duration::from_millis(50), Duration::from_millis(300))
}

fn worker(
    store: &RedisStore,
    keys: &SealKeyRing,
    journal: &Arc<Journal>,
    n: usize,
) -> WorkerHandle {
    let mut registry = Registry::new();
    registry.register::<Held>().expect("register");
    let store: Arc<dyn Store> = Arc::new(store.clone());
    Worker::new(store, Arc::new(registry), keys.clone())
        .config(WorkerConfig {
            concurrency: n,
            claim_batch: n,
            lease: LEASE,
            reap_interval: LEASE / 3,
            poll_interval: Duration::from_millis(50),
            ..WorkerConfig::default()
        })
        .resource(journal.clone())
        .start()
}

/// The lease token field of the task's stored record, read with a plain Redis client.
fn stored_token(url: &str, prefix: &str, id: TaskId) -> String {
    let client = redis::Client::open(url).expect("client");
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connection");
    let key = format!("{{{prefix}:default}}:t:{id}");
    let record: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut conn).expect("GET");
    let header = String::from_utf8_lossy(&record);
    header.split('|').nth(2).expect("a token field").to_string()
}

fn save(url: &str) {
    let client = redis::Client::open(url).expect("client");
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connection");
    let _: String = redis::cmd("SAVE").query(&mut conn).expect("SAVE");
}

async fn until<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn running_attempt(store: &RedisStore, id: TaskId) -> Option<u32> {
    let r = store.get(id).await.ok()??;
    (r.status == TaskState::Running).then_some(r.attempt)
}

/// Restores Redis from a snapshot taken while `id` was queued, once a worker started it.
/// Returns the first claim's stored token.
async fn restore_after_start(
    redis: &mut PrivateRedis,
    store: &RedisStore,
    prefix: &str,
    id: TaskId,
    journal: &Journal,
) -> String {
    until(
        "the first attempt to start",
        Duration::from_secs(10),
        async || (journal.runs().len() == 1).then_some(()),
    )
    .await;
    assert_eq!(running_attempt(store, id).await, Some(1));
    let first = stored_token(&redis.url(), prefix, id);
    assert_eq!(first.len(), 32, "a random 128-bit token: {first}");
    // The snapshot is older than the claim: restarting from it forgets the claim.
    redis.restart();
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_snapshot_never_runs_two_attempts_under_one_lease() {
    let mut redis = PrivateRedis::start();
    let config = config();
    let prefix = config.prefix.clone();
    let store = RedisStore::connect(&redis.url(), config)
        .await
        .expect("connects");
    let keys: SealKeyRing = SealKey::generate().into();
    let journal = Journal::new();
    let ctx = Context::builder().user_id("alice").build();
    let task = NewTask::new(
        Held::NAME,
        serde_json::value::to_raw_value(&Held).expect("args"),
    )
    .with_context(&ctx, &keys)
    .expect("seal");
    let id = task.id;
    store.enqueue(vec![task]).await.expect("enqueue");
    save(&redis.url());

    // Worker A holds one slot: after the restore it cannot take the task again itself.
    let a = worker(&store, &keys, &journal, 1);
    let first = restore_after_start(&mut redis, &store, &prefix, id, &journal).await;
    let b = worker(&store, &keys, &journal, 1);
    until(
        "the task to be claimed again",
        Duration::from_secs(15),
        async || (journal.runs().len() == 2).then_some(()),
    )
    .await;
    let second = stored_token(&redis.url(), &prefix, id);
    let runs = journal.runs();
    assert_eq!(
        (runs[0].attempt, runs[1].attempt),
        (1, 1),
        "the store forgot the first claim: both attempts are number 1"
    );
    assert_ne!(first, second, "yet each claim has its own lease token");
    // A's next heartbeat finds its token refused: its attempt is stopped within a heartbeat.
    until("the stale attempt to stop", LEASE * 2, async || {
        journal.runs()[0].ended.map(|_| ())
    })
    .await;
    let runs = journal.runs();
    let overlap = runs[0].ended.expect("ended") - runs[1].started;
    assert!(
        overlap <= LEASE / 3 + Duration::from_millis(800),
        "the stale attempt ran on {overlap:?} after the new claim (one heartbeat: {:?})",
        LEASE / 3
    );
    journal.gate.add_permits(1);
    let r = until("the task to finish", Duration::from_secs(15), async || {
        store.get(id).await.ok()?.filter(|r| r.status.is_terminal())
    })
    .await;
    assert_eq!((r.status, r.attempt), (TaskState::Success, 1));
    let stats_a = a.shutdown(Duration::from_secs(5)).await;
    let stats_b = b.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (stats_a.lost, stats_a.succeeded),
        (1, 0),
        "A lost its lease: {stats_a:?}"
    );
    assert_eq!(stats_b.succeeded, 1, "{stats_b:?}");
    let runs = journal.runs();
    assert_eq!(
        runs.iter().filter(|r| r.finished).count(),
        1,
        "exactly one attempt ran to its end: {runs:?}"
    );
    // Every pair of attempts that ran at the same time had different lease tokens.
    let same_token_at_once = usize::from(first == second);
    println!(
        "{{\"attempts\":{},\"overlap_ms\":{},\"concurrent_attempts_under_one_token\":{same_token_at_once}}}",
        runs.len(),
        overlap.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_given_a_task_again_stops_its_own_older_attempt_at_once() {
    let mut redis = PrivateRedis::start();
    let config = config();
    let prefix = config.prefix.clone();
    let store = RedisStore::connect(&redis.url(), config)
        .await
        .expect("connects");
    let keys: SealKeyRing = SealKey::generate().into();
    let journal = Journal::new();
    let task = NewTask::new(
        Held::NAME,
        serde_json::value::to_raw_value(&Held).expect("args"),
    );
    let id = task.id;
    store.enqueue(vec![task]).await.expect("enqueue");
    save(&redis.url());

    // One worker with a free slot: after the restore it claims the task again itself, with
    // the same attempt number and a new token.
    let w = worker(&store, &keys, &journal, 2);
    let first = restore_after_start(&mut redis, &store, &prefix, id, &journal).await;
    until(
        "the task to be claimed again",
        Duration::from_secs(15),
        async || (journal.runs().len() == 2).then_some(()),
    )
    .await;
    assert_ne!(first, stored_token(&redis.url(), &prefix, id));
    let runs = journal.runs();
    assert_eq!((runs[0].attempt, runs[1].attempt), (1, 1));
    // Superseded in the process at once, without waiting for a heartbeat.
    until("the older attempt to stop", LEASE / 3, async || {
        journal.runs()[0].ended.map(|_| ())
    })
    .await;
    journal.gate.add_permits(1);
    let r = until("the task to finish", Duration::from_secs(15), async || {
        store.get(id).await.ok()?.filter(|r| r.status.is_terminal())
    })
    .await;
    assert_eq!(r.status, TaskState::Success);
    let stats = w.shutdown(Duration::from_secs(5)).await;
    assert_eq!((stats.lost, stats.succeeded), (1, 1), "{stats:?}");
}
