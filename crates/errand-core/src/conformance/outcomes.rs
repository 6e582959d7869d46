//! How attempts end: retries after their backoff, successes and failures recorded, reports merged.

use super::{C, S, args, claim, claim_one, complete, enqueue_one, error, get, ring, task_for};
use crate::{
    CompleteResult, Completion, LeaseState, Outcome, Progress, StatusUpdate, Step, StepStatus,
    TaskId, TaskState,
};
use std::time::Duration;

/// A retry outcome leaves the task `retrying` until its backoff passes.
pub async fn retry_outcome_waits_for_backoff(store: S, clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    let c = claim_one(&store).await;
    let retry = Outcome::Retry {
        error: error("flaky", true),
        delay: Duration::from_secs(30),
    };
    assert_eq!(
        complete(&store, c.lease, retry).await,
        CompleteResult::Applied
    );
    let r = get(&store, e.id).await;
    assert_eq!(r.status, TaskState::Retrying);
    assert_eq!(r.attempt, 1);
    let next = r.next_attempt_at.expect("next_attempt_at");
    assert!((next - r.updated_at).num_seconds() >= 29);
    assert_eq!(r.error.as_ref().map(|e| e.kind.as_str()), Some("flaky"));
    assert!(r.completed_at.is_none(), "retrying is not finished");
    assert!(claim(&store, 10).await.is_empty(), "not before the backoff");
    clock.advance(Duration::from_secs(31));
    let again = claim_one(&store).await;
    assert_eq!(again.attempt, 2);
    assert_eq!(
        again.context.map(|c| c.as_str().to_string()),
        c.context.map(|c| c.as_str().to_string())
    );
}

/// Success stores the result; failure stores the error; both expire after the TTL.
pub async fn success_and_failure_are_recorded(store: S, _clock: C) {
    let key = ring();
    let mut a = task_for("alice", &key);
    a.ttl = Duration::from_secs(600);
    let (ok_id, bad_id) = (a.id, TaskId::new());
    let mut b = task_for("alice", &key);
    b.id = bad_id;
    store.enqueue(vec![a, b]).await.expect("enqueue");
    let c = claim(&store, 2).await;
    let report = StatusUpdate {
        progress: Some(Progress {
            current: 2,
            total: 2,
            message: Some("done".into()),
        }),
        steps: None,
    };
    let results = store
        .complete(vec![
            Completion {
                lease: c[0].lease,
                outcome: Outcome::Success(args(serde_json::json!({"chunks": 3}))),
                report,
            },
            Completion {
                lease: c[1].lease,
                outcome: Outcome::Failed(error("broken", false)),
                report: StatusUpdate::default(),
            },
        ])
        .await
        .expect("complete");
    assert_eq!(results, [CompleteResult::Applied, CompleteResult::Applied]);
    let ok = get(&store, ok_id).await;
    assert_eq!(ok.status, TaskState::Success);
    let result: serde_json::Value =
        serde_json::from_str(ok.result.as_ref().expect("result").get()).expect("json");
    assert_eq!(result, serde_json::json!({"chunks": 3}));
    assert_eq!(ok.progress.as_ref().map(|p| p.current), Some(2));
    let (done, exp) = (
        ok.completed_at.expect("completed"),
        ok.expires_at.expect("expiry"),
    );
    assert_eq!((exp - done).num_seconds(), 600);
    assert!(ok.error.is_none());
    let bad = get(&store, bad_id).await;
    assert_eq!(bad.status, TaskState::Failed);
    let err = bad.error.expect("error");
    assert_eq!((err.kind.as_str(), err.retryable), ("broken", false));
    assert_eq!(err.details, Some(serde_json::json!({"detail": 1})));
}

/// Reports from the lease holder merge into the record.
pub async fn reports_merge_progress_and_steps(store: S, _clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    let c = claim_one(&store).await;
    let step = |name: &str, status| Step {
        name: name.into(),
        status,
        started_at: None,
        completed_at: None,
        error: None,
    };
    let first = StatusUpdate {
        progress: Some(Progress {
            current: 1,
            total: 4,
            message: Some("chunking".into()),
        }),
        steps: Some(vec![
            step("chunk", StepStatus::Running),
            step("embed", StepStatus::Pending),
        ]),
    };
    assert_eq!(
        store.report(vec![(c.lease, first)]).await.expect("report"),
        [LeaseState::Held]
    );
    let progress_only = StatusUpdate {
        progress: Some(Progress {
            current: 2,
            total: 4,
            message: None,
        }),
        steps: None,
    };
    store
        .report(vec![(c.lease, progress_only)])
        .await
        .expect("report");
    let r = get(&store, e.id).await;
    assert_eq!(
        r.progress.as_ref().map(|p| (p.current, p.total)),
        Some((2, 4))
    );
    assert_eq!(
        r.steps
            .iter()
            .map(|s| (s.name.as_str(), s.status))
            .collect::<Vec<_>>(),
        [
            ("chunk", StepStatus::Running),
            ("embed", StepStatus::Pending)
        ],
        "steps keep their order and survive a progress-only report"
    );
}
