//! Workers on Postgres, whose complete loop claims with its writes
//! (`Store::complete_and_claim`, one statement per batch): many workers on two stores run
//! each task once, and a stopping worker claims nothing more once its shutdown began.

mod common;

use common::TempDb;
use errand_core::{
    Client, OwnerFilter, Registry, SealKey, Store, SystemClock, Task, TaskCx, TaskError, TaskId,
    Worker, WorkerConfig,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs of each task, with the attempt each run was.
#[derive(Default)]
struct Runs(Mutex<Vec<(TaskId, u32)>>);

impl Runs {
    fn taken(&self) -> Vec<(TaskId, u32)> {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Records its run, then sleeps `ms`.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct Mark {
    ms: u64,
}

impl Task for Mark {
    const NAME: &'static str = "mark";
    type Output = ();
    async fn run(self, cx: TaskCx) -> Result<(), TaskError> {
        if let Ok(mut runs) = cx.resource::<Runs>()?.0.lock() {
            runs.push((cx.id(), cx.attempt()));
        }
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Ok(())
    }
}

fn worker(store: Arc<dyn Store>, key: &SealKey, runs: &Arc<Runs>, concurrency: usize) -> Worker {
    let mut registry = Registry::new();
    registry.register::<Mark>().expect("registers");
    let config = WorkerConfig {
        concurrency,
        claim_batch: concurrency,
        poll_interval: Duration::from_millis(100),
        ..WorkerConfig::default()
    };
    Worker::new(store, Arc::new(registry), key.clone())
        .config(config)
        .resource(runs.clone())
}

async fn wait_for<F: Fn() -> bool>(what: &str, within: Duration, done: F) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_workers_claiming_with_their_writes_run_each_task_once() {
    let db = TempDb::new().await;
    let stores: Vec<Arc<dyn Store>> = vec![
        Arc::new(db.store(Arc::new(SystemClock)).await),
        Arc::new(db.store(Arc::new(SystemClock)).await),
    ];
    assert!(stores[0].claims_with_completions());
    let key = SealKey::generate();
    let runs = Arc::new(Runs::default());
    let client = Client::new(stores[0].clone(), key.clone());
    let ids: Vec<TaskId> = client
        .submit_batch((0..3000).map(|_| Mark { ms: 0 }))
        .await
        .expect("submit")
        .into_iter()
        .map(|e| e.id)
        .collect();
    let workers: Vec<_> = (0..3)
        .map(|i| worker(stores[i % 2].clone(), &key, &runs, 16).start())
        .collect();
    wait_for("every task to run", Duration::from_secs(60), || {
        runs.taken().len() >= ids.len()
    })
    .await;
    let mut succeeded = 0;
    for w in workers {
        succeeded += w.shutdown(Duration::from_secs(10)).await.succeeded;
    }
    let mut per_task: HashMap<TaskId, Vec<u32>> = HashMap::new();
    for (id, attempt) in runs.taken() {
        per_task.entry(id).or_default().push(attempt);
    }
    assert_eq!(per_task.len(), ids.len(), "every task ran");
    let twice: Vec<_> = per_task.iter().filter(|(_, a)| a.len() > 1).collect();
    assert!(twice.is_empty(), "tasks ran more than once: {twice:?}");
    assert_eq!(succeeded, 3000);
    let counts = stores[1].counts(&OwnerFilter::Any).await.expect("counts");
    assert_eq!(
        (counts.success, counts.running, counts.pending),
        (3000, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_claims_nothing_more() {
    let db = TempDb::new().await;
    let store: Arc<dyn Store> = Arc::new(db.store(Arc::new(SystemClock)).await);
    let key = SealKey::generate();
    let runs = Arc::new(Runs::default());
    let client = Client::new(store.clone(), key.clone());
    client
        .submit_batch((0..2000).map(|_| Mark { ms: 2 }))
        .await
        .expect("submit");
    let handle = worker(store.clone(), &key, &runs, 16).start();
    wait_for("some tasks to run", Duration::from_secs(30), || {
        runs.taken().len() >= 100
    })
    .await;
    let stats = handle.shutdown(Duration::from_secs(10)).await;
    let ran = runs.taken().len() as u64;
    assert_eq!(
        stats.claimed,
        stats.succeeded + stats.released,
        "each claimed task ended: {stats:?}"
    );
    assert_eq!(stats.succeeded, ran, "every task that started finished");
    let counts = store.counts(&OwnerFilter::Any).await.expect("counts");
    assert_eq!(counts.running, 0, "no claim outlived the shutdown");
    assert_eq!(counts.success, ran);
    assert_eq!(counts.pending, 2000 - ran);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        runs.taken().len() as u64,
        ran,
        "nothing ran after the shutdown"
    );
}
