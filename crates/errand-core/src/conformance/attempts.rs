//! The cases about what a task's page shows beyond its state: the attempt log
//! ([`crate::attempt_log`]), the arguments `get` returns, and the trace id kept in the clear.

use super::{C, LEASE, S, args, claim_one, complete, ctx, enqueue_one, error, get, ring, task_for};
use crate::{
    ATTEMPT_LOG_LIMIT, AttemptEnding, CancelOutcome, ListQuery, NewTask, Outcome, OwnerFilter,
    RetryOutcome, TaskRecord, TaskState,
};
use std::time::Duration;

/// The outcomes and attempt numbers of `record`'s attempt log, in order.
fn ends(record: &TaskRecord) -> Vec<(u32, AttemptEnding)> {
    record
        .attempts
        .iter()
        .map(|a| (a.attempt, a.outcome))
        .collect()
}

/// Each attempt that retried, lapsed, failed or was cancelled is logged with its number,
/// times and error, in order; a success and an attempt handed back add nothing; a manual
/// retry keeps the log.
pub async fn attempt_log_records_every_end_but_success(store: S, clock: C) {
    let key = ring();
    let mut t = task_for("alice", &key);
    t.max_attempts = 3;
    let id = enqueue_one(&store, t).await.id;
    let fresh = get(&store, id).await;
    assert!(fresh.attempts.is_empty());
    let json = serde_json::to_value(&fresh).expect("serializes");
    assert_eq!(json["attempts"], serde_json::json!([]), "always an array");

    // Attempt 1 fails and will be retried.
    let first = claim_one(&store).await;
    let started = get(&store, id).await.started_at;
    clock.advance(Duration::from_secs(2));
    let retry = Outcome::Retry {
        error: error("flaky", true),
        delay: Duration::from_secs(1),
    };
    complete(&store, first.lease, retry).await;
    let r = get(&store, id).await;
    assert_eq!(r.status, TaskState::Retrying);
    assert_eq!(ends(&r), [(1, AttemptEnding::Retrying)]);
    let end = &r.attempts[0];
    assert_eq!(end.started_at, started, "the attempt's own start");
    assert!(end.started_at.is_some_and(|s| s < end.ended_at));
    assert_eq!(end.ended_at, r.updated_at, "written with the change");
    assert_eq!(end.error.as_ref(), Some(&error("flaky", true)));

    // Attempt 2 is handed back at shutdown: not spent, not logged. Then its worker dies.
    clock.advance(Duration::from_secs(2));
    let second = claim_one(&store).await;
    complete(&store, second.lease, Outcome::Released).await;
    assert_eq!(
        get(&store, id).await.attempts.len(),
        1,
        "a hand-back adds nothing"
    );
    let second = claim_one(&store).await;
    assert_eq!(second.attempt, 2);
    clock.advance(LEASE + Duration::from_secs(1));
    store.reap().await.expect("reap");
    let r = get(&store, id).await;
    assert_eq!(
        ends(&r),
        [
            (1, AttemptEnding::Retrying),
            (2, AttemptEnding::LeaseLapsed)
        ]
    );
    let lapsed = r.attempts[1].error.as_ref().expect("the reaper's error");
    assert_eq!(lapsed.kind, crate::LEASE_EXPIRED);

    // Attempt 3 fails for good.
    let third = claim_one(&store).await;
    complete(&store, third.lease, Outcome::Failed(error("broken", false))).await;
    let r = get(&store, id).await;
    assert_eq!(r.status, TaskState::Failed);
    assert_eq!(ends(&r)[2], (3, AttemptEnding::Failed));
    assert_eq!(r.attempts[2].error.as_ref(), Some(&error("broken", false)));

    // A manual retry keeps the log; its successful run adds nothing.
    let by = super::actor();
    assert!(matches!(
        store.retry(id, &by).await.expect("retry"),
        RetryOutcome::Requeued(_)
    ));
    let again = claim_one(&store).await;
    complete(
        &store,
        again.lease,
        Outcome::Success(args(serde_json::json!(1))),
    )
    .await;
    let r = get(&store, id).await;
    assert_eq!(r.status, TaskState::Success);
    assert_eq!(r.attempts.len(), 3, "success adds nothing: {:?}", ends(&r));
}

/// A running task cancelled by request logs its attempt as cancelled, without an error.
pub async fn attempt_log_records_cancellation(store: S, _clock: C) {
    let key = ring();
    let id = enqueue_one(&store, task_for("alice", &key)).await.id;
    let running = claim_one(&store).await;
    assert!(matches!(
        store.cancel(id, &super::actor()).await.expect("cancel"),
        CancelOutcome::Requested(_)
    ));
    // The worker sees the token fire and retries; cancellation wins.
    let retry = Outcome::Retry {
        error: error("interrupted", true),
        delay: Duration::from_secs(1),
    };
    complete(&store, running.lease, retry).await;
    let r = get(&store, id).await;
    assert_eq!(r.status, TaskState::Cancelled);
    assert_eq!(ends(&r), [(1, AttemptEnding::Cancelled)]);
    assert_eq!(r.attempts[0].error, None);
}

/// The log keeps the newest [`ATTEMPT_LOG_LIMIT`] entries.
pub async fn attempt_log_is_bounded_to_the_newest(store: S, clock: C) {
    let key = ring();
    let mut t = task_for("alice", &key);
    let total = ATTEMPT_LOG_LIMIT as u32 + 5;
    t.max_attempts = total + 1;
    let id = enqueue_one(&store, t).await.id;
    for _ in 0..total {
        let c = claim_one(&store).await;
        let retry = Outcome::Retry {
            error: error("again", true),
            delay: Duration::from_millis(10),
        };
        complete(&store, c.lease, retry).await;
        clock.advance(Duration::from_millis(20));
    }
    let r = get(&store, id).await;
    assert_eq!(r.attempts.len(), ATTEMPT_LOG_LIMIT);
    assert_eq!(r.attempts[0].attempt, 6, "the oldest five were dropped");
    assert_eq!(r.attempts[ATTEMPT_LOG_LIMIT - 1].attempt, total);
}

/// `get` returns the arguments as submitted and the trace id of the submitter's
/// `traceparent`; listings carry the trace id but not the arguments; a task without a trace
/// has none.
pub async fn get_shows_args_and_trace_id(store: S, _clock: C) {
    let key = ring();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traced_ctx = ctx("alice")
        .to_builder()
        .traceparent(format!("00-{trace}-00f067aa0ba902b7-01"))
        .build();
    let given = serde_json::json!({"doc": "report.pdf", "pages": [1, 2]});
    let traced = NewTask::new("conformance", args(given.clone()))
        .with_context(&traced_ctx, &key)
        .expect("seals");
    let id = enqueue_one(&store, traced).await.id;
    let plain = enqueue_one(&store, task_for("alice", &key)).await.id;

    let r = get(&store, id).await;
    assert_eq!(r.trace_id.as_deref(), Some(trace));
    let shown: serde_json::Value =
        serde_json::from_str(r.args.as_ref().expect("get returns the args").get())
            .expect("args are JSON");
    assert_eq!(shown, given);
    assert_eq!(get(&store, plain).await.trace_id, None);

    let page = store
        .list(&ListQuery::owner(OwnerFilter::Owner(r.owner.clone())))
        .await
        .expect("list");
    let listed = page.items.iter().find(|t| t.id == id).expect("listed");
    assert_eq!(listed.trace_id.as_deref(), Some(trace));
    assert!(listed.args.is_none(), "listings stay small");
}
