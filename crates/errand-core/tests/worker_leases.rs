//! Leases and fencing: a worker that lost its lease writes nothing, a finished attempt keeps
//! its lease until its result is written, and a worker that reclaims its own lapsed task stops
//! the older attempt.

mod common;

use common::faulty_store::FaultyStore;
use common::*;
use errand_core::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lost_its_lease_cannot_complete() {
    let clock = Arc::new(ManualClock::new());
    let s = setup(Arc::new(MemoryStore::with_clock(clock.clone())));
    let worker = s.worker(WorkerConfig {
        lease: Duration::from_millis(300),
        maintenance: false,
        ..config(1)
    });
    let id = s
        .client
        .submit(Sleepy {
            ms: 3_600_000,
            cooperative: true,
        })
        .await
        .expect("submit")
        .id;
    until(&s.store, id, LONG, |r| r.status == TaskState::Running).await;
    // The worker stalls past its lease; another worker takes the task over.
    clock.advance(Duration::from_secs(60));
    assert_eq!(s.store.reap().await.expect("reap").requeued, 1);
    let takeover = s
        .store
        .claim(&ClaimRequest {
            queues: vec![DEFAULT_QUEUE.into()],
            limit: 1,
            lease: Duration::from_secs(600),
            worker_id: "takeover".into(),
        })
        .await
        .expect("claim");
    assert_eq!(takeover[0].attempt, 2);
    // The first worker learns at its next heartbeat, stops the task and writes nothing.
    let deadline = std::time::Instant::now() + LONG;
    while worker.stats().lost == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "lease loss not noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = s.store.get(id).await.expect("get").expect("rec");
    assert_eq!((r.status, r.attempt), (TaskState::Running, 2));
    let done = s
        .store
        .complete(vec![Completion {
            lease: takeover[0].lease,
            outcome: Outcome::Success(serde_json::value::to_raw_value(&"takeover").expect("json")),
            report: StatusUpdate::default(),
        }])
        .await
        .expect("complete");
    assert_eq!(done, [CompleteResult::Applied]);
    let stats = worker.shutdown(LONG).await;
    assert_eq!((stats.lost, stats.succeeded, stats.failed), (1, 0, 0));
    let r = s.store.get(id).await.expect("get").expect("rec");
    assert_eq!(r.result.expect("result").get(), r#""takeover""#);
}

#[tokio::test(start_paused = true)]
async fn a_finished_attempt_keeps_its_lease_until_its_result_is_written() {
    // Every result takes three leases to write (a slow or briefly unreachable store); the
    // worker's own reaper runs often. No task may run twice. Time is tokio's, paused.
    let slow = Arc::new(FaultyStore {
        inner: MemoryStore::with_clock(Arc::new(TokioClock::new())),
        complete_delay: Duration::from_millis(900),
        ..Default::default()
    });
    let s = setup(slow);
    let worker = s.worker(WorkerConfig {
        lease: Duration::from_millis(300),
        reap_interval: Duration::from_millis(50),
        ..config(2)
    });
    let ids: Vec<TaskId> = s
        .client
        .submit_batch((0..6).map(|_| Observe { sleep_ms: 0 }))
        .await
        .expect("submit")
        .into_iter()
        .map(|e| e.id)
        .collect();
    for id in &ids {
        let r = finished(&s.store, *id, LONG).await;
        assert_eq!((r.status, r.attempt), (TaskState::Success, 1), "{id}");
        assert_eq!(s.journal.of(*id).len(), 1, "task {id} ran more than once");
    }
    let stats = worker.shutdown(LONG).await;
    assert_eq!((stats.claimed, stats.succeeded), (6, 6));
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_reclaims_its_own_lapsed_task_stops_the_older_attempt() {
    let faulty = Arc::new(FaultyStore {
        inner: MemoryStore::with_clock(Arc::new(TokioClock::new())),
        ..Default::default()
    });
    let s = setup(faulty.clone());
    faulty.heartbeats_stalled.store(true, Ordering::SeqCst);
    let worker = s.worker(WorkerConfig {
        lease: Duration::from_millis(600),
        reap_interval: Duration::from_millis(50),
        ..config(2)
    });
    let id = s
        .client
        .submit(Sleepy {
            ms: 1_500,
            cooperative: true,
        })
        .await
        .expect("submit")
        .id;
    // The stalled heartbeat lets the lease lapse; this same worker's reaper requeues the task
    // and its claim loop takes it again while the first attempt still runs.
    until(&s.store, id, LONG, |r| r.attempt == 2).await;
    faulty.heartbeats_stalled.store(false, Ordering::SeqCst);
    let r = finished(&s.store, id, LONG).await;
    assert_eq!((r.status, r.attempt), (TaskState::Success, 2));
    let stats = tokio::time::timeout(Duration::from_secs(10), worker.shutdown(LONG))
        .await
        .expect("no untracked attempt keeps the worker from stopping");
    assert_eq!(
        (stats.succeeded, stats.lost),
        (1, 1),
        "the first attempt was stopped, not finished"
    );
}
