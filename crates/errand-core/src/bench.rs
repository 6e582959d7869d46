//! Benchmarks every store runs the same way, so their figures line up with each other and
//! with the peers' (`shared/bench-peers`): `errand bench` and each crate's `cargo bench` call
//! [`run`]; [`manager_overhead`] measures the in-process [`Manager`](crate::Manager).
//!
//! They measure and print; they assert nothing.

use crate::cpu_meter::{CpuMeter, machine_busy, process_cpu};
use crate::{
    Client, Context, Manager, ManagerConfig, Registry, SealKey, Store, StoreError, SubmitError,
    Task, TaskCx, TaskError, Worker, WorkerConfig,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Tasks enqueued and drained.
    pub jobs: usize,
    /// Worker concurrency.
    pub concurrency: usize,
    /// Tasks per enqueue call.
    pub enqueue_batch: usize,
    /// Enqueue calls in flight at once.
    pub enqueue_parallelism: usize,
    /// Offered rate (tasks/s) of the latency phase.
    pub latency_rate: u32,
    /// Tasks submitted in the latency phase.
    pub latency_tasks: usize,
    /// Idle time before a single probe task measures the wake-up latency; `None` skips it.
    pub idle_probe: Option<Duration>,
    /// Worker settings other than concurrency (queues, lease, poll interval, prefetch).
    pub worker: WorkerConfig,
    /// Reads the store server's CPU time, for the per-task CPU figures; `None` leaves them out
    /// (an embedded store's CPU is the worker's own).
    pub store_cpu: Option<Arc<dyn CpuMeter>>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            jobs: 20_000,
            concurrency: 64,
            enqueue_batch: 1000,
            enqueue_parallelism: 4,
            latency_rate: 1000,
            latency_tasks: 3000,
            idle_probe: None,
            worker: WorkerConfig::default(),
            store_cpu: None,
        }
    }
}

/// One store's figures; field names match the peers' benchmarks where they overlap.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Always `errand`.
    pub system: &'static str,
    /// Which store.
    pub store: String,
    /// Tasks enqueued and drained.
    pub jobs: usize,
    /// Worker concurrency.
    pub concurrency: usize,
    /// Tasks the worker claimed ahead of the running ones ([`WorkerConfig::prefetch`]).
    pub prefetch: usize,
    /// Tasks enqueued per second (batches of `enqueue_batch`, each with a sealed context).
    pub enqueue_per_s: f64,
    /// No-op tasks claimed, run and completed per second from a full queue.
    pub drain_per_s: f64,
    /// Jobs over enqueue time plus drain time.
    pub end_to_end_per_s: f64,
    /// Median enqueue-to-start latency at `latency_rate_per_s`, in ms.
    pub latency_p50_ms: f64,
    /// 99th percentile of the same, in ms.
    pub latency_p99_ms: f64,
    /// Worst of the same, in ms.
    pub latency_max_ms: f64,
    /// The offered rate of the latency phase.
    pub latency_rate_per_s: u32,
    /// Enqueue-to-start latency of one task after `idle_s` seconds of idleness, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_latency_ms: Option<f64>,
    /// The idle time before that probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_s: Option<f64>,
    /// CPU time of this process (the worker, and an embedded store) per drained task, in µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_cpu_us_per_task: Option<f64>,
    /// CPU time of the store's server per drained task, in µs (see `store_cpu_source`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_cpu_us_per_task: Option<f64>,
    /// CPU time of the store's server per enqueued task, in µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enqueue_store_cpu_us_per_task: Option<f64>,
    /// Where the store's CPU time was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_cpu_source: Option<String>,
    /// Busy CPU time of the whole machine per drained task, in µs: the worker, the store and
    /// anything else running (on a quiet machine, about the sum of the two above).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_cpu_us_per_task: Option<f64>,
}

/// A benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Submitting failed.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The drain made no progress for a long time.
    #[error("the drain stalled: {done} of {jobs} tasks done after {waited:?} without progress")]
    Stalled {
        /// Tasks done.
        done: u64,
        /// Tasks expected.
        jobs: u64,
        /// Time without progress.
        waited: Duration,
    },
}

/// The benchmark's no-op task.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Noop {
    /// Its number.
    pub i: u64,
}

impl Task for Noop {
    const NAME: &'static str = "errand.bench.noop";
    type Output = ();
    async fn run(self, _cx: TaskCx) -> Result<(), TaskError> {
        Ok(())
    }
}

/// Records, in the worker's [`StartLatencies`] resource, how long after its submission it
/// started.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Probe {
    /// Submission time, microseconds since the Unix epoch.
    pub submitted_us: u64,
}

impl Probe {
    /// A probe submitted now.
    pub fn now() -> Self {
        Self {
            submitted_us: now_us(),
        }
    }
}

/// Enqueue-to-start latencies recorded by [`Probe`] tasks, in microseconds. Give the worker
/// one with [`Worker::resource`](crate::Worker::resource).
#[derive(Debug, Default)]
pub struct StartLatencies(Mutex<Vec<u64>>);

impl StartLatencies {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many probes have started.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no probe has started.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Takes the recorded latencies, sorted.
    pub fn take_sorted(&self) -> Vec<u64> {
        let mut all = std::mem::take(&mut *self.lock());
        all.sort_unstable();
        all
    }
}

impl Task for Probe {
    const NAME: &'static str = "errand.bench.probe";
    type Output = ();
    async fn run(self, cx: TaskCx) -> Result<(), TaskError> {
        let waited = now_us().saturating_sub(self.submitted_us);
        cx.resource::<StartLatencies>()?.lock().push(waited);
        Ok(())
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn per_s(n: usize, d: Duration) -> f64 {
    (n as f64 / d.as_secs_f64().max(1e-9)).round()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Enqueues `jobs` no-op tasks, drains them with one worker, then measures enqueue-to-start
/// latency at a steady rate (and optionally after idleness). The store should be empty.
pub async fn run(
    store: Arc<dyn Store>,
    label: &str,
    opts: &BenchOptions,
) -> Result<BenchReport, BenchError> {
    let key = SealKey::generate();
    let client = Client::new(store.clone(), key.clone());
    let mut registry = Registry::new();
    registry
        .register::<Noop>()
        .and_then(|r| r.register::<Probe>())
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let latencies = Arc::new(StartLatencies::default());

    // 1. Enqueue, each task with a context (sealed credential included), as a service would.
    let store_before = store_cpu(opts).await;
    let began = Instant::now();
    let batches: Vec<(usize, usize)> = (0..opts.jobs)
        .step_by(opts.enqueue_batch.max(1))
        .map(|start| (start, (start + opts.enqueue_batch.max(1)).min(opts.jobs)))
        .collect();
    let mut in_flight = tokio::task::JoinSet::new();
    for (start, end) in batches {
        if in_flight.len() >= opts.enqueue_parallelism.max(1)
            && let Some(r) = in_flight.join_next().await
        {
            r.map_err(|e| StoreError::Backend(e.to_string()))??;
        }
        let client = client.clone();
        let ctx = Context::builder()
            .user_id(format!("bench-user-{}", start % 97))
            .tenant("bench")
            .request_id(format!("bench-{start}"))
            .credential(crate::Secret::new("bench-token"), None)
            .build();
        in_flight.spawn(ctx.scope(async move {
            client
                .submit_batch((start..end).map(|i| Noop { i: i as u64 }))
                .await
                .map(|_| ())
        }));
    }
    while let Some(r) = in_flight.join_next().await {
        r.map_err(|e| StoreError::Backend(e.to_string()))??;
    }
    let enqueue_time = began.elapsed();
    let enqueue_store = spent(store_before, store_cpu(opts).await);

    // 2. Drain.
    let mut config = opts.worker.clone();
    config.concurrency = opts.concurrency.max(1);
    config.claim_batch = config.concurrency + config.prefetch;
    let cpu_before = (process_cpu(), store_cpu(opts).await, machine_busy());
    let drain_began = Instant::now();
    let worker = Worker::new(store.clone(), Arc::new(registry), key)
        .config(config)
        .resource(latencies.clone())
        .start();
    let target = opts.jobs as u64;
    wait_for(&worker, target).await?;
    let drain_time = drain_began.elapsed();
    let (worker_cpu, store_drain, machine_cpu) = (
        spent(cpu_before.0, process_cpu()),
        spent(cpu_before.1, store_cpu(opts).await),
        spent(cpu_before.2, machine_busy()),
    );
    let per_task = |cpu: Option<Duration>| {
        cpu.map(|d| (d.as_secs_f64() * 1e7 / opts.jobs.max(1) as f64).round() / 10.0)
    };

    // 3. Latency at a steady offered rate.
    let interval = Duration::from_secs_f64(1.0 / f64::from(opts.latency_rate.max(1)));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..opts.latency_tasks {
        tick.tick().await;
        client.submit(Probe::now()).await?;
    }
    let expected = target + opts.latency_tasks as u64;
    wait_for(&worker, expected).await?;
    let sorted = latencies.take_sorted();

    // 4. Wake-up after idleness.
    let idle_latency_ms = match opts.idle_probe {
        Some(idle) => {
            tokio::time::sleep(idle).await;
            client.submit(Probe::now()).await?;
            wait_for(&worker, expected + 1).await?;
            latencies.take_sorted().pop().map(|us| us as f64 / 1000.0)
        }
        None => None,
    };
    worker.shutdown(Duration::from_secs(5)).await;

    Ok(BenchReport {
        system: "errand",
        store: label.to_string(),
        jobs: opts.jobs,
        concurrency: opts.concurrency,
        prefetch: opts.worker.prefetch,
        enqueue_per_s: per_s(opts.jobs, enqueue_time),
        drain_per_s: per_s(opts.jobs, drain_time),
        end_to_end_per_s: per_s(opts.jobs, enqueue_time + drain_time),
        latency_p50_ms: percentile(&sorted, 0.50),
        latency_p99_ms: percentile(&sorted, 0.99),
        latency_max_ms: sorted.last().map_or(0.0, |v| *v as f64 / 1000.0),
        latency_rate_per_s: opts.latency_rate,
        idle_latency_ms,
        idle_s: opts.idle_probe.map(|d| d.as_secs_f64()),
        worker_cpu_us_per_task: per_task(worker_cpu),
        store_cpu_us_per_task: per_task(store_drain),
        enqueue_store_cpu_us_per_task: per_task(enqueue_store),
        store_cpu_source: opts.store_cpu.as_ref().map(|m| m.source()),
        machine_cpu_us_per_task: per_task(machine_cpu),
    })
}

async fn store_cpu(opts: &BenchOptions) -> Option<Duration> {
    match &opts.store_cpu {
        Some(meter) => meter.cpu_time().await,
        None => None,
    }
}

/// The CPU time between two readings, when both were read.
fn spent(before: Option<Duration>, after: Option<Duration>) -> Option<Duration> {
    Some(after?.saturating_sub(before?))
}

/// Waits until the worker has finished `target` tasks; fails when a minute passes without
/// progress (a store that stopped answering, a task that could not run).
async fn wait_for(worker: &crate::WorkerHandle, target: u64) -> Result<(), BenchError> {
    let mut last = (0, Instant::now());
    loop {
        let done = worker.stats().succeeded;
        if done >= target {
            return Ok(());
        }
        if done > last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            return Err(BenchError::Stalled {
                done,
                jobs: target,
                waited: last.1.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// The Manager's cost per task against bare `tokio::spawn`, measured in one run.
#[derive(Debug, Clone, Serialize)]
pub struct ManagerReport {
    /// Always `errand`.
    pub system: &'static str,
    /// What was measured.
    pub bench: &'static str,
    /// Tasks spawned in each variant.
    pub tasks: usize,
    /// Spawn-to-completion per task with the Manager (context, tracking, timeout).
    pub manager_ns_per_task: f64,
    /// The same with bare `tokio::spawn`.
    pub tokio_spawn_ns_per_task: f64,
    /// `manager_ns_per_task / tokio_spawn_ns_per_task`.
    pub ratio: f64,
}

/// Spawns `tasks` no-op tasks through a [`Manager`] (each with a context and a timeout) and
/// through bare `tokio::spawn`, waiting for all of them each time; best of `rounds`.
pub async fn manager_overhead(tasks: usize, rounds: usize) -> ManagerReport {
    let ctx = Context::builder().user_id("bench").tenant("bench").build();
    let mut best_manager = f64::MAX;
    let mut best_tokio = f64::MAX;
    for _ in 0..rounds.max(1) {
        let began = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| tokio::spawn(async { std::hint::black_box(()) }))
            .collect();
        for h in handles {
            let _ = h.await;
        }
        best_tokio = best_tokio.min(began.elapsed().as_nanos() as f64 / tasks as f64);

        let manager = Manager::new(ManagerConfig {
            capacity: tasks + 1,
            ..Default::default()
        });
        let began = Instant::now();
        for _ in 0..tasks {
            let _ = manager
                .task("noop")
                .context(ctx.clone())
                .timeout(Duration::from_secs(60))
                .spawn(async { std::hint::black_box(()) });
        }
        manager.wait_for_all(Duration::from_secs(600)).await;
        best_manager = best_manager.min(began.elapsed().as_nanos() as f64 / tasks as f64);
    }
    ManagerReport {
        system: "errand",
        bench: "manager_overhead",
        tasks,
        manager_ns_per_task: best_manager.round(),
        tokio_spawn_ns_per_task: best_tokio.round(),
        ratio: (best_manager / best_tokio * 100.0).round() / 100.0,
    }
}

/// What sealing and opening one task's context costs.
#[derive(Debug, Clone, Serialize)]
pub struct SealReport {
    /// Always `errand`.
    pub system: &'static str,
    /// Always `context_seal`.
    pub bench: &'static str,
    /// Contexts sealed and opened.
    pub tasks: usize,
    /// Bytes of one sealed context as stored.
    pub sealed_bytes: usize,
    /// Nanoseconds to seal one (at enqueue), best of the rounds.
    pub seal_ns_per_task: f64,
    /// Nanoseconds to open one (in the worker, before the task runs), best of the rounds.
    pub open_ns_per_task: f64,
}

/// Seals `tasks` contexts like the ones [`run`] submits (user, tenant, request id, a bearer
/// credential), each bound to its own task, then opens them; best of `rounds`, on one thread.
pub fn seal_cost(tasks: usize, rounds: usize) -> SealReport {
    let ring: crate::SealKeyRing = SealKey::generate().into();
    let ctx = Context::builder()
        .user_id("bench-user-7")
        .tenant("bench")
        .request_id("bench-7")
        .correlation_id("bench-7")
        .credential(
            crate::Secret::new("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl"),
            None,
        )
        .build();
    let tasks = tasks.max(1);
    let ids: Vec<crate::TaskId> = (0..tasks).map(|_| crate::TaskId::new()).collect();
    let args: Vec<String> = (0..tasks).map(|i| format!("{{\"i\":{i}}}")).collect();
    let bind = |i: usize| crate::SealBinding::new(ids[i], Noop::NAME, &args[i]);
    let (mut best_seal, mut best_open) = (f64::MAX, f64::MAX);
    let mut sealed = Vec::with_capacity(tasks);
    for _ in 0..rounds.max(1) {
        let began = Instant::now();
        sealed = (0..tasks)
            .filter_map(|i| ctx.seal(&ring, bind(i)).ok())
            .collect();
        best_seal = best_seal.min(began.elapsed().as_nanos() as f64 / tasks as f64);
        let began = Instant::now();
        let opened = sealed
            .iter()
            .enumerate()
            .filter(|(i, s)| s.open(&ring, bind(*i)).is_ok())
            .count();
        std::hint::black_box(opened);
        best_open = best_open.min(began.elapsed().as_nanos() as f64 / tasks as f64);
    }
    SealReport {
        system: "errand",
        bench: "context_seal",
        tasks,
        sealed_bytes: sealed.first().map_or(0, |s| s.as_str().len()),
        seal_ns_per_task: best_seal.round(),
        open_ns_per_task: best_open.round(),
    }
}
