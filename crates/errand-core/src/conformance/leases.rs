//! Leases: lapsed ones reclaimed or ended, heartbeats, stale leases refused, released
//! attempts given back.

use super::{
    C, LEASE, S, actor, args, claim, claim_one, complete, enqueue_one, error, get, open, ring,
    task_for,
};
use crate::{
    CancelOutcome, CompleteResult, LEASE_EXPIRED, LeaseState, Outcome, Progress, StatusUpdate,
    TaskState,
};
use std::time::Duration;

/// A lease that lapses hands the task to the next claim, with the same context, a higher
/// attempt and a new fence; the old holder is fenced out.
pub async fn lapsed_lease_is_reclaimed_with_same_context(store: S, clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    let first = claim_one(&store).await;
    assert_eq!(
        store.reap().await.expect("reap").requeued,
        0,
        "lease still held"
    );
    clock.advance(LEASE + Duration::from_secs(1));
    let reaped = store.reap().await.expect("reap");
    assert_eq!(reaped.requeued, 1);
    let r = get(&store, e.id).await;
    assert_eq!(r.status, TaskState::Pending);
    assert_eq!(
        r.error.as_ref().map(|e| e.kind.as_str()),
        Some(LEASE_EXPIRED)
    );
    assert_eq!(
        store.reap().await.expect("reap").requeued,
        0,
        "reaping twice is harmless"
    );

    let second = claim_one(&store).await;
    assert_eq!(second.attempt, 2);
    assert_ne!(
        second.lease.token, first.lease.token,
        "a new claim, a new token"
    );
    assert_eq!(
        second.context.as_ref().map(|c| c.as_str().to_string()),
        first.context.as_ref().map(|c| c.as_str().to_string()),
        "the context document is unchanged"
    );
    let opened = open(&second, &key);
    assert_eq!(opened.user_id(), Some("alice"));
    assert_eq!(
        opened.credential().expect("credential").expose(),
        "token-of-alice"
    );

    // The worker that lost its lease is fenced out everywhere.
    let stale = first.lease;
    assert_eq!(
        store.heartbeat(&[stale], LEASE).await.expect("heartbeat"),
        [LeaseState::Lost]
    );
    let report = StatusUpdate {
        progress: Some(Progress {
            current: 9,
            total: 9,
            message: None,
        }),
        steps: None,
    };
    assert_eq!(
        store.report(vec![(stale, report)]).await.expect("report"),
        [LeaseState::Lost]
    );
    let old = complete(
        &store,
        stale,
        Outcome::Success(args(serde_json::json!("old"))),
    )
    .await;
    assert_eq!(old, CompleteResult::Stale);
    let r = get(&store, e.id).await;
    assert_eq!(r.status, TaskState::Running);
    assert!(r.progress.is_none(), "a fenced report changes nothing");
    let new = complete(
        &store,
        second.lease,
        Outcome::Success(args(serde_json::json!("new"))),
    )
    .await;
    assert_eq!(new, CompleteResult::Applied);
    let r = get(&store, e.id).await;
    assert_eq!(r.status, TaskState::Success);
    assert_eq!(r.result.expect("result").get(), r#""new""#);
    let again = complete(
        &store,
        second.lease,
        Outcome::Success(args(serde_json::json!("x"))),
    )
    .await;
    assert_eq!(
        again,
        CompleteResult::Stale,
        "a finished task takes no second completion"
    );
}

/// A lapsed lease with no attempts left fails the task.
pub async fn lapsed_lease_without_attempts_left_fails(store: S, clock: C) {
    let key = ring();
    let mut t = task_for("alice", &key);
    t.max_attempts = 1;
    let e = enqueue_one(&store, t).await;
    claim_one(&store).await;
    clock.advance(LEASE * 2);
    let reaped = store.reap().await.expect("reap");
    assert_eq!(reaped.failed, 1);
    let r = get(&store, e.id).await;
    assert_eq!(r.status, TaskState::Failed);
    let err = r.error.expect("error");
    assert_eq!(err.kind, LEASE_EXPIRED);
    assert!(!err.retryable);
    assert!(r.expires_at.is_some());
}

/// Heartbeats keep a lease.
pub async fn heartbeat_extends_lease(store: S, clock: C) {
    let key = ring();
    enqueue_one(&store, task_for("alice", &key)).await;
    let c = claim_one(&store).await;
    clock.advance(LEASE - Duration::from_secs(5));
    assert_eq!(
        store.heartbeat(&[c.lease], LEASE).await.expect("heartbeat"),
        [LeaseState::Held]
    );
    clock.advance(LEASE - Duration::from_secs(5));
    assert_eq!(
        store.reap().await.expect("reap").requeued,
        0,
        "renewed lease held"
    );
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        store.reap().await.expect("reap").requeued,
        1,
        "lapsed after renewal ran out"
    );
}

/// A released task goes back to `pending` without spending its attempt.
pub async fn release_does_not_spend_attempt(store: S, _clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    let c = claim_one(&store).await;
    assert_eq!(c.attempt, 1);
    assert_eq!(
        complete(&store, c.lease, Outcome::Released).await,
        CompleteResult::Applied
    );
    let r = get(&store, e.id).await;
    assert_eq!((r.status, r.attempt), (TaskState::Pending, 0));
    let again = claim_one(&store).await;
    assert_eq!(again.attempt, 1);
    assert_ne!(
        again.lease.token, c.lease.token,
        "every claim issues a new token"
    );
}

/// Once a task has been claimed again, its old lease can end it no way at all.
pub async fn stale_leases_are_rejected_for_every_outcome(store: S, clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    let old = claim_one(&store).await.lease;
    clock.advance(LEASE + Duration::from_secs(1));
    store.reap().await.expect("reap");
    let new = claim_one(&store).await.lease;
    let outcomes = [
        Outcome::Success(args(serde_json::json!(1))),
        Outcome::Failed(error("broken", false)),
        Outcome::Cancelled,
        Outcome::Retry {
            error: error("flaky", true),
            delay: Duration::ZERO,
        },
        Outcome::Released,
    ];
    for outcome in outcomes {
        let what = format!("{outcome:?}");
        assert_eq!(
            complete(&store, old, outcome).await,
            CompleteResult::Stale,
            "{what}"
        );
        let r = get(&store, e.id).await;
        assert_eq!((r.status, r.attempt), (TaskState::Running, 2), "{what}");
    }
    assert_eq!(
        complete(&store, new, Outcome::Success(args(serde_json::json!(2)))).await,
        CompleteResult::Applied
    );
}

/// A task whose cancellation was requested, and whose worker then vanished, ends `cancelled`
/// when its lease lapses; a release after a cancel request ends it `cancelled` too.
pub async fn lapsed_lease_of_a_cancel_requested_task_is_cancelled(store: S, clock: C) {
    let key = ring();
    let a = enqueue_one(&store, task_for("alice", &key)).await;
    let b = enqueue_one(&store, task_for("bob", &key)).await;
    let claimed = claim(&store, 2).await;
    for id in [a.id, b.id] {
        assert!(matches!(
            store.cancel(id, &actor()).await.expect("cancel"),
            CancelOutcome::Requested(_)
        ));
    }
    let b_lease = claimed
        .iter()
        .find(|c| c.lease.id == b.id)
        .expect("claimed b")
        .lease;
    assert_eq!(
        complete(&store, b_lease, Outcome::Released).await,
        CompleteResult::Applied
    );
    assert_eq!(get(&store, b.id).await.status, TaskState::Cancelled);
    clock.advance(LEASE + Duration::from_secs(1));
    let reaped = store.reap().await.expect("reap");
    assert_eq!(
        (reaped.cancelled, reaped.requeued, reaped.failed),
        (1, 0, 0)
    );
    assert_eq!(get(&store, a.id).await.status, TaskState::Cancelled);
    assert!(claim(&store, 10).await.is_empty());
}
