//! Enqueueing: what a new task holds, its order, its idempotency key and its delay, and
//! the limits of its durations.

use super::{
    C, LEASE, S, actor, args, claim, claim_one, complete, enqueue_one, error, get, open, ring,
    task_for,
};
use crate::{ClaimRequest, CompleteResult, NewTask, Outcome, TaskId, TaskState};
use std::time::Duration;

/// A new task reads back with everything it was given.
pub async fn enqueue_then_get(store: S, _clock: C) {
    let key = ring();
    let mut t = task_for("alice", &key);
    t.max_attempts = 4;
    t.timeout = Duration::from_secs(7);
    t.key = Some("k1".into());
    let id = t.id;
    let e = enqueue_one(&store, t).await;
    assert_eq!(e.id, id);
    assert!(!e.deduplicated);
    assert_eq!(e.status, TaskState::Pending);
    let r = get(&store, id).await;
    assert_eq!(r.status, TaskState::Pending);
    assert_eq!(r.name, "conformance");
    assert_eq!(r.queue, "default");
    assert_eq!(r.owner.user_id.as_deref(), Some("alice"));
    assert_eq!(r.owner.tenant.as_deref(), Some("acme"));
    assert_eq!(r.correlation_id.as_deref(), Some("corr-alice"));
    assert_eq!(r.request_id.as_deref(), Some("req-alice"));
    assert_eq!(r.key.as_deref(), Some("k1"));
    assert_eq!((r.attempt, r.max_attempts, r.timeout_ms), (0, 4, 7000));
    assert!(r.started_at.is_none() && r.completed_at.is_none() && r.expires_at.is_none());
    let json = serde_json::to_string(&r).expect("record serializes");
    assert!(!json.contains("token-of-alice"), "no secret in the record");
    assert!(store.get(TaskId::new()).await.expect("get").is_none());
}

/// A batch is stored in one call and claimed oldest first, within the limit and the queues.
pub async fn batch_enqueue_claims_oldest_first(store: S, _clock: C) {
    let key = ring();
    let batch: Vec<NewTask> = (0..10).map(|i| task_for(&format!("u{i}"), &key)).collect();
    let ids: Vec<TaskId> = batch.iter().map(|t| t.id).collect();
    let mut other = task_for("other-queue", &key);
    other.queue = "elsewhere".into();
    let out = store.enqueue(batch).await.expect("enqueue");
    assert_eq!(out.len(), 10);
    assert_eq!(out.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    enqueue_one(&store, other).await;
    let depth = store.depth().await.expect("depth");
    assert_eq!((depth.waiting, depth.running), (11, 0));

    let first = claim(&store, 4).await;
    let depth = store.depth().await.expect("depth");
    assert_eq!((depth.waiting, depth.running), (7, 4));
    assert_eq!(
        first.iter().map(|c| c.lease.id).collect::<Vec<_>>(),
        ids[..4]
    );
    for c in &first {
        assert_eq!(c.attempt, 1);
        assert_eq!(c.name, "conformance");
        assert_eq!(get(&store, c.lease.id).await.status, TaskState::Running);
        let opened = open(c, &key);
        assert_eq!(opened.user_id(), c.owner.user_id.as_deref());
    }
    let rest = claim(&store, 100).await;
    assert_eq!(
        rest.iter().map(|c| c.lease.id).collect::<Vec<_>>(),
        ids[4..]
    );
    assert!(
        claim(&store, 10).await.is_empty(),
        "default queue is drained"
    );
    let elsewhere = store
        .claim(&ClaimRequest {
            queues: vec!["elsewhere".into()],
            limit: 10,
            lease: LEASE,
            worker_id: "w".into(),
        })
        .await
        .expect("claim");
    assert_eq!(elsewhere.len(), 1);
}

/// A live key returns the existing task; other owners' keys and finished tasks do not count.
pub async fn idempotency_key_returns_live_task(store: S, _clock: C) {
    let key = ring();
    let keyed = |user: &str| {
        let mut t = task_for(user, &key);
        t.key = Some("same-key".into());
        t
    };
    let first = enqueue_one(&store, keyed("alice")).await;
    let again = enqueue_one(&store, keyed("alice")).await;
    assert!(again.deduplicated);
    assert_eq!(again.id, first.id);
    let bob = enqueue_one(&store, keyed("bob")).await;
    assert!(
        !bob.deduplicated,
        "another owner's equal key is a different task"
    );
    assert_ne!(bob.id, first.id);

    let in_batch = store
        .enqueue(vec![keyed("carol"), keyed("carol")])
        .await
        .expect("enqueue");
    assert!(!in_batch[0].deduplicated && in_batch[1].deduplicated);
    assert_eq!(in_batch[0].id, in_batch[1].id);

    // Still live while running.
    let c = claim(&store, 10).await;
    let alice_lease = c
        .iter()
        .find(|c| c.lease.id == first.id)
        .expect("claimed")
        .lease;
    let running = enqueue_one(&store, keyed("alice")).await;
    assert!(running.deduplicated);
    assert_eq!(running.status, TaskState::Running);

    // Finished: the key is free again.
    let done = complete(
        &store,
        alice_lease,
        Outcome::Success(args(serde_json::json!(1))),
    )
    .await;
    assert_eq!(done, CompleteResult::Applied);
    let fresh = enqueue_one(&store, keyed("alice")).await;
    assert!(!fresh.deduplicated);
    assert_ne!(fresh.id, first.id);
}

/// A delayed task is `scheduled` and not claimable before its time.
pub async fn delay_schedules_task(store: S, clock: C) {
    let key = ring();
    let mut t = task_for("alice", &key);
    t.delay = Some(Duration::from_secs(10));
    let e = enqueue_one(&store, t).await;
    assert_eq!(e.status, TaskState::Scheduled);
    let r = get(&store, e.id).await;
    assert_eq!(r.status, TaskState::Scheduled);
    let run_at = r.run_at.expect("run_at set");
    assert_eq!((run_at - r.created_at).num_seconds(), 10);
    assert!(claim(&store, 10).await.is_empty());
    clock.advance(Duration::from_secs(11));
    let c = claim_one(&store).await;
    assert_eq!(c.lease.id, e.id);
}

/// A key is free again after every final state: failed, cancelled while waiting, and failed
/// by the reaper.
pub async fn keys_are_freed_by_every_final_state(store: S, clock: C) {
    let key = ring();
    let keyed = |k: &str, attempts: u32| {
        let mut t = task_for("alice", &key);
        t.key = Some(k.into());
        t.max_attempts = attempts;
        t
    };
    let failed = enqueue_one(&store, keyed("k-failed", 3)).await;
    let c = claim_one(&store).await;
    complete(&store, c.lease, Outcome::Failed(error("broken", false))).await;
    let cancelled = enqueue_one(&store, keyed("k-cancelled", 3)).await;
    store.cancel(cancelled.id, &actor()).await.expect("cancel");
    let reaped = enqueue_one(&store, keyed("k-reaped", 1)).await;
    claim_one(&store).await;
    clock.advance(LEASE + Duration::from_secs(1));
    assert_eq!(store.reap().await.expect("reap").failed, 1);
    for (k, old) in [
        ("k-failed", failed.id),
        ("k-cancelled", cancelled.id),
        ("k-reaped", reaped.id),
    ] {
        let again = enqueue_one(&store, keyed(k, 3)).await;
        assert!(!again.deduplicated, "{k} is free again");
        assert_ne!(again.id, old);
    }
}

/// "Forever" as `Duration::MAX` is clamped to [`MAX_DURATION`](crate::MAX_DURATION), and every
/// store handles it.
pub async fn durations_are_clamped_not_overflowed(store: S, _clock: C) {
    let key = ring();
    let policy = crate::Policy {
        queue: "default".into(),
        max_attempts: 1,
        timeout: Duration::MAX,
        ttl: Duration::MAX,
        backoff: crate::Backoff::none(),
    };
    let t = task_for("alice", &key).with_policy(&policy);
    assert_eq!(
        (t.ttl, t.timeout),
        (crate::MAX_DURATION, crate::MAX_DURATION)
    );
    let e = enqueue_one(&store, t).await;
    let c = claim_one(&store).await;
    complete(
        &store,
        c.lease,
        Outcome::Success(args(serde_json::json!(1))),
    )
    .await;
    let r = get(&store, e.id).await;
    assert_eq!(r.status, TaskState::Success);
    let years = (r.expires_at.expect("expiry") - r.completed_at.expect("done")).num_days() / 365;
    assert!(years >= 99, "kept about a century: {years} years");
    let mut later = task_for("alice", &key);
    later.delay = Some(crate::MAX_DURATION);
    assert_eq!(
        enqueue_one(&store, later).await.status,
        TaskState::Scheduled
    );
}
