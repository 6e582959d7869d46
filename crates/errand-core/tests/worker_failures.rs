//! How an attempt fails and what the worker does then: timeouts retried by policy, panics
//! inside and outside the run, unknown tasks and bad arguments, a result the store refuses.

mod common;

use common::faulty_store::FaultyStore;
use common::*;
use errand_core::*;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn timeouts_fail_the_attempt_and_retry_by_policy() {
    let s = setup(Arc::new(MemoryStore::with_clock(Arc::new(
        TokioClock::new(),
    ))));
    let worker = s.worker(config(2));
    let id = s
        .client
        .submit(Sleepy {
            ms: 3_600_000,
            cooperative: false,
        })
        .context(user("tim"))
        .timeout(Duration::from_secs(2))
        .max_attempts(2)
        .await
        .expect("submit")
        .id;
    let r = finished(&s.store, id, Duration::from_secs(7200)).await;
    assert_eq!(r.status, TaskState::Failed);
    assert_eq!(r.attempt, 2, "the first timeout was retried");
    let err = r.error.expect("error");
    assert_eq!(err.kind, "timeout");
    assert!(err.message.contains("timeout"), "{}", err.message);
    let stats = worker.shutdown(LONG).await;
    assert_eq!((stats.timed_out, stats.retried, stats.failed), (2, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_failed_attempt_not_a_dead_worker() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(1));
    let boom = s
        .client
        .submit(PanicOnce)
        .context(user("pat"))
        .await
        .expect("submit")
        .id;
    let after = s
        .client
        .submit(Observe { sleep_ms: 0 })
        .await
        .expect("submit")
        .id;
    let r = finished(&s.store, boom, LONG).await;
    assert_eq!((r.status, r.attempt), (TaskState::Success, 2));
    assert_eq!(
        finished(&s.store, after, LONG).await.status,
        TaskState::Success
    );
    let stats = worker.shutdown(LONG).await;
    assert_eq!(stats.panicked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tasks_and_bad_args_fail_clearly() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(2));
    let raw = |name: &str, args: &str| {
        NewTask::new(
            name,
            serde_json::value::RawValue::from_string(args.into()).expect("json"),
        )
    };
    let out = s
        .store
        .enqueue(vec![
            raw("no_such_task", "{}"),
            raw("observe", r#"{"sleep_ms":"soon"}"#),
        ])
        .await
        .expect("enqueue");
    let unknown = finished(&s.store, out[0].id, LONG).await;
    assert_eq!(unknown.status, TaskState::Failed);
    let err = unknown.error.expect("error");
    assert_eq!((err.kind.as_str(), err.retryable), ("unregistered", false));
    assert!(err.message.contains("no_such_task"), "{}", err.message);
    let bad = finished(&s.store, out[1].id, LONG).await;
    assert_eq!((bad.status, bad.attempt), (TaskState::Failed, 1));
    let err = bad.error.expect("error");
    assert_eq!(err.kind, "invalid_args");
    assert!(
        err.message.contains("invalid type"),
        "serde's message: {}",
        err.message
    );
    worker.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_outside_the_run_fails_the_attempt() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(2));
    // Submitted raw: computing its policy panics in the submitter too.
    let task = NewTask::new(
        "bad_policy",
        serde_json::value::to_raw_value(&serde_json::json!({"items": []})).expect("json"),
    );
    let id = s.store.enqueue(vec![task]).await.expect("enqueue")[0].id;
    let r = finished(&s.store, id, LONG).await;
    assert_eq!(r.status, TaskState::Failed);
    let err = r.error.expect("error");
    assert_eq!((err.kind.as_str(), err.retryable), ("panic", false));
    let stats = worker.shutdown(LONG).await;
    assert_eq!(stats.panicked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_store_refuses_does_not_hold_up_the_others() {
    let faulty = Arc::new(FaultyStore::default());
    let s = setup(faulty.clone());
    let ids: Vec<TaskId> = s
        .client
        .submit_batch((0..5).map(|_| Observe { sleep_ms: 0 }))
        .await
        .expect("submit")
        .into_iter()
        .map(|e| e.id)
        .collect();
    *faulty.refuse_result_of.lock().expect("lock") = Some(ids[2]);
    let worker = s.worker(config(8));
    for (i, id) in ids.iter().enumerate() {
        if i != 2 {
            assert_eq!(
                finished(&s.store, *id, LONG).await.status,
                TaskState::Success
            );
        }
    }
    let refused = s.store.get(ids[2]).await.expect("get").expect("rec");
    assert_eq!(
        refused.status,
        TaskState::Running,
        "left to its lease, which lapses"
    );
    let more = s
        .client
        .submit(Observe { sleep_ms: 0 })
        .await
        .expect("submit")
        .id;
    assert_eq!(
        finished(&s.store, more, LONG).await.status,
        TaskState::Success,
        "still claiming"
    );
    tokio::time::timeout(Duration::from_secs(10), worker.shutdown(LONG))
        .await
        .expect("shutdown returns");
}
