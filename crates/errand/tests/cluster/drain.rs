//! The drain scenario: SIGTERM drains a proof worker; its running tasks finish or go back to
//! the queue without spending an attempt, and it exits 0 printing its stats.

use crate::cluster::binary::Backend;
use crate::cluster::proof_worker::{Record, WorkerSpec, printed_stats, spawn_proof_worker};
use crate::cluster::runs::{RunEnd, records, tally, wait_all_successful};
use crate::cluster::{sized, wait_until};
use errand_core::{Client, SealKey, TaskId, TaskState};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// A proof worker of 4 slots on `backend`, holding `prefetch` more tasks claimed ahead, runs
/// tasks of 1.5 to 3 s, each allowed one attempt; it gets SIGTERM once all its slots are busy
/// and it holds all it may, with a 2 s drain. Asserts that it exits 0, that what it did not
/// finish waits again with its attempt given back (a second worker then runs it, on its first
/// attempt), that none of the held tasks started in the drain, and that its stats say so;
/// prints what it measured, as `label`.
pub async fn drain_scenario(label: &str, backend: &Backend, dir: &Path, prefetch: usize) {
    let started = Instant::now();
    let concurrency = 4;
    let held = concurrency + prefetch;
    let log = dir.join("runs.log");
    let key = SealKey::generate();
    let mut spec = WorkerSpec::new(backend, &key, concurrency, &log);
    spec.drain_ms = 2_000;
    spec.prefetch = prefetch;
    let spec_second = WorkerSpec {
        prefetch: 0,
        ..spec.clone()
    };
    let store = backend.open().await;
    let client = Client::new(store.clone(), key);
    let mut first = spawn_proof_worker("worker-1", &spec, dir).await;

    // Tasks of 1.5 to 3 s, each allowed one attempt only: a handed-back task that spent its
    // attempt could never run again.
    // The first four run at once: none may end before the SIGTERM (a held task would start in
    // its slot), the 1.5 s ones end within the 2 s drain, the 3 s ones outlast it.
    let sleeps = [1_500, 3_000, 1_500, 3_000, 2_000, 1_500, 2_500, 2_000].repeat(sized(2, 4));
    let mut submitted = HashMap::new();
    for (i, sleep_ms) in sleeps.iter().enumerate() {
        let user = format!("user-{i}");
        let enqueued = client
            .submit(Record::new(&user, *sleep_ms))
            .context(Record::context(&user))
            .max_attempts(1)
            .await
            .expect("submit");
        submitted.insert(enqueued.id, user);
    }
    let ids: Vec<TaskId> = submitted.keys().copied().collect();
    wait_until(
        "the worker to run a full set of tasks",
        Duration::from_secs(30),
        || async {
            let depth = store.depth().await.expect("depth");
            (depth.running as usize == held).then_some(())
        },
    )
    .await;

    first.terminate();
    let status = first.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "the worker exited {status}:\n{}",
        first.log_tail()
    );
    let stats = printed_stats(&first).expect("the worker printed its stats");
    // Nothing is left running: each task finished, or waits again with its attempt given back.
    for record in records(&store, &ids).await {
        match record.status {
            TaskState::Success => assert_eq!(record.attempt, 1),
            TaskState::Pending => assert_eq!(record.attempt, 0, "{record:?}"),
            other => panic!("task {} is {other} after the worker stopped", record.id),
        }
    }

    let mut second = spawn_proof_worker("worker-2", &spec_second, dir).await;
    wait_all_successful(&store, &ids, Duration::from_secs(60)).await;
    second.terminate();
    let status = second.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "the second worker exited {status}");

    let (runs, lines) = tally(&log, &submitted);
    let handed_back = lines
        .iter()
        .filter(|l| l.end == RunEnd::Interrupted && l.pid == first.pid())
        .count();
    let finished_first = lines
        .iter()
        .filter(|l| l.end == RunEnd::Done && l.pid == first.pid())
        .count();
    let started_first = lines.iter().filter(|l| l.pid == first.pid()).count();
    eprintln!(
        "{label}: {} tasks, {} running at SIGTERM, {finished_first} finished by the stopping \
         worker, {handed_back} handed back and run again by the next, stats {stats:?}, {:.1}s",
        ids.len(),
        stats.running_at_shutdown,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(stats.status, "timeout", "some tasks outlast the drain");
    assert_eq!(stats.running_at_shutdown as usize, held);
    assert_eq!(
        stats.claimed as usize, held,
        "tasks handed back were claimed again"
    );
    assert!(stats.released >= 1, "no task was handed back: {stats:?}");
    // The held tasks went back unstarted: the stopping worker ran only its first `concurrency`.
    assert_eq!(started_first, concurrency, "{lines:?}");
    assert_eq!(stats.released as usize, handed_back + prefetch);
    assert_eq!(stats.succeeded as usize, finished_first);
    assert_eq!(stats.claimed, stats.succeeded + stats.released);
    assert_eq!((stats.failed, stats.retried, stats.lost), (0, 0, 0));
    runs.assert_all_ran_as_their_users();
    assert_eq!(runs.duplicates, 0, "a task finished twice");
    assert!(
        lines.iter().all(|l| l.attempt == 1),
        "an attempt was spent: {lines:?}"
    );
    for record in records(&store, &ids).await {
        assert_eq!(record.attempt, 1, "{record:?}");
    }
}
