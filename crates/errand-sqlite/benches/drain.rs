//! `cargo bench -p errand-sqlite --bench drain`: how fast the SQLite store takes and drains
//! no-op tasks through core's `Worker`, at several backlog sizes, and where the time goes.
//! Prints one JSON object per line; asserts nothing.
//!
//! Settings (environment):
//! - `ERRAND_BENCH_BACKLOGS`: comma-separated backlog sizes (default `10000,100000`; add
//!   `1000000` for the large run: it takes minutes and about 1 GB of disk);
//! - `ERRAND_BENCH_CONCURRENCY`: worker concurrency (default 64);
//! - `ERRAND_BENCH_DIR`: where the database files go (default: a temporary directory under
//!   the target directory, removed afterwards);
//! - `ERRAND_BENCH_SYNCHRONOUS`: `normal` (default), `full` or `off`.
//!
//! Each backlog is enqueued, flushed to disk, then drained by a fresh worker; small backlogs
//! repeat this in rounds until 100,000 tasks were drained, so every figure covers enough work.
//! Each backlog line gives: `enqueue_per_s` (batches of 1,000 with a sealed context),
//! `drain_per_s` (all rounds), `drain_round_per_s`, `drain_deciles_per_s` (the rate over each
//! tenth of the first round), `writer_us_per_task_deciles` (the writer thread's SQL and commit
//! time per task over each tenth: flat when the claim path does not depend on the backlog, and
//! less disturbed than wall-clock rates by other load on the machine), the writer's
//! transactions and time per task, and the CPU time of the writer thread against the whole
//! process. Then one line with single-task submissions from concurrent callers, enqueue-to-start
//! latency at a steady 1,000 tasks/s and after idleness, and one line draining the in-memory
//! store with the same worker (the worker's own ceiling).

use errand_core::bench::{Noop, Probe, StartLatencies};
use errand_core::{
    Client, Context, MemoryStore, Registry, SealKey, Secret, Store, Worker, WorkerHandle,
};
use errand_sqlite::{SqliteConfig, SqliteStore, Synchronous, WriterStats};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn per_s(n: u64, d: Duration) -> f64 {
    (n as f64 / d.as_secs_f64().max(1e-9)).round()
}

fn ctx(i: usize) -> Context {
    Context::builder()
        .user_id(format!("bench-user-{}", i % 97))
        .tenant("bench")
        .request_id(format!("bench-{i}"))
        .credential(Secret::new("bench-token"), None)
        .build()
}

fn registry() -> Result<Arc<Registry>, Error> {
    let mut registry = Registry::new();
    registry.register::<Noop>()?;
    registry.register::<Probe>()?;
    Ok(Arc::new(registry))
}

/// CPU seconds (user + system) of the whole process and of the writer thread, from /proc.
fn cpu_seconds() -> (f64, f64) {
    fn ticks(stat: &str) -> Option<f64> {
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
    }
    const HZ: f64 = 100.0;
    let process = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| ticks(&s))
        .unwrap_or(0.0);
    let mut writer = 0.0;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim_end().starts_with("errand-sqlite") {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                writer += ticks(&stat).unwrap_or(0.0);
            }
        }
    }
    (process / HZ, writer / HZ)
}

/// Enqueues `jobs` no-op tasks in batches of 1,000, four batches in flight.
async fn enqueue(client: &Client, jobs: usize) -> Result<Duration, Error> {
    let began = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    for start in (0..jobs).step_by(1000) {
        if in_flight.len() >= 4
            && let Some(r) = in_flight.join_next().await
        {
            r??;
        }
        let client = client.clone();
        let end = (start + 1000).min(jobs);
        in_flight.spawn(ctx(start).scope(async move {
            client
                .submit_batch((start..end).map(|i| Noop { i: i as u64 }))
                .await
                .map(|_| ())
        }));
    }
    while let Some(r) = in_flight.join_next().await {
        r??;
    }
    Ok(began.elapsed())
}

/// Where a drain was when it passed a tenth of its tasks: the time, and the writer's
/// counters when a store is given.
struct Mark {
    at: Duration,
    writer: Option<WriterStats>,
}

/// Waits until the worker has run `target` tasks, marking each tenth.
async fn drained(
    worker: &WorkerHandle,
    target: u64,
    store: Option<&SqliteStore>,
) -> Result<Vec<Mark>, Error> {
    let began = Instant::now();
    let mut marks = Vec::with_capacity(10);
    let mut last = (0, Instant::now());
    loop {
        let done = worker.stats().succeeded;
        while marks.len() < 10 && done >= target * (marks.len() as u64 + 1) / 10 {
            marks.push(Mark {
                at: began.elapsed(),
                writer: store.map(SqliteStore::writer_stats),
            });
        }
        if done >= target {
            return Ok(marks);
        }
        if done > last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            return Err(format!("the drain stalled at {done} of {target}").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn open(path: &Path, synchronous: Synchronous) -> Result<SqliteStore, Error> {
    let config = SqliteConfig {
        synchronous,
        ..SqliteConfig::default()
    };
    Ok(SqliteStore::open(path, config)?)
}

/// Pushes everything written so far into the database file and onto the disk, so the drain
/// that follows does not pay for the enqueue's write-back.
fn settle(path: &Path) -> Result<(), Error> {
    let raw = rusqlite::Connection::open(path)?;
    raw.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    std::fs::File::open(path)?.sync_all()?;
    Ok(())
}

/// Fills a fresh store with `backlog` tasks and drains it, in rounds until at least 100,000
/// tasks were drained (one round for large backlogs), and prints the figures.
async fn backlog_run(
    dir: &Path,
    backlog: usize,
    concurrency: usize,
    synchronous: Synchronous,
) -> Result<(), Error> {
    let rounds = 100_000_usize.div_ceil(backlog).max(1);
    let path = dir.join(format!("drain-{backlog}.db"));
    let store = open(&path, synchronous)?;
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let key = SealKey::generate();
    let client = Client::new(shared.clone(), key.clone());

    let (mut enqueue_time, mut drain_time) = (Duration::ZERO, Duration::ZERO);
    let (mut writer, mut cpu, mut writer_cpu) = (WriterStats::default(), 0.0, 0.0);
    let mut round_rates = Vec::with_capacity(rounds);
    let (mut deciles, mut writer_deciles) = (Vec::new(), Vec::new());
    let mut claimed = 0;
    for round in 0..rounds {
        enqueue_time += enqueue(&client, backlog).await?;
        settle(&path)?;
        let before = store.writer_stats();
        let (cpu0, writer0) = cpu_seconds();
        let began = Instant::now();
        let worker = Worker::new(shared.clone(), registry()?, key.clone())
            .concurrency(concurrency)
            .start();
        let marks = drained(&worker, backlog as u64, Some(&store)).await?;
        let took = began.elapsed();
        let (cpu1, writer1) = cpu_seconds();
        writer = sum(&writer, &delta(&before, &store.writer_stats()));
        claimed += worker.shutdown(Duration::from_secs(5)).await.claimed;
        drain_time += took;
        cpu += cpu1 - cpu0;
        writer_cpu += writer1 - writer0;
        round_rates.push(per_s(backlog as u64, took));
        if round == 0 {
            let tenth = backlog as u64 / 10;
            let (mut at, mut stats) = (Duration::ZERO, before);
            for m in &marks {
                deciles.push(per_s(tenth, m.at - at));
                if let Some(w) = m.writer {
                    let d = delta(&stats, &w);
                    let us = (d.execute_micros + d.commit_micros) as f64 / tenth as f64;
                    writer_deciles.push((us * 100.0).round() / 100.0);
                    stats = w;
                }
                at = m.at;
            }
        }
    }
    let total = (backlog * rounds) as u64;
    let n = total as f64;
    let per_task = |us: u64| (us as f64 / n * 100.0).round() / 100.0;
    let file_mb = std::fs::metadata(&path).map_or(0, |m| m.len()) / 1_000_000;
    println!(
        "{}",
        json!({
            "system": "errand",
            "store": "sqlite",
            "synchronous": format!("{synchronous:?}").to_lowercase(),
            "backlog": backlog,
            "rounds": rounds,
            "jobs": total,
            "concurrency": concurrency,
            "enqueue_per_s": per_s(total, enqueue_time),
            "drain_per_s": per_s(total, drain_time),
            "end_to_end_per_s": per_s(total, enqueue_time + drain_time),
            "drain_round_per_s": round_rates,
            "drain_deciles_per_s": deciles,
            "writer_us_per_task_deciles": writer_deciles,
            "claimed": claimed,
            "writer_transactions": writer.transactions,
            "writer_ops_per_transaction": (writer.operations as f64 / writer.transactions.max(1) as f64 * 10.0).round() / 10.0,
            "writer_tasks_per_transaction": (n / writer.transactions.max(1) as f64 * 10.0).round() / 10.0,
            "writer_execute_us_per_task": per_task(writer.execute_micros),
            "writer_commit_us_per_task": per_task(writer.commit_micros),
            "cpu_process_us_per_task": (cpu * 1e6 / n).round(),
            "cpu_writer_thread_us_per_task": (writer_cpu * 1e6 / n).round(),
            "drain_wall_s": (drain_time.as_secs_f64() * 100.0).round() / 100.0,
            "file_mb": file_mb,
        })
    );
    store.close().await;
    std::fs::remove_file(&path).ok();
    for suffix in ["-wal", "-shm"] {
        std::fs::remove_file(format!("{}{suffix}", path.display())).ok();
    }
    Ok(())
}

fn sum(a: &WriterStats, b: &WriterStats) -> WriterStats {
    WriterStats {
        transactions: a.transactions + b.transactions,
        operations: a.operations + b.operations,
        largest_batch: a.largest_batch.max(b.largest_batch),
        execute_micros: a.execute_micros + b.execute_micros,
        commit_micros: a.commit_micros + b.commit_micros,
        failed_transactions: a.failed_transactions + b.failed_transactions,
    }
}

fn delta(a: &WriterStats, b: &WriterStats) -> WriterStats {
    WriterStats {
        transactions: b.transactions - a.transactions,
        operations: b.operations - a.operations,
        largest_batch: b.largest_batch,
        execute_micros: b.execute_micros - a.execute_micros,
        commit_micros: b.commit_micros - a.commit_micros,
        failed_transactions: b.failed_transactions - a.failed_transactions,
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0.0;
    };
    let i = ((last as f64) * p).round() as usize;
    (sorted[i.min(last)] as f64 / 10.0).round() / 100.0
}

/// Single-task submissions from concurrent callers, then enqueue-to-start latency at a
/// steady rate and after idleness, with a worker waiting on the store's work signal.
async fn latency_run(
    dir: &Path,
    concurrency: usize,
    synchronous: Synchronous,
) -> Result<(), Error> {
    const SINGLES: usize = 20_000;
    const SUBMITTERS: usize = 64;
    const RATE: u64 = 1_000;
    const PROBES: usize = 3_000;
    const IDLE: Duration = Duration::from_secs(3);

    let path = dir.join("latency.db");
    let store = open(&path, synchronous)?;
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let key = SealKey::generate();
    let client = Client::new(shared.clone(), key.clone());

    let before = store.writer_stats();
    let began = Instant::now();
    let mut submitters = tokio::task::JoinSet::new();
    for s in 0..SUBMITTERS {
        let client = client.clone();
        submitters.spawn(ctx(s).scope(async move {
            for i in (s..SINGLES).step_by(SUBMITTERS) {
                client.submit(Noop { i: i as u64 }).await?;
            }
            Ok::<_, errand_core::SubmitError>(())
        }));
    }
    while let Some(r) = submitters.join_next().await {
        r??;
    }
    let singles_time = began.elapsed();
    let singles_writer = delta(&before, &store.writer_stats());

    let latencies = Arc::new(StartLatencies::default());
    let worker = Worker::new(shared.clone(), registry()?, key)
        .concurrency(concurrency)
        .resource(latencies.clone())
        .start();
    drained(&worker, SINGLES as u64, None).await?;

    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    for _ in 0..PROBES {
        tick.tick().await;
        client.submit(Probe::now()).await?;
    }
    drained(&worker, (SINGLES + PROBES) as u64, None).await?;
    let sorted = latencies.take_sorted();

    tokio::time::sleep(IDLE).await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        let target = worker.stats().succeeded + 1;
        client.submit(Probe::now()).await?;
        while worker.stats().succeeded < target {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let waited = latencies.take_sorted().pop();
        idle.extend(waited.map(|us| (us as f64 / 10.0).round() / 100.0));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await;
    println!(
        "{}",
        json!({
            "system": "errand",
            "store": "sqlite",
            "bench": "latency",
            "enqueue_single_per_s": per_s(SINGLES as u64, singles_time),
            "enqueue_single_submitters": SUBMITTERS,
            "enqueue_single_ops_per_transaction": (singles_writer.operations as f64 / singles_writer.transactions.max(1) as f64 * 10.0).round() / 10.0,
            "latency_rate_per_s": RATE,
            "latency_p50_ms": percentile(&sorted, 0.50),
            "latency_p99_ms": percentile(&sorted, 0.99),
            "latency_max_ms": percentile(&sorted, 1.0),
            "idle_s": IDLE.as_secs_f64(),
            "idle_latency_ms": idle,
        })
    );
    store.close().await;
    Ok(())
}

/// The same worker draining the in-memory store: what the worker alone can do here.
async fn memory_run(backlog: usize, concurrency: usize) -> Result<(), Error> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let key = SealKey::generate();
    let client = Client::new(store.clone(), key.clone());
    let enqueue_time = enqueue(&client, backlog).await?;
    let (cpu0, _) = cpu_seconds();
    let began = Instant::now();
    let worker = Worker::new(store, registry()?, key)
        .concurrency(concurrency)
        .start();
    drained(&worker, backlog as u64, None).await?;
    let drain_time = began.elapsed();
    let (cpu1, _) = cpu_seconds();
    worker.shutdown(Duration::from_secs(5)).await;
    println!(
        "{}",
        json!({
            "system": "errand",
            "store": "memory",
            "backlog": backlog,
            "jobs": backlog,
            "concurrency": concurrency,
            "enqueue_per_s": per_s(backlog as u64, enqueue_time),
            "drain_per_s": per_s(backlog as u64, drain_time),
            "cpu_process_us_per_task": ((cpu1 - cpu0) * 1e6 / backlog as f64).round(),
        })
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let backlogs: Vec<usize> = env("ERRAND_BENCH_BACKLOGS")
        .unwrap_or_else(|| "10000,100000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let concurrency: usize = env("ERRAND_BENCH_CONCURRENCY").map_or(Ok(64), |v| v.parse())?;
    let synchronous = match env("ERRAND_BENCH_SYNCHRONOUS").as_deref() {
        None | Some("normal") => Synchronous::Normal,
        Some("full") => Synchronous::Full,
        Some("off") => Synchronous::Off,
        Some(other) => return Err(format!("unknown synchronous mode {other:?}").into()),
    };
    let temp;
    let dir = match env("ERRAND_BENCH_DIR") {
        Some(d) => d.into(),
        None => {
            temp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
            temp.path().to_path_buf()
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for &backlog in &backlogs {
            backlog_run(&dir, backlog, concurrency, synchronous).await?;
        }
        latency_run(&dir, concurrency, synchronous).await?;
        memory_run(
            backlogs.iter().copied().min().unwrap_or(10_000),
            concurrency,
        )
        .await
    })
}
