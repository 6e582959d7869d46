//! Two store instances on one Redis, standing in for two processes (each has its own
//! connections, pub/sub listener and in-process state): each sees the other's tasks, events,
//! cancellations and work signals.

mod common;

use errand_core::{
    CancelOutcome, ClaimRequest, CompleteResult, Completion, ManualClock, NewTask, Outcome,
    Progress, Registry, SealKey, StatusUpdate, Store, Task, TaskCx, TaskError, TaskState, Worker,
};
use errand_redis::RedisStore;
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
    match p.b.cancel(id).await.expect("cancel") {
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
