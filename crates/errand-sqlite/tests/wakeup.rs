//! Same-process wake-ups: new work starts an idle worker at once (a notify, not a poll), and
//! an idle worker's wait ends when a delayed or retrying task falls due.

mod common;

use common::{claim, task_for};
use errand_core::{
    Client, Completion, ErrorInfo, Outcome, Registry, SealKey, StatusUpdate, Store, Task, TaskCx,
    TaskError, TokioClock, Worker, WorkerConfig,
};
use errand_sqlite::{SqliteConfig, SqliteStore};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Says when it started.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Started;

struct StartTimes(mpsc::UnboundedSender<Instant>);

impl Task for Started {
    const NAME: &'static str = "started";
    type Output = ();
    async fn run(self, cx: TaskCx) -> Result<(), TaskError> {
        let _ = cx.resource::<StartTimes>()?.0.send(Instant::now());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_work_starts_an_idle_worker_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.path().join("errand.db"), SqliteConfig::default()).expect("opens"),
    );
    let key = SealKey::generate();
    let mut registry = Registry::new();
    registry.register::<Started>().expect("register");
    let (tx, mut started) = mpsc::unbounded_channel();
    // A poll this slow would make every start below take about a minute.
    let config = WorkerConfig {
        poll_interval: Duration::from_secs(60),
        ..WorkerConfig::default()
    };
    let worker = Worker::new(store.clone(), Arc::new(registry), key.clone())
        .config(config)
        .resource(Arc::new(StartTimes(tx)))
        .start();
    let client = Client::new(store, key);
    for _ in 0..3 {
        // Let the worker go idle on its work signal.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let submitted = Instant::now();
        client.submit(Started).await.expect("submit");
        let at = tokio::time::timeout(Duration::from_secs(30), started.recv())
            .await
            .expect("the task started")
            .expect("channel open");
        let waited = at.duration_since(submitted);
        assert!(
            waited < Duration::from_millis(500),
            "woken by the enqueue, not the 60 s poll: {waited:?}"
        );
    }
    let stats = worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.succeeded, 3);
}

#[tokio::test(start_paused = true)]
async fn the_wait_ends_when_a_delayed_or_retrying_task_falls_due() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = SqliteConfig {
        clock: Arc::new(TokioClock::new()),
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open(dir.path().join("errand.db"), config).expect("opens");
    let key = SealKey::generate();
    let mut signal = store
        .work_signal(&["default".into()])
        .await
        .expect("signal");

    signal.wait(Duration::from_millis(1)).await; // a fresh signal wakes once
    assert!(claim(&store, 10).await.is_empty());

    // A worker already asleep hears of a delayed task at once, and sleeps again until it is
    // due.
    let mut delayed = task_for("alice", &key);
    delayed.delay = Some(Duration::from_secs(20));
    let began = tokio::time::Instant::now();
    let enqueue = async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        // On a blocking thread, so paused time does not jump ahead while the writer works.
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            futures::executor::block_on(store.enqueue(vec![delayed]))
        })
        .await
        .expect("join")
        .expect("enqueue");
    };
    tokio::join!(signal.wait(Duration::from_secs(3600)), enqueue);
    assert!(
        began.elapsed() < Duration::from_secs(6),
        "woken by the enqueue: {:?}",
        began.elapsed()
    );
    assert!(claim(&store, 10).await.is_empty(), "not due yet");
    signal.wait(Duration::from_secs(3600)).await;
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(24) && waited <= Duration::from_secs(26),
        "woke when the delayed task fell due, 20 s after its enqueue: {waited:?}"
    );
    let c = claim(&store, 10).await;
    assert_eq!(c.len(), 1, "and it is claimable then");

    let retry = Outcome::Retry {
        error: ErrorInfo {
            message: "flaky".into(),
            kind: "flaky".into(),
            details: None,
            retryable: true,
        },
        delay: Duration::from_secs(45),
    };
    store
        .complete(vec![Completion {
            lease: c[0].lease,
            outcome: retry,
            report: StatusUpdate::default(),
        }])
        .await
        .expect("complete");
    signal.wait(Duration::from_millis(1)).await;
    assert!(claim(&store, 10).await.is_empty());
    let began = tokio::time::Instant::now();
    signal.wait(Duration::from_secs(3600)).await;
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(44) && waited <= Duration::from_secs(46),
        "woke when the retry fell due: {waited:?}"
    );
    assert_eq!(claim(&store, 10).await.len(), 1);

    // Nothing waits now: the wait runs to its maximum.
    let began = tokio::time::Instant::now();
    signal.wait(Duration::from_secs(600)).await;
    assert!(began.elapsed() >= Duration::from_secs(600));
}
