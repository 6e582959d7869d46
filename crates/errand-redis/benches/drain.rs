//! No-op throughput of the Redis store: enqueue N tasks in batches, then drain them with an
//! `errand_core::Worker`; optionally, enqueue-to-start latency at a steady rate and after
//! idleness. Prints one JSON object.
//!
//! ```text
//! cargo bench -p errand-redis --bench drain -- [--jobs 20000] [--concurrency 128]
//!     [--batch 1000] [--inflight 1] [--url redis://127.0.0.1:6379] [--context] [--raw]
//!     [--latency-rate 1000 --latency-secs 5 --idle-secs 30]
//! ```
//!
//! Besides the rates it reports where the CPU went: Redis's own CPU (`INFO cpu`, user + sys)
//! and this process's (getrusage), per task, for each phase. `--raw` adds a second drain of
//! as many tasks by two bare claim → complete loops (no `Worker`), which shows how much of
//! the drain time is the store's and how much the worker runtime's.

use errand_core::bench::{Noop, Probe, StartLatencies};
use errand_core::{
    ClaimRequest, Completion, Context, DEFAULT_QUEUE, NewTask, Outcome, Registry, SealKey,
    SealKeyRing, StatusUpdate, Store, Task, Worker, WorkerConfig,
};
use errand_redis::{RedisConfig, RedisStore};
use serde_json::json;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    jobs: u64,
    concurrency: usize,
    batch: usize,
    inflight: usize,
    url: String,
    context: bool,
    raw: bool,
    latency_rate: u64,
    latency_secs: u64,
    idle_secs: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        jobs: 20_000,
        concurrency: 128,
        batch: 1000,
        inflight: 1,
        url: "redis://127.0.0.1:6379".into(),
        context: false,
        raw: false,
        latency_rate: 0,
        latency_secs: 5,
        idle_secs: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_default();
        match flag.as_str() {
            "--jobs" => a.jobs = value().parse().unwrap_or(a.jobs),
            "--concurrency" => a.concurrency = value().parse().unwrap_or(a.concurrency),
            "--batch" => a.batch = value().parse().unwrap_or(a.batch),
            "--inflight" => a.inflight = value().parse().unwrap_or(a.inflight),
            "--url" => a.url = value(),
            "--context" => a.context = true,
            "--raw" => a.raw = true,
            "--latency-rate" => a.latency_rate = value().parse().unwrap_or(0),
            "--latency-secs" => a.latency_secs = value().parse().unwrap_or(a.latency_secs),
            "--idle-secs" => a.idle_secs = value().parse().unwrap_or(0),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// CPU seconds used by this process.
fn process_cpu() -> f64 {
    // SAFETY: getrusage only writes into the struct we hand it.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU seconds used by Redis so far (user + sys).
async fn redis_cpu(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .expect("INFO cpu");
    info.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            matches!(k, "used_cpu_sys" | "used_cpu_user").then(|| v.parse::<f64>().ok())?
        })
        .sum()
}

/// A worker running the bench's tasks.
fn start_worker(
    store: &RedisStore,
    key: &SealKeyRing,
    concurrency: usize,
    latencies: &Arc<StartLatencies>,
) -> errand_core::WorkerHandle {
    let mut registry = Registry::new();
    registry.register::<Noop>().expect("register");
    registry.register::<Probe>().expect("register");
    let store: Arc<dyn Store> = Arc::new(store.clone());
    Worker::new(store, Arc::new(registry), key.clone())
        .config(WorkerConfig {
            concurrency,
            claim_batch: concurrency,
            ..WorkerConfig::default()
        })
        .resource(latencies.clone())
        .start()
}

/// Enqueues `args.jobs` no-op tasks in batches; returns the seconds it took.
async fn enqueue_all(store: &RedisStore, args: &Args, ctx: &Context, key: &SealKeyRing) -> f64 {
    let started = Instant::now();
    let mut next = 0u64;
    while next < args.jobs {
        let mut rounds = Vec::new();
        for _ in 0..args.inflight.max(1) {
            if next >= args.jobs {
                break;
            }
            let n = (args.jobs - next).min(args.batch as u64);
            let batch: Vec<NewTask> = (next..next + n)
                .map(|i| {
                    let t = NewTask::new(Noop::NAME, raw(json!({ "i": i })));
                    if args.context {
                        t.with_context(ctx, key).expect("seal")
                    } else {
                        t
                    }
                })
                .collect();
            next += n;
            let store = store.clone();
            rounds.push(tokio::spawn(async move { store.enqueue(batch).await }));
        }
        for r in rounds {
            r.await.expect("join").expect("enqueue");
        }
    }
    started.elapsed().as_secs_f64()
}

/// Claims and completes until the queue is empty; returns how many tasks it took.
async fn raw_drain(store: &RedisStore, limit: usize) -> u64 {
    let request = ClaimRequest {
        queues: vec![DEFAULT_QUEUE.into()],
        limit,
        lease: Duration::from_secs(30),
        worker_id: "raw".into(),
    };
    let mut drained = 0;
    loop {
        let claimed = store.claim(&request).await.expect("claim");
        if claimed.is_empty() {
            return drained;
        }
        drained += claimed.len() as u64;
        let done = claimed
            .iter()
            .map(|c| Completion {
                lease: c.lease,
                outcome: Outcome::Success(raw(json!(null))),
                report: StatusUpdate::default(),
            })
            .collect();
        store.complete(done).await.expect("complete");
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn raw(v: serde_json::Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(&v).expect("JSON")
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let prefix = format!("errand-bench-{}", uuid::Uuid::new_v4().simple());
    let store = RedisStore::connect(&args.url, RedisConfig::default().prefix(&prefix))
        .await
        .expect("store");
    store.ping().await.expect("Redis answers");
    let mut info = redis::Client::open(args.url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("info connection");
    let key = SealKeyRing::from(SealKey::generate());
    let ctx = Context::builder()
        .user_id("bench-user")
        .tenant("bench")
        .build();

    // Enqueue.
    let (cpu0, rcpu0) = (process_cpu(), redis_cpu(&mut info).await);
    let enqueue_s = enqueue_all(&store, &args, &ctx, &key).await;
    let (cpu1, rcpu1) = (process_cpu(), redis_cpu(&mut info).await);

    // Drain.
    let latencies = Arc::new(StartLatencies::default());
    let drain_began = Instant::now();
    let worker = start_worker(&store, &key, args.concurrency, &latencies);
    while worker.stats().succeeded < args.jobs {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    loop {
        let d = store.depth().await.expect("depth");
        if d.waiting + d.running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let drain_s = drain_began.elapsed().as_secs_f64();
    let (cpu2, rcpu2) = (process_cpu(), redis_cpu(&mut info).await);

    let per_task_us = |secs: f64| secs * 1e6 / args.jobs as f64;
    let mut out = json!({
        "system": "errand-redis",
        "jobs": args.jobs,
        "concurrency": args.concurrency,
        "batch": args.batch,
        "inflight": args.inflight,
        "context": args.context,
        "enqueue_per_s": (args.jobs as f64 / enqueue_s).round(),
        "drain_per_s": (args.jobs as f64 / drain_s).round(),
        "end_to_end_per_s": (args.jobs as f64 / (enqueue_s + drain_s)).round(),
        "redis_cpu_us_per_task_enqueue": (per_task_us(rcpu1 - rcpu0) * 100.0).round() / 100.0,
        "redis_cpu_us_per_task_drain": (per_task_us(rcpu2 - rcpu1) * 100.0).round() / 100.0,
        "process_cpu_us_per_task_enqueue": (per_task_us(cpu1 - cpu0) * 100.0).round() / 100.0,
        "process_cpu_us_per_task_drain": (per_task_us(cpu2 - cpu1) * 100.0).round() / 100.0,
    });

    worker.shutdown(Duration::from_secs(5)).await;

    // The same drain without the worker runtime: two loops claiming a batch and completing
    // it at once.
    if args.raw {
        enqueue_all(&store, &args, &ctx, &key).await;
        let (cpu3, rcpu3) = (process_cpu(), redis_cpu(&mut info).await);
        let began = Instant::now();
        let loops: Vec<_> = (0..2)
            .map(|_| {
                let store = store.clone();
                let limit = args.concurrency;
                tokio::spawn(async move { raw_drain(&store, limit).await })
            })
            .collect();
        let mut drained = 0;
        for l in loops {
            drained += l.await.expect("join");
        }
        assert_eq!(drained, args.jobs, "the raw drain took every task");
        let raw_s = began.elapsed().as_secs_f64();
        let (cpu4, rcpu4) = (process_cpu(), redis_cpu(&mut info).await);
        out["raw_drain_per_s"] = json!((args.jobs as f64 / raw_s).round());
        out["raw_redis_cpu_us_per_task"] =
            json!((per_task_us(rcpu4 - rcpu3) * 100.0).round() / 100.0);
        out["raw_process_cpu_us_per_task"] =
            json!((per_task_us(cpu4 - cpu3) * 100.0).round() / 100.0);
    }

    // Latency at a steady rate, one task per enqueue call, then after idleness.
    if args.latency_rate > 0 {
        let worker = start_worker(&store, &key, args.concurrency, &latencies);
        let total = args.latency_rate * args.latency_secs;
        let every = Duration::from_secs_f64(1.0 / args.latency_rate as f64);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for _ in 0..total {
            tick.tick().await;
            let t = NewTask::new(Probe::NAME, raw(json!(Probe::now())));
            let store = store.clone();
            tokio::spawn(async move { store.enqueue(vec![t]).await });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while (latencies.len() as u64) < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let l = latencies.take_sorted();
        out["latency_rate_per_s"] = json!(args.latency_rate);
        out["latency_samples"] = json!(l.len());
        out["latency_p50_ms"] = json!(percentile(&l, 0.5));
        out["latency_p99_ms"] = json!(percentile(&l, 0.99));
        if args.idle_secs > 0 {
            let mut idle = Vec::new();
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
                let t = NewTask::new(Probe::NAME, raw(json!(Probe::now())));
                store.enqueue(vec![t]).await.expect("enqueue");
                let deadline = Instant::now() + Duration::from_secs(10);
                while latencies.is_empty() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                idle.extend(latencies.take_sorted());
            }
            idle.sort_unstable();
            out["idle_secs"] = json!(args.idle_secs);
            out["idle_latency_max_ms"] = json!(idle.last().map_or(0.0, |v| *v as f64 / 1000.0));
        }
        worker.shutdown(Duration::from_secs(5)).await;
    }

    store.clear().await.expect("clean up the bench's keys");
    println!("{out}");
}
