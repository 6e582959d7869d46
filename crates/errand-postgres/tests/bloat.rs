//! The bloat proof (issue 11): a backlog drained by a [`Worker`] keeps its pace to the end.
//! Every claim and finish leaves dead rows in the hot table and every finished task a row in
//! `finished`; if either slowed the claims down, the last tenth of the drain would be slower
//! than the first. Prints one JSON line: the rate of each tenth, the CPU time each tenth cost
//! per task (this process and the server's backends for the test's database), and the sizes
//! of `tasks` and `finished` (whole, heap, indexes) before and after the drain.
//!
//! Asserts that the last tenth ran at least 80% as fast as the first, by the clock or by CPU
//! time per task: on a machine shared with other work (a build beside the test), the clock
//! alone measures the neighbours, while bloat costs CPU per task (more pages and index
//! entries to go through for each claim).
//!
//! 50,000 tasks in CI (tenths of 5,000: long enough that a passing hiccup of a loaded machine
//! does not decide the comparison); `ERRAND_PROOF_LARGE=1` drains 1,000,000 (by hand):
//! `ERRAND_PROOF_LARGE=1 cargo test -p errand-postgres --test bloat -- --nocapture`.

mod common;

use common::TempDb;
use errand_core::{
    NewTask, Registry, SealKey, Store, Task, TaskCx, TaskError, Worker, WorkerConfig,
};
use errand_postgres::{PostgresConfig, PostgresStore};
use serde_json::{Value, json};
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_postgres::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A no-op task that counts its runs.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Tick {}

/// How many [`Tick`]s ran, and when the first one and each tenth of them did.
struct Progress {
    tenth: usize,
    ran: AtomicUsize,
    marks: Mutex<Vec<Instant>>,
}

impl Task for Tick {
    const NAME: &'static str = "tick";
    type Output = ();
    async fn run(self, cx: TaskCx) -> Result<(), TaskError> {
        let progress = cx.resource::<Progress>()?;
        let n = progress.ran.fetch_add(1, Ordering::Relaxed);
        if n == 0 || (n + 1) % progress.tenth == 0 {
            progress
                .marks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Instant::now());
        }
        Ok(())
    }
}

/// The size of `errand.<table>` in bytes: with its indexes (and TOAST), its heap, its indexes.
async fn sizes(pool: &PgPool, table: &str) -> Value {
    let name = format!("errand.{table}");
    let row = query(
        "SELECT pg_total_relation_size($1::regclass), pg_relation_size($1::regclass), \
         pg_indexes_size($1::regclass)",
    )
    .bind(&name)
    .fetch_one(pool)
    .await
    .expect("the table's sizes");
    json!({
        "total_bytes": row.get::<i64, _>(0),
        "heap_bytes": row.get::<i64, _>(1),
        "indexes_bytes": row.get::<i64, _>(2),
    })
}

async fn both_sizes(pool: &PgPool) -> Value {
    json!({"tasks": sizes(pool, "tasks").await, "finished": sizes(pool, "finished").await})
}

/// CPU time used so far by this process and the server's backends for the test's database,
/// each process's last reading kept (a backend that exits keeps what it used).
struct CpuMeter {
    pool: PgPool,
    ticks: HashMap<u32, u64>,
    ticks_per_second: u64,
}

impl CpuMeter {
    fn new(pool: PgPool) -> Self {
        let out = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("run getconf CLK_TCK");
        let ticks_per_second = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("clock ticks per second");
        Self {
            pool,
            ticks: HashMap::new(),
            ticks_per_second,
        }
    }

    async fn read(&mut self) -> Duration {
        let backends: Vec<i32> =
            query("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
                .fetch_all(&self.pool)
                .await
                .expect("the backends")
                .iter()
                .map(|row| row.get(0))
                .collect();
        let pids = backends
            .into_iter()
            .filter_map(|pid| u32::try_from(pid).ok())
            .chain([std::process::id()]);
        for pid in pids {
            if let Some(used) = cpu_ticks(pid) {
                self.ticks.insert(pid, used);
            }
        }
        let ticks: u64 = self.ticks.values().sum();
        Duration::from_secs_f64(ticks as f64 / self.ticks_per_second as f64)
    }
}

/// User and system time of process `pid`, in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (in parentheses): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(field(14)? + field(15)?)
}

/// A reading during the drain: tasks run, CPU used.
#[derive(Clone, Copy)]
struct Sample {
    ran: usize,
    cpu: Duration,
}

/// CPU µs per task in each tenth of `total`, from the samples around its bounds.
fn cpu_per_task(samples: &[Sample], total: usize) -> Vec<f64> {
    let at = |ran: usize| {
        *samples
            .iter()
            .find(|s| s.ran >= ran)
            .expect("a sample at every bound")
    };
    (0..10)
        .map(|k| {
            let (from, to) = (at(k * total / 10), at((k + 1) * total / 10));
            let tasks = (to.ran - from.ran).max(1) as f64;
            (to.cpu - from.cpu).as_secs_f64() * 1e6 / tasks
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backlog_keeps_its_pace_to_the_end() {
    let large = std::env::var("ERRAND_PROOF_LARGE").is_ok_and(|v| v == "1");
    let total: usize = if large { 1_000_000 } else { 50_000 };
    let db = TempDb::new().await;
    let config = PostgresConfig {
        max_connections: 16,
        ..PostgresConfig::default()
    };
    let store = Arc::new(
        PostgresStore::connect(&db.url, config)
            .await
            .expect("store opens"),
    );
    let pool = db.pool().await;

    let enqueue_began = Instant::now();
    let args = serde_json::value::to_raw_value(&json!({})).expect("JSON");
    for _ in 0..total / 1_000 {
        let batch = (0..1_000)
            .map(|_| NewTask::new(Tick::NAME, args.clone()))
            .collect();
        store.enqueue(batch).await.expect("enqueue");
    }
    let enqueued_in = enqueue_began.elapsed();
    let before = both_sizes(&pool).await;

    let progress = Arc::new(Progress {
        tenth: total / 10,
        ran: AtomicUsize::new(0),
        marks: Mutex::new(Vec::new()),
    });
    let mut registry = Registry::new();
    registry.register::<Tick>().expect("register");
    let worker = Worker::new(store.clone(), Arc::new(registry), SealKey::generate())
        .config(WorkerConfig {
            concurrency: 64,
            claim_batch: 64,
            ..WorkerConfig::default()
        })
        .resource(progress.clone())
        .start();
    let drain_began = Instant::now();
    let deadline = drain_began + Duration::from_secs(if large { 3_600 } else { 300 });
    let mut meter = CpuMeter::new(pool.clone());
    let mut samples = vec![Sample {
        ran: 0,
        cpu: meter.read().await,
    }];
    loop {
        let depth = store.depth().await.expect("depth");
        let ran = progress.ran.load(Ordering::Relaxed);
        samples.push(Sample {
            ran,
            cpu: meter.read().await,
        });
        if ran == total && depth.waiting + depth.running == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backlog did not drain in time: {depth:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_in = drain_began.elapsed();
    let stats = worker.shutdown(Duration::from_secs(30)).await;
    let after = both_sizes(&pool).await;

    assert_eq!(
        progress.ran.load(Ordering::Relaxed),
        total,
        "every task ran once"
    );
    let marks = progress
        .marks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert_eq!(marks.len(), 11, "the first run and each tenth were marked");
    let rates: Vec<f64> = marks
        .windows(2)
        .map(|w| (total / 10) as f64 / (w[1] - w[0]).as_secs_f64())
        .collect();
    let (first, last) = (rates[0], rates[9]);
    let cpu = cpu_per_task(&samples, total);
    let (first_cpu, last_cpu) = (cpu[0], cpu[9]);
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let line = json!({
        "proof": "postgres_bloat",
        "tasks": total,
        "enqueue_s": round(enqueued_in.as_secs_f64()),
        "drain_s": round(drained_in.as_secs_f64()),
        "rate_per_tenth": rates.iter().copied().map(round).collect::<Vec<_>>(),
        "last_over_first": (last / first * 1000.0).round() / 1000.0,
        "cpu_us_per_task_per_tenth": cpu.iter().copied().map(round).collect::<Vec<_>>(),
        "cpu_first_over_last": (first_cpu / last_cpu * 1000.0).round() / 1000.0,
        "succeeded": stats.succeeded,
        "before": before,
        "after": after,
    });
    println!("{line}");
    assert!(
        last >= 0.8 * first || first_cpu >= 0.8 * last_cpu,
        "the last tenth drained at {last:.0}/s and {last_cpu:.0} µs of CPU per task, more than \
         20% slower than the first ({first:.0}/s, {first_cpu:.0} µs) by both: {line}"
    );
}
