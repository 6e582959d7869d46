//! The worker restores each task's context for its execution and never leaks it to the next
//! one; keeps it across retries and redeliveries; captures it by value at submission; hands a
//! credential to the task only while it is valid.

mod common;

use common::*;
use errand_core::*;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_less_task_never_sees_the_previous_tasks_context() {
    let s = setup(Arc::new(MemoryStore::new()));
    let mut ids = Vec::new();
    for i in 0..40 {
        let submit = s.client.submit(Observe { sleep_ms: 0 });
        let submit = if i % 2 == 0 {
            submit.context(user(&format!("user-{i}")))
        } else {
            submit.without_context()
        };
        ids.push((i, submit.await.expect("submit").id));
    }
    // One slot: every task runs on the heels of the previous one.
    let worker = s.worker(config(1));
    for (i, id) in &ids {
        let r = finished(&s.store, *id, LONG).await;
        assert_eq!(r.status, TaskState::Success);
        let seen = s.journal.of(*id);
        assert_eq!(seen.len(), 1);
        if i % 2 == 0 {
            let expected = format!("user-{i}");
            assert_eq!(seen[0].current_user.as_deref(), Some(expected.as_str()));
            assert_eq!(seen[0].cx_user.as_deref(), Some(expected.as_str()));
        } else {
            assert_eq!(seen[0].current_user, None, "task {i} saw a leaked context");
            assert_eq!(seen[0].cx_user, None);
            assert_eq!(r.owner, Owner::default());
        }
    }
    worker.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_keep_the_original_context() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(8));
    let mut ids = Vec::new();
    for i in 0..20 {
        let ctx = user(&format!("flaky-{i}"));
        ids.push(
            s.client
                .submit(Flaky { fail_times: 2 })
                .context(ctx)
                .await
                .expect("submit")
                .id,
        );
    }
    for (i, id) in ids.iter().enumerate() {
        let r = finished(&s.store, *id, LONG).await;
        assert_eq!(r.status, TaskState::Success);
        assert_eq!(r.attempt, 3);
        let seen = s.journal.of(*id);
        assert_eq!(
            seen.iter().map(|s| s.attempt).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let expected = format!("flaky-{i}");
        for s in seen {
            assert_eq!(s.current_user.as_deref(), Some(expected.as_str()));
            assert_eq!(s.request_id, Some(format!("req-{expected}")));
        }
    }
    let stats = worker.shutdown(LONG).await;
    assert_eq!((stats.retried, stats.succeeded), (40, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_after_a_lapsed_lease_keeps_the_context() {
    let clock = Arc::new(ManualClock::new());
    let s = setup(Arc::new(MemoryStore::with_clock(clock.clone())));
    let id = s
        .client
        .submit(Observe { sleep_ms: 0 })
        .context(user("carol"))
        .await
        .expect("submit")
        .id;
    // A worker claims it and dies without a word.
    let crashed = s
        .store
        .claim(&ClaimRequest {
            queues: vec![DEFAULT_QUEUE.into()],
            limit: 1,
            lease: Duration::from_secs(30),
            worker_id: "crashed".into(),
        })
        .await
        .expect("claim");
    assert_eq!(crashed.len(), 1);
    let worker = s.worker(WorkerConfig {
        reap_interval: Duration::from_millis(20),
        ..config(4)
    });
    clock.advance(Duration::from_secs(31));
    let r = finished(&s.store, id, LONG).await;
    assert_eq!(r.status, TaskState::Success);
    assert_eq!(r.attempt, 2, "the crashed attempt counts");
    let seen = s.journal.of(id);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].current_user.as_deref(), Some("carol"));
    assert_eq!(seen[0].request_id.as_deref(), Some("req-carol"));
    worker.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_is_captured_by_value_at_submission() {
    let s = setup(Arc::new(MemoryStore::new()));
    // The caller's own mutable state, from which it builds contexts.
    let state = std::sync::Mutex::new(String::from("alice"));
    let ctx = Context::builder()
        .user_id(state.lock().expect("lock").clone())
        .request_id("req-1")
        .build();
    let id = ctx
        .clone()
        .scope(async { s.client.submit(Observe { sleep_ms: 0 }).await })
        .await
        .expect("submit")
        .id;
    // The caller moves on: new state, new context, new scope.
    *state.lock().expect("lock") = "mallory".into();
    let later = ctx
        .to_builder()
        .user_id(state.lock().expect("lock").clone())
        .build();
    let worker = s.worker(config(2));
    later
        .scope(async {
            let r = finished(&s.store, id, LONG).await;
            assert_eq!(r.result.expect("result").get(), r#""alice""#);
        })
        .await;
    assert_eq!(s.journal.of(id)[0].current_user.as_deref(), Some("alice"));
    assert_eq!(ctx.user_id(), Some("alice"), "contexts are immutable");
    worker.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_reach_the_task_only_while_valid() {
    let s = setup(Arc::new(MemoryStore::new()));
    let soon = chrono::Utc::now() + chrono::Duration::hours(1);
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    let valid = user("val")
        .to_builder()
        .credential(Secret::new("abcd"), Some(soon))
        .build();
    let expired = user("exp")
        .to_builder()
        .credential(Secret::new("abcd"), Some(past))
        .build();
    let a = s
        .client
        .submit(UseCredential)
        .context(valid)
        .await
        .expect("submit")
        .id;
    let b = s
        .client
        .submit(UseCredential)
        .context(expired)
        .await
        .expect("submit")
        .id;
    let worker = s.worker(config(2));
    let ra = finished(&s.store, a, LONG).await;
    assert_eq!(ra.result.expect("result").get(), r#""credential:4""#);
    let rb = finished(&s.store, b, LONG).await;
    assert_eq!(
        rb.status,
        TaskState::Success,
        "the task runs, without the credential"
    );
    assert!(
        rb.result
            .expect("result")
            .get()
            .contains("refused:the credential expired")
    );
    worker.shutdown(LONG).await;
}
