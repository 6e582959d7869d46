//! Cancelling and retrying by hand, and what claims do with cancelled tasks.

use super::{
    C, LEASE, S, actor, args, claim, claim_one, complete, enqueue_one, error, get, open, ring,
    task_for,
};
use crate::{
    CancelOutcome, CompleteResult, LeaseState, NewTask, Outcome, RetryOutcome, TaskId, TaskState,
};
use futures::StreamExt;
use std::time::Duration;

/// Cancelling a waiting task ends it at once.
pub async fn cancel_waiting_task(store: S, clock: C) {
    let key = ring();
    let pending = enqueue_one(&store, task_for("alice", &key)).await;
    let mut delayed = task_for("alice", &key);
    delayed.delay = Some(Duration::from_secs(60));
    let scheduled = enqueue_one(&store, delayed).await;
    for id in [pending.id, scheduled.id] {
        match store.cancel(id, &actor()).await.expect("cancel") {
            CancelOutcome::Cancelled(r) => assert_eq!(r.status, TaskState::Cancelled),
            other => panic!("expected Cancelled, got {other:?}"),
        }
        let r = get(&store, id).await;
        assert_eq!(r.status, TaskState::Cancelled);
        assert!(r.completed_at.is_some());
        assert!(matches!(
            store.cancel(id, &actor()).await.expect("cancel"),
            CancelOutcome::Conflict(TaskState::Cancelled)
        ));
    }
    clock.advance(Duration::from_secs(120));
    assert!(
        claim(&store, 10).await.is_empty(),
        "cancelled tasks never run"
    );
    assert!(matches!(
        store.cancel(TaskId::new(), &actor()).await.expect("cancel"),
        CancelOutcome::NotFound
    ));
}

/// Cancelling a running task signals its worker, and the record ends `cancelled` even if the
/// worker reports a retry.
pub async fn cancel_running_task(store: S, _clock: C) {
    let key = ring();
    let mut cancels = store.cancellations().await.expect("cancellations");
    let a = enqueue_one(&store, task_for("alice", &key)).await;
    let b = enqueue_one(&store, task_for("bob", &key)).await;
    let c = claim(&store, 2).await;
    for id in [a.id, b.id] {
        match store.cancel(id, &actor()).await.expect("cancel") {
            CancelOutcome::Requested(r) => {
                assert_eq!(r.status, TaskState::Running);
                assert!(r.cancel_requested);
            }
            other => panic!("expected Requested, got {other:?}"),
        }
    }
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let id = tokio::time::timeout(Duration::from_secs(5), cancels.next())
            .await
            .expect("cancellation announced within 5 s")
            .expect("stream open");
        heard.push(id);
    }
    heard.sort();
    assert_eq!(heard, [a.id, b.id]);
    let leases = [c[0].lease, c[1].lease];
    assert_eq!(
        store.heartbeat(&leases, LEASE).await.expect("heartbeat"),
        [LeaseState::CancelRequested, LeaseState::CancelRequested]
    );
    assert_eq!(
        complete(&store, c[0].lease, Outcome::Cancelled).await,
        CompleteResult::Applied
    );
    let retry = Outcome::Retry {
        error: error("stopped", true),
        delay: Duration::ZERO,
    };
    assert_eq!(
        complete(&store, c[1].lease, retry).await,
        CompleteResult::Applied
    );
    for id in [a.id, b.id] {
        assert_eq!(get(&store, id).await.status, TaskState::Cancelled);
    }
    assert!(claim(&store, 10).await.is_empty());
}

/// A manual retry requeues a failed or cancelled task with its original context; other
/// states conflict.
pub async fn manual_retry_requeues_with_context(store: S, _clock: C) {
    let key = ring();
    let mut t = task_for("alice", &key);
    t.key = Some("retry-key".into());
    let e = enqueue_one(&store, t).await;
    let first = claim_one(&store).await;
    assert!(matches!(
        store.retry(e.id, &actor()).await.expect("retry"),
        RetryOutcome::Conflict(TaskState::Running)
    ));
    complete(&store, first.lease, Outcome::Failed(error("broken", false))).await;
    match store.retry(e.id, &actor()).await.expect("retry") {
        RetryOutcome::Requeued(r) => {
            assert_eq!(r.status, TaskState::Pending);
            assert_eq!(r.attempt, 0);
            assert!(r.error.is_none() && r.completed_at.is_none() && r.expires_at.is_none());
        }
        other => panic!("expected Requeued, got {other:?}"),
    }
    let mut again = task_for("alice", &key);
    again.key = Some("retry-key".into());
    let dedup = enqueue_one(&store, again).await;
    assert!(dedup.deduplicated, "a retried task's key is live again");
    let second = claim_one(&store).await;
    assert_eq!(second.lease.id, e.id);
    assert_eq!(second.attempt, 1);
    assert_ne!(second.lease.token, first.lease.token);
    let opened = open(&second, &key);
    assert_eq!(opened.user_id(), Some("alice"));
    assert_eq!(opened.request_id(), Some("req-alice"));
    complete(
        &store,
        second.lease,
        Outcome::Success(args(serde_json::json!(null))),
    )
    .await;
    assert!(matches!(
        store.retry(e.id, &actor()).await.expect("retry"),
        RetryOutcome::Conflict(TaskState::Success)
    ));
    assert!(matches!(
        store.retry(TaskId::new(), &actor()).await.expect("retry"),
        RetryOutcome::NotFound
    ));
}

/// Manual retry: a cancelled task comes back; an expired record is gone; a task whose key was
/// taken by another live task meanwhile comes back without taking the key.
pub async fn manual_retry_of_cancelled_expired_and_contested_tasks(store: S, clock: C) {
    let key = ring();
    let mut t = task_for("alice", &key);
    t.key = Some("contested".into());
    t.ttl = Duration::from_secs(3600);
    let first = enqueue_one(&store, t).await;
    store.cancel(first.id, &actor()).await.expect("cancel");
    let mut t = task_for("alice", &key);
    t.key = Some("contested".into());
    let second = enqueue_one(&store, t).await;
    assert!(!second.deduplicated);
    match store.retry(first.id, &actor()).await.expect("retry") {
        RetryOutcome::Requeued(r) => assert_eq!(r.status, TaskState::Pending),
        other => panic!("expected Requeued, got {other:?}"),
    }
    let mut t = task_for("alice", &key);
    t.key = Some("contested".into());
    let third = enqueue_one(&store, t).await;
    assert!(third.deduplicated);
    assert_eq!(
        third.id, second.id,
        "the key stayed with the task that held it"
    );

    let mut t = task_for("alice", &key);
    t.ttl = Duration::from_secs(60);
    let short = enqueue_one(&store, t).await;
    store.cancel(short.id, &actor()).await.expect("cancel");
    clock.advance(Duration::from_secs(61));
    assert!(matches!(
        store.retry(short.id, &actor()).await.expect("retry"),
        RetryOutcome::NotFound
    ));
}

/// A task cancelled while pending, retried by hand, then failing with a backoff, is not
/// claimable before its backoff (no leftover queue entry may run it early).
pub async fn cancel_then_retry_then_backoff_is_respected(store: S, clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    store.cancel(e.id, &actor()).await.expect("cancel");
    store.retry(e.id, &actor()).await.expect("retry");
    let c = claim_one(&store).await;
    assert_eq!(c.lease.id, e.id);
    let retry = Outcome::Retry {
        error: error("flaky", true),
        delay: Duration::from_secs(60),
    };
    complete(&store, c.lease, retry).await;
    assert!(claim(&store, 10).await.is_empty(), "not before the backoff");
    clock.advance(Duration::from_secs(61));
    assert_eq!(claim_one(&store).await.lease.id, e.id);
    assert!(claim(&store, 10).await.is_empty(), "exactly once");
}

/// Cancelled waiting tasks never take a claim's place: `claim(1)` returns the next live one.
pub async fn claims_skip_cancelled_entries(store: S, _clock: C) {
    let key = ring();
    let batch: Vec<NewTask> = (0..3).map(|i| task_for(&format!("u{i}"), &key)).collect();
    let ids: Vec<TaskId> = batch.iter().map(|t| t.id).collect();
    store.enqueue(batch).await.expect("enqueue");
    store.cancel(ids[0], &actor()).await.expect("cancel");
    store.cancel(ids[1], &actor()).await.expect("cancel");
    let got = claim(&store, 1).await;
    assert_eq!(got.iter().map(|c| c.lease.id).collect::<Vec<_>>(), [ids[2]]);
    let depth = store.depth().await.expect("depth");
    assert_eq!((depth.waiting, depth.running), (0, 1));
}
