//! Shutdown: finishing tasks drain within the grace; past it, tasks are handed back without
//! spending an attempt, their interrupted steps shown as pending; a store that stays down does
//! not hold the shutdown up for more than a lease.

mod common;

use common::faulty_store::FaultyStore;
use common::*;
use errand_core::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_finishing_tasks() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(8));
    let ids: Vec<TaskId> = s
        .client
        .submit_batch((0..8).map(|n| Held { n }))
        .await
        .expect("submit")
        .into_iter()
        .map(|e| e.id)
        .collect();
    for id in &ids {
        until(&s.store, *id, LONG, |r| r.status == TaskState::Running).await;
    }
    // All eight are held until the shutdown has begun, then let go to finish within it.
    let release = tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        HELD_OPEN.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let stats = worker.shutdown(LONG).await;
    release.await.expect("the release runs");
    assert_eq!(stats.status, WorkerStatus::Completed);
    assert_eq!(
        (stats.running_at_shutdown, stats.succeeded, stats.released),
        (8, 8, 0)
    );
    for id in ids {
        assert_eq!(
            s.store.get(id).await.expect("get").expect("rec").status,
            TaskState::Success
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_past_the_drain_hands_tasks_back_without_spending_attempts() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(3));
    let ids: Vec<TaskId> = s
        .client
        .submit_batch((0..5).map(|_| Sleepy {
            ms: 3_600_000,
            cooperative: false,
        }))
        .await
        .expect("submit")
        .into_iter()
        .map(|e| e.id)
        .collect();
    until(&s.store, ids[2], LONG, |r| r.status == TaskState::Running).await;
    let stats = worker.shutdown(Duration::from_millis(100)).await;
    assert_eq!(stats.status, WorkerStatus::Timeout);
    assert_eq!((stats.running_at_shutdown, stats.released), (3, 3));
    for id in &ids {
        let r = s.store.get(*id).await.expect("get").expect("rec");
        assert_eq!((r.status, r.attempt), (TaskState::Pending, 0), "{id}");
    }
    // A fresh worker picks them up as first attempts.
    let next = s.worker(config(5));
    until(&s.store, ids[4], LONG, |r| r.status == TaskState::Running).await;
    for id in &ids {
        let r = until(&s.store, *id, LONG, |r| r.status == TaskState::Running).await;
        assert_eq!(r.attempt, 1);
    }
    next.shutdown(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_returning_as_shutdown_stops_it_is_handed_back_not_failed() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(1));
    let id = s
        .client
        .submit(SpinUntilCancelled)
        .await
        .expect("submit")
        .id;
    until(&s.store, id, LONG, |r| r.status == TaskState::Running).await;
    // The shutdown's cancel fires on another thread while the task spins inside its poll; the
    // task then returns an error in that same poll.
    let stats = worker.shutdown(Duration::from_millis(50)).await;
    assert_eq!((stats.released, stats.retried, stats.failed), (1, 0, 0));
    let r = s.store.get(id).await.expect("get").expect("rec");
    assert_eq!(
        (r.status, r.attempt),
        (TaskState::Pending, 0),
        "no attempt spent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_back_task_shows_its_interrupted_step_as_pending() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(1));
    let id = s
        .client
        .submit(SlowStep { ms: 3_600_000 })
        .await
        .expect("submit")
        .id;
    until(&s.store, id, LONG, |r| {
        r.steps
            .first()
            .is_some_and(|s| s.status == StepStatus::Running)
    })
    .await;
    let stats = worker.shutdown(Duration::from_millis(20)).await;
    assert_eq!(stats.released, 1);
    let r = s.store.get(id).await.expect("get").expect("rec");
    assert_eq!(r.status, TaskState::Pending);
    let steps: Vec<_> = r
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert_eq!(
        steps,
        [("a", StepStatus::Pending), ("b", StepStatus::Pending)]
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_the_store_down_gives_up_after_a_lease() {
    let faulty = Arc::new(FaultyStore {
        inner: MemoryStore::with_clock(Arc::new(TokioClock::new())),
        ..Default::default()
    });
    let s = setup(faulty.clone());
    let worker = s.worker(WorkerConfig {
        lease: Duration::from_millis(500),
        ..config(2)
    });
    let id = s
        .client
        .submit(Sleepy {
            ms: 200,
            cooperative: false,
        })
        .await
        .expect("submit")
        .id;
    until(&s.store, id, LONG, |r| r.status == TaskState::Running).await;
    // The store goes away while the task runs; its result cannot be written.
    faulty.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stats = tokio::time::timeout(Duration::from_secs(10), worker.shutdown(LONG))
        .await
        .expect("shutdown returns even though the store never comes back");
    assert_eq!(stats.succeeded, 1);
}
