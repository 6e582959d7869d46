//! A primary of a Redis Cluster killed with -9 mid-run: its replica takes over
//! (`cluster-node-timeout` 1 s), and the stores and `Worker`s of the test resume without help.
//! The test counts the acknowledged enqueues that were lost (never ran, and the store no longer
//! has them) and the tasks that ran more than once, and prints both. With
//! `wait_replicas(1)`, every acknowledged enqueue was confirmed by the replica that takes
//! over, so none is lost; without it, a loss is possible (asynchronous replication) and only
//! reported. Run with `--nocapture` to see the counts.

mod common;

use common::cluster::TestCluster;
use errand_core::{
    Client, Registry, SealKey, Store, Task, TaskCx, TaskError, TaskId, Worker, WorkerConfig,
    WorkerHandle,
};
use errand_redis::{RedisConfig, RedisStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tasks enqueued (acknowledged) per run.
const TASKS: usize = 240;
/// Queues, spread over the cluster's slots.
const QUEUES: usize = 6;

/// How many times each task ran.
#[derive(Default)]
struct Runs(Mutex<HashMap<TaskId, u32>>);

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Counted {
    queue: String,
}

impl Task for Counted {
    const NAME: &'static str = "counted";
    type Output = ();

    async fn run(self, cx: TaskCx) -> Result<(), TaskError> {
        let runs = cx.resource::<Runs>()?;
        *runs
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(cx.id())
            .or_default() += 1;
        Ok(())
    }

    fn queue(&self) -> &str {
        &self.queue
    }

    fn max_attempts(&self) -> u32 {
        10
    }
}

fn config(prefix: &str, wait_replicas: usize) -> RedisConfig {
    RedisConfig::default()
        .prefix(prefix)
        .cluster(true)
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_secs(1))
        .reconnect_delay(Duration::from_millis(50), Duration::from_millis(500))
        .keepalive_interval(Duration::from_millis(500))
        .wait_replicas(wait_replicas, Duration::from_millis(500))
}

fn queues() -> Vec<String> {
    (0..QUEUES).map(|i| format!("q{i}")).collect()
}

fn worker(store: &RedisStore, key: &SealKey, runs: &Arc<Runs>) -> WorkerHandle {
    let mut registry = Registry::new();
    registry.register::<Counted>().expect("register");
    let store: Arc<dyn Store> = Arc::new(store.clone());
    Worker::new(store, Arc::new(registry), key.clone())
        .config(WorkerConfig {
            concurrency: 8,
            claim_batch: 8,
            lease: Duration::from_secs(2),
            reap_interval: Duration::from_millis(500),
            poll_interval: Duration::from_millis(100),
            queues: queues(),
            ..WorkerConfig::default()
        })
        .resource(runs.clone())
        .start()
}

/// What one run measured.
#[derive(Debug)]
struct Report {
    acknowledged: usize,
    refused: usize,
    lost: usize,
    duplicates: usize,
}

/// Submits the next batch of 4 (over the queues in turn); true if it was acknowledged.
async fn submit(client: &Client, next: &mut usize, acknowledged: &mut Vec<TaskId>) -> bool {
    let first = *next;
    *next += 4;
    let batch = (first..first + 4).map(|i| Counted {
        queue: format!("q{}", i % QUEUES),
    });
    match client.submit_batch(batch).await {
        Ok(done) => {
            acknowledged.extend(done.into_iter().map(|e| e.id));
            true
        }
        Err(_) => false,
    }
}

/// Enqueues [`TASKS`] tasks in batches of 4 over every queue while two workers run them,
/// kills the primary of `q0`'s slot after a third, waits for its replica to take over and
/// starts the killed node again (it rejoins as a replica), then waits for every acknowledged
/// task to run and counts.
async fn run(wait_replicas: usize) -> Report {
    let cluster = TestCluster::start();
    let prefix = common::unique_prefix();
    let url = cluster.url();
    let store = RedisStore::connect(&url, config(&prefix, wait_replicas))
        .await
        .expect("store connects");
    let key = SealKey::generate();
    let runs = Arc::new(Runs::default());
    let workers = [worker(&store, &key, &runs), worker(&store, &key, &runs)];
    let client = Client::new(Arc::new(store.clone()), key.clone());
    let homes: Vec<u16> = queues()
        .iter()
        .map(|q| cluster.primary_of(&format!("{{{prefix}:{q}}}")))
        .collect();
    let mut distinct = homes.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() >= 2,
        "the queues span several primaries: {homes:?}"
    );
    let victim_key = format!("{{{prefix}:q0}}");
    let victim = homes[0];

    let mut acknowledged: Vec<TaskId> = Vec::new();
    let mut refused = 0;
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut next = 0usize;
    while acknowledged.len() < TASKS {
        assert!(Instant::now() < deadline, "enqueues did not resume");
        if !killed && acknowledged.len() >= TASKS / 3 {
            killed = true;
            cluster.kill(victim);
            // Enqueues go on (and fail on the victim's queues) while the replica takes over.
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until {
                if !submit(&client, &mut next, &mut acknowledged).await {
                    refused += 4;
                }
            }
            cluster.wait_failover(&victim_key, victim, Duration::from_secs(20));
            cluster.restart(victim);
            continue;
        }
        if !submit(&client, &mut next, &mut acknowledged).await {
            refused += 4;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Every acknowledged task runs, or is gone from the store (lost).
    let settle = Instant::now() + Duration::from_secs(30);
    let mut lost = Vec::new();
    loop {
        let missing: Vec<TaskId> = {
            let ran = runs.0.lock().unwrap_or_else(|p| p.into_inner());
            acknowledged
                .iter()
                .filter(|id| !ran.contains_key(id))
                .copied()
                .collect()
        };
        lost.clear();
        let mut waiting = 0;
        for id in &missing {
            match store.get(*id).await {
                Ok(None) => lost.push(*id),
                _ => waiting += 1,
            }
        }
        if waiting == 0 || Instant::now() > settle {
            assert_eq!(waiting, 0, "{waiting} acknowledged tasks never ran");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for worker in workers {
        worker.shutdown(Duration::from_secs(5)).await;
    }
    let duplicates = runs
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .filter(|n| **n > 1)
        .count();
    let report = Report {
        acknowledged: acknowledged.len(),
        refused,
        lost: lost.len(),
        duplicates,
    };
    println!(
        "cluster failover, wait_replicas={wait_replicas}: {} enqueues acknowledged, {} refused, {} acknowledged lost, {} tasks ran more than once",
        report.acknowledged, report.refused, report.lost, report.duplicates
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_fails_over_and_everything_resumes() {
    let report = run(0).await;
    assert!(report.acknowledged >= TASKS, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_no_acknowledged_enqueue_is_lost() {
    let report = run(1).await;
    assert!(report.acknowledged >= TASKS, "{report:?}");
    assert_eq!(report.lost, 0, "{report:?}");
}
