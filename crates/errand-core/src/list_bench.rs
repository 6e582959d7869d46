//! The listing benchmark (`errand bench --list`): seeds a store with many finished tasks of
//! one user through the store's own enqueue, claim and complete (so every index and counter
//! is built as in production), then times listings and counts, one JSON line per query.
//!
//! It measures and prints; it asserts nothing.

use crate::{
    ClaimRequest, Completion, ListQuery, NewTask, Outcome, Owner, OwnerFilter, StatusUpdate, Store,
    StoreError, TaskState,
};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The task name every seeded task has.
pub const SEED_NAME: &str = "bench-list";
/// Seeded tasks sharing one correlation id (the search finds this many).
pub const PER_CORRELATION: usize = 1000;

/// What to seed and how often to time each query.
#[derive(Debug, Clone)]
pub struct ListBenchOptions {
    /// Finished tasks of the one user.
    pub tasks: usize,
    /// Timed runs per query.
    pub runs: usize,
    /// Tasks per enqueue, claim and complete call while seeding.
    pub batch: usize,
}

impl Default for ListBenchOptions {
    fn default() -> Self {
        Self {
            tasks: 1_000_000,
            runs: 200,
            batch: 1000,
        }
    }
}

/// One query's timings.
#[derive(Debug, Clone, Serialize)]
pub struct ListBenchLine {
    /// Always `errand`.
    pub system: &'static str,
    /// Which store.
    pub store: String,
    /// Tasks in the store (all finished, all of one user).
    pub tasks: usize,
    /// What was timed.
    pub query: String,
    /// How many records (or counted tasks) the answer held.
    pub items: u64,
    /// Median, in ms.
    pub p50_ms: f64,
    /// 99th percentile, in ms.
    pub p99_ms: f64,
    /// Slowest, in ms.
    pub max_ms: f64,
    /// Timed runs.
    pub runs: usize,
}

/// The owner of every seeded task.
pub fn bench_owner() -> Owner {
    Owner::new("bench-user", Some("bench".into()))
}

fn task(i: usize) -> NewTask {
    let mut t = NewTask::new(
        SEED_NAME,
        serde_json::value::to_raw_value(&serde_json::json!({ "i": i }))
            .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned()),
    );
    t.owner = bench_owner();
    t.correlation_id = Some(format!("bench-corr-{}", i / PER_CORRELATION));
    t
}

/// Enqueues `count` tasks of [`bench_owner`] and runs each to success through the store's own
/// claim and complete; returns the time it took.
pub async fn seed(
    store: &Arc<dyn Store>,
    count: usize,
    batch: usize,
) -> Result<Duration, StoreError> {
    let started = Instant::now();
    let batch = batch.max(1);
    let mut made = 0;
    while made < count {
        let n = batch.min(count - made);
        store.enqueue((made..made + n).map(task).collect()).await?;
        made += n;
        let claimed = store
            .claim(&ClaimRequest {
                queues: vec![crate::DEFAULT_QUEUE.into()],
                limit: n,
                lease: Duration::from_secs(600),
                worker_id: "bench-list".into(),
            })
            .await?;
        let done = claimed
            .into_iter()
            .map(|c| Completion {
                lease: c.lease,
                outcome: Outcome::Success(serde_json::value::RawValue::NULL.to_owned()),
                report: StatusUpdate::default(),
            })
            .collect();
        store.complete(done).await?;
    }
    Ok(started.elapsed())
}

/// Times `runs` calls of `call`; the answer's size comes from the last one.
async fn time<F, Fut>(runs: usize, mut call: F) -> Result<(u64, Vec<f64>), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut items = 0;
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        items = call().await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok((items, ms))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

/// Times each listing and count on a store seeded with [`seed`]: a line per query.
pub async fn measure(
    store: &Arc<dyn Store>,
    label: &str,
    options: &ListBenchOptions,
) -> Result<Vec<ListBenchLine>, StoreError> {
    let owner = OwnerFilter::Owner(bench_owner());
    let q = |f: &dyn Fn(&mut ListQuery)| {
        let mut query = ListQuery::owner(owner.clone());
        f(&mut query);
        query
    };
    let queries: Vec<(&str, ListQuery)> = vec![
        ("first page (limit 50)", q(&|_| {})),
        (
            "status=failed limit=1 (none failed)",
            q(&|x| {
                x.status = Some(TaskState::Failed);
                x.limit = 1;
            }),
        ),
        (
            "status=running limit=1 (none running)",
            q(&|x| {
                x.status = Some(TaskState::Running);
                x.limit = 1;
            }),
        ),
        (
            "status=success (limit 50)",
            q(&|x| x.status = Some(TaskState::Success)),
        ),
        (
            "name=bench-list (limit 50)",
            q(&|x| x.name = Some(SEED_NAME.into())),
        ),
        (
            "name=absent limit=1 (no match)",
            q(&|x| {
                x.name = Some("absent".into());
                x.limit = 1;
            }),
        ),
        (
            "queue=default (limit 50)",
            q(&|x| x.queue = Some(crate::DEFAULT_QUEUE.into())),
        ),
        (
            "queue=absent limit=1 (no match)",
            q(&|x| {
                x.queue = Some("absent".into());
                x.limit = 1;
            }),
        ),
        (
            "q=<correlation id of 1000 tasks> (limit 50)",
            q(&|x| x.search = Some("bench-corr-7".into())),
        ),
        (
            "q=<unknown id> limit=1 (no match)",
            q(&|x| {
                x.search = Some("no-such-request".into());
                x.limit = 1;
            }),
        ),
        (
            "status=failed name=bench-list limit=1 (none failed)",
            q(&|x| {
                x.status = Some(TaskState::Failed);
                x.name = Some(SEED_NAME.into());
                x.limit = 1;
            }),
        ),
        (
            "first page, everyone's (admin, limit 50)",
            ListQuery::owner(OwnerFilter::Any),
        ),
    ];
    let mut lines = Vec::new();
    let line = |query: &str, (items, ms): (u64, Vec<f64>)| ListBenchLine {
        system: "errand",
        store: label.to_string(),
        tasks: options.tasks,
        query: query.to_string(),
        items,
        p50_ms: percentile(&ms, 0.5),
        p99_ms: percentile(&ms, 0.99),
        max_ms: percentile(&ms, 1.0),
        runs: ms.len(),
    };
    for (name, query) in &queries {
        let timed = time(options.runs, || async {
            Ok(store.list(query).await?.items.len() as u64)
        })
        .await?;
        lines.push(line(name, timed));
    }
    for (name, who) in [
        ("counts(owner)", owner.clone()),
        ("counts(everyone)", OwnerFilter::Any),
    ] {
        let timed = time(options.runs, || async {
            Ok(store.counts(&who).await?.total())
        })
        .await?;
        lines.push(line(name, timed));
    }
    let timed = time(options.runs, || async {
        Ok(store.queues().await?.len() as u64)
    })
    .await?;
    lines.push(line("queues()", timed));
    Ok(lines)
}
