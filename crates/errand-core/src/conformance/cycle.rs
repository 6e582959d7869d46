//! The cases about [`Store::complete_and_claim`](crate::Store::complete_and_claim): a batch's
//! completions and the next claim in one call, as a worker's complete loop makes it.

use super::{
    C, LEASE, S, args, claim, claim_from, enqueue_one, error, get, next_event, open, ring, task_for,
};
use crate::{
    ClaimRequest, CompleteResult, Completion, Lease, LeaseToken, Outcome, OwnerFilter, Progress,
    StatusUpdate, TaskState,
};
use std::time::Duration;

fn request(limit: usize) -> ClaimRequest {
    ClaimRequest {
        queues: vec!["default".into()],
        limit,
        lease: LEASE,
        worker_id: "conformance-cycle".into(),
    }
}

fn done(lease: Lease, outcome: Outcome) -> Completion {
    Completion {
        lease,
        outcome,
        report: StatusUpdate::default(),
    }
}

/// Successes (with their reports), a stale lease and a lease given twice end as `complete`
/// ends them, and the same call claims the next tasks in order with their own contexts; then a
/// batch of other outcomes does too, and a task handed back in it may be claimed again at once.
/// Watchers and counters see every change.
pub async fn complete_and_claim_ends_then_claims(store: S, clock: C) {
    let key = ring();
    let users = ["alice", "bob", "carol", "dave", "erin"];
    let mut ids = Vec::new();
    for user in users {
        ids.push(enqueue_one(&store, task_for(user, &key)).await.id);
        clock.advance(Duration::from_millis(5));
    }
    let mut events = store.watch(ids[0]).await.expect("watch");
    let first = claim(&store, 2).await;
    assert_eq!(first.len(), 2);
    assert_eq!(next_event(&mut events).await.status, TaskState::Running);

    let reported = StatusUpdate {
        progress: Some(Progress {
            current: 3,
            total: 3,
            message: Some("all done".into()),
        }),
        steps: None,
    };
    let stale = Lease {
        id: first[1].lease.id,
        token: LeaseToken::random(),
    };
    let batch = vec![
        Completion {
            lease: first[0].lease,
            outcome: Outcome::Success(args(serde_json::json!({"n": 1}))),
            report: reported,
        },
        done(stale, Outcome::Success(args(serde_json::json!(0)))),
        done(first[1].lease, Outcome::Success(args(serde_json::json!(2)))),
        done(first[1].lease, Outcome::Success(args(serde_json::json!(3)))),
    ];
    let (results, next) = store
        .complete_and_claim(batch, &request(2))
        .await
        .expect("complete and claim");
    assert_eq!(
        results,
        [
            CompleteResult::Applied,
            CompleteResult::Stale,
            CompleteResult::Applied,
            CompleteResult::Stale
        ],
        "a lease ends once, and only with its own token"
    );
    let claimed: Vec<_> = next.iter().map(|c| c.lease.id).collect();
    assert_eq!(claimed, ids[2..4], "the next two, oldest first");
    for (c, user) in next.iter().zip(&users[2..4]) {
        assert_eq!(c.attempt, 1);
        assert_eq!(open(c, &key).user_id(), Some(*user), "its own context");
    }
    let a = get(&store, ids[0]).await;
    assert_eq!(a.status, TaskState::Success);
    assert_eq!(
        a.result.as_ref().map(|r| r.get().to_string()),
        Some(r#"{"n":1}"#.to_string())
    );
    assert_eq!(a.progress.as_ref().map(|p| p.current), Some(3));
    let b = get(&store, ids[1]).await;
    assert_eq!(b.status, TaskState::Success);
    assert_eq!(
        b.result.as_ref().map(|r| r.get().to_string()),
        Some("2".to_string()),
        "the first completion of a lease given twice"
    );
    let mut seen = next_event(&mut events).await;
    while seen.status != TaskState::Success {
        seen = next_event(&mut events).await;
    }
    let counts = store.counts(&OwnerFilter::Any).await.expect("counts");
    assert_eq!((counts.success, counts.running, counts.pending), (2, 2, 1));

    // Other outcomes: a retry waits out its backoff, a hand-back is claimable at once.
    let retry = Outcome::Retry {
        error: error("flaky", true),
        delay: Duration::from_secs(60),
    };
    let batch = vec![
        done(next[0].lease, retry),
        done(next[1].lease, Outcome::Released),
    ];
    let (results, again) = store
        .complete_and_claim(batch, &request(5))
        .await
        .expect("complete and claim");
    assert_eq!(results, [CompleteResult::Applied, CompleteResult::Applied]);
    let mut claimed: Vec<_> = again.iter().map(|c| c.lease.id).collect();
    claimed.sort();
    let mut expected = vec![ids[3], ids[4]];
    expected.sort();
    assert_eq!(claimed, expected, "the handed-back task and the last one");
    let handed_back = again
        .iter()
        .find(|c| c.lease.id == ids[3])
        .expect("claimed");
    assert_eq!(handed_back.attempt, 1, "a hand-back spends no attempt");
    assert_eq!(get(&store, ids[2]).await.status, TaskState::Retrying);
    let counts = store.counts(&OwnerFilter::Any).await.expect("counts");
    assert_eq!(
        (
            counts.success,
            counts.running,
            counts.retrying,
            counts.pending
        ),
        (2, 2, 1, 0)
    );

    // An empty queue: the completions are written, nothing is claimed.
    let batch = again
        .iter()
        .map(|c| done(c.lease, Outcome::Success(args(serde_json::json!(null)))))
        .collect();
    let (results, none) = store
        .complete_and_claim(batch, &request(5))
        .await
        .expect("complete and claim");
    assert_eq!(results, [CompleteResult::Applied, CompleteResult::Applied]);
    assert!(none.is_empty(), "nothing due: {none:?}");
    let counts = store.counts(&OwnerFilter::Any).await.expect("counts");
    assert_eq!((counts.success, counts.running), (4, 0));
}

/// Completions of tasks of other queues than the claim's, a claim across queues, and a
/// completion of an unknown task: each completion ends as `complete` would end it, and the
/// claim takes what its own queues have due.
pub async fn complete_and_claim_across_queues(store: S, _clock: C) {
    let key = ring();
    let mut ids = Vec::new();
    for (i, q) in ["cycle-a", "cycle-b", "cycle-a", "cycle-b"]
        .iter()
        .enumerate()
    {
        let mut t = task_for(&format!("u{i}"), &key);
        t.queue = (*q).into();
        ids.push(t.id);
        enqueue_one(&store, t).await;
    }
    let mut from_a = claim_from(&store, &["cycle-a"], 1).await;
    assert_eq!(from_a.len(), 1);
    let unknown = Lease {
        id: crate::TaskId::new(),
        token: LeaseToken::random(),
    };
    let to_b = |limit| ClaimRequest {
        queues: vec!["cycle-b".into()],
        ..request(limit)
    };
    let batch = vec![
        done(
            from_a[0].lease,
            Outcome::Success(args(serde_json::json!(1))),
        ),
        done(unknown, Outcome::Success(args(serde_json::json!(2)))),
    ];
    let (results, from_b) = store
        .complete_and_claim(batch, &to_b(1))
        .await
        .expect("complete and claim");
    assert_eq!(results, [CompleteResult::Applied, CompleteResult::Stale]);
    assert_eq!(
        from_b.iter().map(|c| c.lease.id).collect::<Vec<_>>(),
        [ids[1]]
    );
    assert_eq!(from_b[0].queue, "cycle-b");
    assert_eq!(get(&store, ids[0]).await.status, TaskState::Success);

    // Completions of two queues and a claim across both.
    from_a = claim_from(&store, &["cycle-a"], 1).await;
    let batch = vec![
        done(
            from_b[0].lease,
            Outcome::Success(args(serde_json::json!(3))),
        ),
        done(
            from_a[0].lease,
            Outcome::Success(args(serde_json::json!(4))),
        ),
    ];
    let both = ClaimRequest {
        queues: vec!["cycle-a".into(), "cycle-b".into()],
        ..request(5)
    };
    let (results, rest) = store
        .complete_and_claim(batch, &both)
        .await
        .expect("complete and claim");
    assert_eq!(results, [CompleteResult::Applied, CompleteResult::Applied]);
    assert_eq!(
        rest.iter().map(|c| c.lease.id).collect::<Vec<_>>(),
        [ids[3]]
    );
    let counts = store.counts(&OwnerFilter::Any).await.expect("counts");
    assert_eq!((counts.success, counts.running, counts.pending), (3, 1, 0));
}
