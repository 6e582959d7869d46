//! The crash scenario: proof workers killed with -9 while they work lose nothing, and no run
//! ever sees another user; duplicate runs are counted and bounded by what the killed workers
//! held.

use crate::cluster::binary::Backend;
use crate::cluster::http::{Submitter, apis_and_users};
use crate::cluster::proc::{Proc, process_exists};
use crate::cluster::proof_worker::{WorkerSpec, spawn_proof_worker};
use crate::cluster::runs::{records, tally, wait_all_successful};
use errand_core::{SealKey, Store, TaskId};
use futures::StreamExt;
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The size of a crash scenario.
pub struct Crash {
    /// Tasks submitted.
    pub tasks: usize,
    /// Tasks each of the three workers runs at once.
    pub concurrency: usize,
    /// Tasks each worker claims ahead of its running ones. A held task starts while the
    /// results of earlier ones may still be unwritten, so a killed worker can lose up to
    /// `concurrency + prefetch` finished runs: the bound on duplicates.
    pub prefetch: usize,
    /// How long each task sleeps, in ms (drawn at random).
    pub sleep_ms: RangeInclusive<u64>,
    /// How long the tasks may take to leave the queues.
    pub drain_within: Duration,
}

/// What the deployment of a crash scenario is: its store, the key the submitter seals with,
/// how tasks are submitted, and a client of the test's own on the store.
pub struct Deployment<'a> {
    /// The store the proof workers open.
    pub backend: &'a Backend,
    /// The seal key of the submitter (the test's client, or the APIs).
    pub key: &'a SealKey,
    /// How the tasks are submitted.
    pub submitter: Submitter,
    /// The test's own client on the store.
    pub store: Arc<dyn Store>,
    /// Where the logs go.
    pub dir: &'a Path,
}

/// Three proof workers on `deployment`, and `plan.tasks` tasks submitted while, about once a
/// second, a random worker is killed with -9 and a fresh one started in its place, until
/// every task has left the queues. Asserts that every task succeeded, that no run saw another
/// user, and that the duplicate runs are only those of killed workers and no more than they
/// held (`concurrency + prefetch` each); prints what it measured, as `label`.
pub async fn crash_scenario(label: &str, deployment: Deployment<'_>, plan: Crash) {
    let started = Instant::now();
    let Deployment {
        backend,
        key,
        submitter,
        store,
        dir,
    } = deployment;
    let concurrency = plan.concurrency;
    let held = concurrency + plan.prefetch;
    let log = dir.join("runs.log");
    let mut spec = WorkerSpec::new(backend, key, concurrency, &log);
    spec.prefetch = plan.prefetch;

    let mut spawned = 0;
    let mut workers = Vec::new();
    for _ in 0..3 {
        spawned += 1;
        workers.push(spawn_proof_worker(&format!("worker-{spawned}"), &spec, dir).await);
    }
    let mut pids: Vec<u32> = workers.iter().map(Proc::pid).collect();

    // Submit while the workers run (and are being killed).
    let tasks = plan.tasks;
    let sleep_ms = plan.sleep_ms.clone();
    let submitter = tokio::spawn(async move {
        futures::stream::iter(0..tasks)
            .map(|i| {
                let (submitter, sleep_ms) = (submitter.clone(), sleep_ms.clone());
                async move {
                    let sleep_ms = rand::rng().random_range(sleep_ms);
                    submitter
                        .submit(i, sleep_ms)
                        .await
                        .unwrap_or_else(|e| panic!("submission {i} refused: {e}"))
                }
            })
            .buffer_unordered(16)
            .collect::<HashMap<TaskId, String>>()
            .await
    });

    let mut killed = HashSet::new();
    let deadline = Instant::now() + plan.drain_within;
    loop {
        let pause = rand::rng().random_range(800..=1200);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let depth = store.depth().await.expect("depth");
        if submitter.is_finished() && depth.waiting + depth.running == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tasks did not drain in time: {depth:?}"
        );
        let victim = rand::rng().random_range(0..workers.len());
        workers[victim].kill9();
        killed.insert(workers[victim].pid());
        spawned += 1;
        workers[victim] = spawn_proof_worker(&format!("worker-{spawned}"), &spec, dir).await;
        pids.push(workers[victim].pid());
    }
    let submitted = submitter.await.expect("the submitter");
    let drained = started.elapsed();
    let ids: Vec<TaskId> = submitted.keys().copied().collect();
    wait_all_successful(&store, &ids, Duration::from_secs(60)).await;
    let attempts: Vec<u32> = records(&store, &ids)
        .await
        .iter()
        .map(|r| r.attempt)
        .collect();
    let reclaimed = attempts.iter().filter(|a| **a > 1).count();
    let max_attempt = attempts.iter().copied().max().unwrap_or(0);
    drop(workers);
    let survivors: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| process_exists(*p))
        .collect();
    assert!(
        survivors.is_empty(),
        "worker processes survived: {survivors:?}"
    );

    let (runs, _) = tally(&log, &submitted);
    let kills = killed.len();
    let by_killed: usize = runs
        .repeated_by_pid
        .iter()
        .filter(|(pid, _)| killed.contains(pid))
        .map(|(_, n)| n)
        .sum();
    eprintln!(
        "{label}: {tasks} tasks, 3 workers x {concurrency} (+{} ahead), {kills} kills ({spawned} worker \
         processes in all), {} runs finished, {} interrupted, {} duplicates ({by_killed} \
         repeating runs of killed workers, most from one worker {}), bound {}, user \
         mismatches {}, {reclaimed} tasks reclaimed from killed workers (highest attempt \
         {max_attempt}), drained in {:.1}s",
        plan.prefetch,
        runs.done,
        runs.interrupted,
        runs.duplicates,
        runs.repeated_by_pid.values().max().unwrap_or(&0),
        kills * held,
        runs.mismatches,
        drained.as_secs_f64(),
    );
    assert!(
        kills >= 1 && reclaimed >= 1,
        "no worker was killed while it held tasks: the proof proved nothing"
    );
    runs.assert_all_ran_as_their_users();
    assert_eq!(runs.unacknowledged, 0, "runs of tasks nobody submitted");
    assert!(
        runs.duplicates <= kills * held,
        "{} duplicates exceed what {kills} killed workers of {held} slots held",
        runs.duplicates
    );
    assert_eq!(
        by_killed, runs.duplicates,
        "only the runs of killed workers are repeated: {:?} (killed {killed:?})",
        runs.repeated_by_pid
    );
}

/// The crash scenario with two `errand serve` APIs on `backend` taking the tasks over HTTP
/// from 20 users (600 tasks in CI, 2,000 large), each worker holding `prefetch` tasks claimed
/// ahead; asserts the APIs lived through it too.
pub async fn crash_over_http(label: &str, backend: &Backend, dir: &Path, prefetch: usize) {
    let key = SealKey::generate();
    let (mut apis, users) = apis_and_users(2, 20, backend, &key, dir).await;
    let deployment = Deployment {
        backend,
        key: &key,
        submitter: Submitter::http(&apis.iter().collect::<Vec<_>>(), users),
        store: backend.open().await,
        dir,
    };
    let plan = Crash {
        tasks: crate::cluster::sized(600, 2_000),
        concurrency: 4,
        prefetch,
        // Long enough that each kill finds tasks held: 500 tasks drained in 6 s here.
        sleep_ms: 50..=150,
        drain_within: Duration::from_secs(crate::cluster::sized(120, 600)),
    };
    crash_scenario(label, deployment, plan).await;
    for api in &mut apis {
        assert!(
            api.proc.is_running(),
            "{} died:\n{}",
            api.proc.name(),
            api.proc.log_tail()
        );
    }
}
