//! The restart scenario: the store's server stopped at once (Redis killed with -9, PostgreSQL
//! stopped in immediate mode) and started again mid-run loses no acknowledged enqueue, and
//! every process resumes by itself.

use crate::cluster::binary::Backend;
use crate::cluster::http::Submitter;
use crate::cluster::postgres::TestPostgres;
use crate::cluster::proc::Proc;
use crate::cluster::proof_worker::{WorkerSpec, spawn_proof_worker};
use crate::cluster::redis::TestRedis;
use crate::cluster::runs::{Runs, record, tally, wait_all_successful};
use crate::cluster::wait_until;
use errand_core::{SealKey, Store, TaskId};
use rand::Rng;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the server stays down at least: longer than the workers' 2 s lease.
pub const OUTAGE: Duration = Duration::from_secs(3);

/// Proof worker processes of the restart scenario, and tasks each runs at once.
pub const RESTART_WORKERS: usize = 2;
/// Tasks each worker of the restart scenario runs at once.
pub const RESTART_CONCURRENCY: usize = 4;

/// Submissions running at once: several, so that refusals (which may each wait out a
/// connection timeout) are seen soon after the server goes down.
const ENQUEUERS: usize = 4;

/// The store's server of a restart scenario, a test's own.
pub enum Server<'a> {
    /// Killed with -9, started again on its append-only file.
    Redis(&'a mut TestRedis),
    /// Stopped with `pg_ctl -m immediate` (no shutdown checkpoint: crash recovery at the next
    /// start), started again on its data directory.
    Postgres(&'a mut TestPostgres),
}

impl Server<'_> {
    async fn stop(&mut self) {
        match self {
            Server::Redis(redis) => redis.kill9(),
            Server::Postgres(postgres) => postgres.stop_immediate().await,
        }
    }

    async fn start(&mut self) {
        match self {
            Server::Redis(redis) => redis.restart().await,
            Server::Postgres(postgres) => postgres.start().await,
        }
    }
}

/// The deployment of a restart scenario.
pub struct Restart<'a> {
    /// The store the proof workers open.
    pub backend: &'a Backend,
    /// The submitter's seal key.
    pub key: &'a SealKey,
    /// How tasks are submitted.
    pub submitter: Submitter,
    /// The test's own client on the store, failing fast while the server is down.
    pub store: Arc<dyn Store>,
    /// Other processes of the deployment (the APIs) that must live through it too.
    pub others: Vec<Proc>,
    /// Where the logs go.
    pub dir: &'a Path,
}

/// What a run of the restart scenario measured.
pub struct Restarted {
    /// Acknowledged enqueues.
    pub acknowledged: usize,
    /// Enqueues refused while the server was down.
    pub refused: u64,
    /// When the server was stopped and when it answered again, in seconds from the start.
    pub outages: Vec<(f64, f64)>,
    /// What the results log says.
    pub runs: Runs,
    /// The whole scenario.
    pub took: Duration,
}

/// Two proof workers; enqueues without pause while `server` is stopped at once `rounds`
/// times, kept down for at least [`OUTAGE`] and started again, `per_phase` acknowledged
/// enqueues apart. Asserts that no acknowledged enqueue was lost, that every acknowledged task
/// succeeded with its submitter's user, and that the same processes did it all, none dead.
pub async fn restart_scenario(
    mut server: Server<'_>,
    deployment: Restart<'_>,
    rounds: usize,
    per_phase: usize,
) -> Restarted {
    let started = Instant::now();
    let Restart {
        backend,
        key,
        submitter,
        store,
        mut others,
        dir,
    } = deployment;
    let log = dir.join("runs.log");
    let spec = WorkerSpec::new(backend, key, RESTART_CONCURRENCY, &log);
    let mut workers = Vec::new();
    for n in 1..=RESTART_WORKERS {
        workers.push(spawn_proof_worker(&format!("worker-{n}"), &spec, dir).await);
    }
    let pids: Vec<u32> = workers.iter().map(Proc::pid).collect();

    // Enqueue without pause for the whole run; keep the id (and time) of every acknowledged
    // enqueue.
    let acked = Arc::new(Mutex::new(HashMap::<TaskId, (String, Instant)>::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let enqueuers: Vec<_> = (0..ENQUEUERS)
        .map(|lane| {
            let submitter = submitter.clone();
            let (acked, refused, stop) = (acked.clone(), refused.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = lane;
                while !stop.load(Ordering::Relaxed) {
                    let sleep_ms = rand::rng().random_range(10..=50);
                    match submitter.submit(i, sleep_ms).await {
                        Ok((id, user)) => {
                            acked
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(id, (user, Instant::now()));
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    i += ENQUEUERS;
                }
            })
        })
        .collect();
    let acked_count = || acked.lock().unwrap_or_else(|p| p.into_inner()).len();

    let mut outages = Vec::new();
    for round in 0..rounds {
        let target = acked_count() + per_phase;
        wait_until(
            &format!("{per_phase} acknowledged enqueues (round {round})"),
            Duration::from_secs(60),
            || async { (acked_count() >= target).then_some(()) },
        )
        .await;
        let refused_before = refused.load(Ordering::Relaxed);
        let down = Instant::now();
        server.stop().await;
        // Down longer than a lease, so the running tasks' leases lapse too, and until the
        // enqueuers have felt it.
        wait_until(
            "enqueues to be refused while the server is down",
            Duration::from_secs(60),
            || async {
                (refused.load(Ordering::Relaxed) >= refused_before + 3 && down.elapsed() >= OUTAGE)
                    .then_some(())
            },
        )
        .await;
        server.start().await;
        let seconds = |d: Duration| (d.as_secs_f64() * 100.0).round() / 100.0;
        outages.push((
            seconds(down.duration_since(started)),
            seconds(started.elapsed()),
        ));
    }
    let target = acked_count() + per_phase;
    wait_until(
        "acknowledged enqueues after the last restart",
        Duration::from_secs(60),
        || async { (acked_count() >= target).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for enqueuer in enqueuers {
        enqueuer.await.expect("an enqueuer");
    }
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let ids: Vec<TaskId> = acked.keys().copied().collect();
    // Every acknowledged task is still known: say when the lost ones were acknowledged.
    let mut lost = Vec::new();
    for (id, (_, at)) in &acked {
        if record(&store, *id).await.is_none() {
            lost.push(at.duration_since(started).as_secs_f64());
        }
    }
    lost.sort_by(f64::total_cmp);
    assert!(
        lost.is_empty(),
        "{} acknowledged enqueues were lost, acknowledged at {lost:?} s; the server was down \
         (stopped, back) at {outages:?} s",
        lost.len()
    );
    wait_all_successful(&store, &ids, Duration::from_secs(120)).await;

    // The same processes did all of it: none was restarted, none died.
    for proc in workers.iter_mut().chain(others.iter_mut()) {
        assert!(
            proc.is_running(),
            "{} died:\n{}",
            proc.name(),
            proc.log_tail()
        );
    }
    assert_eq!(workers.iter().map(Proc::pid).collect::<Vec<_>>(), pids);
    let submitted: HashMap<TaskId, String> = acked
        .into_iter()
        .map(|(id, (user, _))| (id, user))
        .collect();
    let (runs, _) = tally(&log, &submitted);
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "no enqueue was refused: the server was never down"
    );
    runs.assert_all_ran_as_their_users();
    for mut proc in workers.into_iter().chain(others) {
        proc.terminate();
        let status = proc.wait_exit(Duration::from_secs(30)).await;
        assert!(status.success(), "{} exited {status}", proc.name());
    }
    // An outage longer than the lease can make the tasks held at that moment run again, and
    // nothing else: finished attempts keep their lease until their result is written.
    let held = RESTART_WORKERS * RESTART_CONCURRENCY;
    assert!(
        runs.duplicates <= rounds * held,
        "{} duplicate runs exceed the {held} tasks held at each of {rounds} outages",
        runs.duplicates
    );
    Restarted {
        acknowledged: ids.len(),
        refused: refused.load(Ordering::Relaxed),
        outages,
        runs,
        took: started.elapsed(),
    }
}

impl Restarted {
    /// One line of what was measured, for `label`.
    pub fn summary(&self, label: &str) -> String {
        format!(
            "{label}: {} acknowledged enqueues, {} refused while the server was down, {} \
             stops and restarts (stopped, back at {:?} s), {} runs finished ({} duplicates; \
             the workers held at most {} tasks when the server went down; {} of tasks whose \
             enqueue was not acknowledged), user mismatches {}, {:.1}s",
            self.acknowledged,
            self.refused,
            self.outages.len(),
            self.outages,
            self.runs.done,
            self.runs.duplicates,
            RESTART_WORKERS * RESTART_CONCURRENCY,
            self.runs.unacknowledged,
            self.runs.mismatches,
            self.took.as_secs_f64()
        )
    }
}
