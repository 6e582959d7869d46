//! Two store instances on one Redis, standing in for two processes (each has its own
//! connections, pub/sub listener and in-process state): each sees the other's tasks, events,
//! cancellations and work signals, finds tasks on queues it never used (however many
//! lookups run at once), and sets up watches of different tasks without waiting for each
//! other.

mod common;

use common::proxy::Proxy;
use errand_core::{
    CancelOutcome, ClaimRequest, CompleteResult, Completion, LeaseState, ManualClock, NewTask,
    Outcome, Owner, Progress, Registry, SealKey, StatusUpdate, Store, Task, TaskCx, TaskError,
    TaskState, Worker,
};
use errand_redis::{RedisConfig, RedisStore};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

struct Pair {
    a: RedisStore,
    b: RedisStore,
    prefix: String,
}

impl Pair {
    async fn new() -> Self {
        let prefix = common::unique_prefix();
        let clock = Arc::new(ManualClock::new());
        Self {
            a: common::store_on(&prefix, clock.clone()).await,
            b: common::store_on(&prefix, clock).await,
            prefix,
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        common::delete_keys(common::REDIS_URL, &self.prefix);
    }
}

fn task(queue: &str) -> NewTask {
    let args = serde_json::value::to_raw_value(&serde_json::json!({"n": 1})).expect("json");
    let mut t = NewTask::new("two_stores", args);
    t.queue = queue.into();
    t
}

fn claim(queue: &str) -> ClaimRequest {
    ClaimRequest {
        queues: vec![queue.into()],
        limit: 10,
        lease: Duration::from_secs(30),
        worker_id: "two-stores".into(),
    }
}

async fn next<T>(stream: &mut (impl futures::Stream<Item = T> + Unpin)) -> T {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an item within 5 s")
        .expect("the stream is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_one_store_sees_every_change_made_through_the_other() {
    let p = Pair::new().await;
    // A queue that store B has never used: it finds the task through the shared queue set.
    let id = p.a.enqueue(vec![task("emails")]).await.expect("enqueue")[0].id;
    let mut events = p.b.watch(id).await.expect("watch");
    let c = p.a.claim(&claim("emails")).await.expect("claim").remove(0);
    let report = StatusUpdate {
        progress: Some(Progress {
            current: 1,
            total: 2,
            message: Some("half".into()),
        }),
        steps: None,
    };
    p.a.report(vec![(c.lease, report)]).await.expect("report");
    let result = serde_json::value::to_raw_value(&serde_json::json!("done")).expect("json");
    p.a.complete(vec![Completion {
        lease: c.lease,
        outcome: Outcome::Success(result),
        report: StatusUpdate::default(),
    }])
    .await
    .expect("complete");

    let running = next(&mut events).await;
    assert_eq!((running.status, running.attempt), (TaskState::Running, 1));
    let progressed = next(&mut events).await;
    assert_eq!(progressed.progress.map(|p| p.current), Some(1));
    let done = next(&mut events).await;
    assert_eq!(done.status, TaskState::Success);
    assert_eq!(
        done.result.map(|r| r.get().to_string()).as_deref(),
        Some(r#""done""#)
    );
    assert_eq!(done.queue, "emails");
    let record = p.b.get(id).await.expect("get").expect("B reads A's task");
    assert_eq!(record.status, TaskState::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_made_through_one_store_reaches_the_holder_on_the_other() {
    let p = Pair::new().await;
    let mut cancels = p.a.cancellations().await.expect("cancellations");
    let id = p.a.enqueue(vec![task("default")]).await.expect("enqueue")[0].id;
    let c = p.a.claim(&claim("default")).await.expect("claim").remove(0);
    match p
        .b
        .cancel(id, &Owner::new("operator", None))
        .await
        .expect("cancel")
    {
        CancelOutcome::Requested(r) => assert!(r.cancel_requested),
        other => panic!("expected Requested, got {other:?}"),
    }
    assert_eq!(next(&mut cancels).await, id);
    // Store B can end the attempt too (it finds the task's queue itself).
    let results =
        p.b.complete(vec![Completion {
            lease: c.lease,
            outcome: Outcome::Cancelled,
            report: StatusUpdate::default(),
        }])
        .await
        .expect("complete");
    assert_eq!(results, [CompleteResult::Applied]);
    assert_eq!(
        p.a.get(id).await.expect("get").expect("record").status,
        TaskState::Cancelled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_through_one_store_wakes_an_idle_worker_of_the_other() {
    let p = Pair::new().await;
    let mut signal = p.a.work_signal(&["default".into()]).await.expect("signal");
    signal.wait(Duration::from_millis(10)).await; // the initial wake-up
    let waiter = tokio::spawn(async move {
        let began = std::time::Instant::now();
        signal.wait(Duration::from_secs(20)).await;
        began.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    p.b.enqueue(vec![task("default")]).await.expect("enqueue");
    let waited = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken")
        .expect("join");
    assert!(
        waited < Duration::from_secs(5),
        "woken by the enqueue: {waited:?}"
    );
}

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Echo {
    n: u32,
}

impl Task for Echo {
    const NAME: &'static str = "echo";
    type Output = u32;
    async fn run(self, _cx: TaskCx) -> Result<u32, TaskError> {
        Ok(self.n * 2)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_on_one_store_runs_what_the_other_submits() {
    let prefix = common::unique_prefix();
    let clock = Arc::new(errand_core::SystemClock);
    let api: Arc<dyn Store> = Arc::new(common::store_on(&prefix, clock.clone()).await);
    let worker_store: Arc<dyn Store> = Arc::new(common::store_on(&prefix, clock).await);
    let key = SealKey::generate();
    let mut registry = Registry::new();
    registry.register::<Echo>().expect("register");
    let worker = Worker::new(worker_store, Arc::new(registry), key.clone())
        .concurrency(8)
        .start();
    let client = errand_core::Client::new(api.clone(), key);
    let ids: Vec<_> = client
        .submit_batch((0..50).map(|n| Echo { n }))
        .await
        .expect("submit")
        .into_iter()
        .map(|e| e.id)
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for (n, id) in ids.iter().enumerate() {
        let record = loop {
            let r = api.get(*id).await.expect("get").expect("record");
            if r.status.is_terminal() {
                break r;
            }
            assert!(std::time::Instant::now() < deadline, "tasks did not finish");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(record.status, TaskState::Success);
        assert_eq!(
            record.result.map(|r| r.get().to_string()),
            Some((n * 2).to_string())
        );
    }
    let stats = worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.succeeded, 50);
    common::delete_keys(common::REDIS_URL, &prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_ends_attempts_claimed_through_another_on_a_queue_it_never_used() {
    let p = Pair::new().await;
    let id = p.a.enqueue(vec![task("reports")]).await.expect("enqueue")[0].id;
    let c = p.a.claim(&claim("reports")).await.expect("claim").remove(0);
    let held =
        p.b.heartbeat(&[c.lease], Duration::from_secs(30))
            .await
            .expect("heartbeat");
    assert_eq!(held, [LeaseState::Held]);
    let reported =
        p.b.report(vec![(c.lease, StatusUpdate::default())])
            .await
            .expect("report");
    assert_eq!(reported, [LeaseState::Held]);
    let result = serde_json::value::to_raw_value(&1).expect("json");
    let done =
        p.b.complete(vec![Completion {
            lease: c.lease,
            outcome: Outcome::Success(result),
            report: StatusUpdate::default(),
        }])
        .await
        .expect("complete");
    assert_eq!(done, [CompleteResult::Applied]);
    assert_eq!(
        p.a.get(id).await.expect("get").expect("record").status,
        TaskState::Success
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_lookups_all_find_the_task() {
    let p = Pair::new().await;
    let id = p.a.enqueue(vec![task("emails")]).await.expect("enqueue")[0].id;
    // B has never read the set of queues: every lookup learns of `emails` at once.
    let lookups = (0..20).map(|_| p.b.get(id));
    for found in futures::future::join_all(lookups).await {
        assert!(found.expect("get").is_some(), "a lookup missed the task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_of_different_tasks_are_set_up_concurrently() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let prefix = common::unique_prefix();
    let store = RedisStore::connect(&proxy.url(), RedisConfig::default().prefix(&prefix))
        .await
        .expect("connects");
    let tasks = vec![task("default"), task("default")];
    let (a, b) = (tasks[0].id, tasks[1].id);
    store.enqueue(tasks).await.expect("enqueue");
    // Both connections are up and the queue is known before answers are held.
    store.get(a).await.expect("get");
    let _cancels = store.cancellations().await.expect("pub/sub is up");

    // Redis's answers wait until lookups of both tasks were sent: a watch of `b` that waited
    // for the watch of `a` to be set up would never send its lookup in time.
    let ids = [a.to_string(), b.to_string()];
    let released = proxy.hold_answers_until(
        move |sent| {
            ids.iter()
                .all(|id| sent.iter().any(|c| c.iter().any(|arg| arg.contains(id))))
        },
        Duration::from_secs(5),
    );
    let (wa, wb) = tokio::join!(store.watch(a), store.watch(b));
    let (mut wa, mut wb) = (wa.expect("watch a"), wb.expect("watch b"));
    assert!(
        released.await.expect("released"),
        "the second watch waited for the first one's setup"
    );

    // Both were set up before any change: each sees its task's.
    let c = store.claim(&claim("default")).await.expect("claim");
    assert_eq!(c.len(), 2);
    assert_eq!(next(&mut wa).await.status, TaskState::Running);
    assert_eq!(next(&mut wb).await.status, TaskState::Running);
    common::delete_keys(common::REDIS_URL, &prefix);
}
