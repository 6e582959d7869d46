//! The cases about a task's action history ([`crate::history`]): who cancelled or retried it
//! and when, recorded with the change and only with it.

use super::{C, S, claim, claim_one, complete, enqueue_one, error, get, ring, task_for};
use crate::clock::Clock;
use crate::{
    ActionKind, ActionOutcome, CancelOutcome, HISTORY_LIMIT, ListQuery, Outcome, Owner,
    OwnerFilter, RetryOutcome, TaskId, TaskRecord, TaskState,
};
use chrono::{DateTime, Utc};
use std::time::Duration;

fn admin(name: &str) -> Owner {
    Owner::new(name, Some("ops".into()))
}

/// Whether `at` is `expected` as a store keeps it (SQLite to the µs, Redis to the ms).
fn same_time(at: DateTime<Utc>, expected: DateTime<Utc>) -> bool {
    (at - expected).num_milliseconds().abs() <= 1
}

/// The outcomes and actors of `record`'s history, in order.
fn entries(record: &TaskRecord) -> Vec<(ActionOutcome, Option<&str>)> {
    record
        .history
        .iter()
        .map(|a| (a.outcome, a.by.user_id.as_deref()))
        .collect()
}

/// A cancel and a retry each record who did it (not the task's owner) and when, in the record
/// they answer and in later reads; a worker ending the task adds nothing.
pub async fn history_names_the_actor_and_time(store: S, clock: C) {
    let key = ring();
    let waiting = enqueue_one(&store, task_for("alice", &key)).await;
    assert!(get(&store, waiting.id).await.history.is_empty());
    let json = serde_json::to_value(get(&store, waiting.id).await).expect("serializes");
    assert_eq!(json["history"], serde_json::json!([]), "always an array");

    let cancelled_at = clock.now();
    let answered = match store
        .cancel(waiting.id, &admin("root"))
        .await
        .expect("cancel")
    {
        CancelOutcome::Cancelled(r) => r,
        other => panic!("expected Cancelled, got {other:?}"),
    };
    assert_eq!(
        entries(&answered),
        [(ActionOutcome::Cancelled, Some("root"))]
    );
    let a = &answered.history[0];
    assert_eq!(a.action, ActionKind::Cancel);
    assert_eq!(a.by, admin("root"), "the actor's user and tenant");
    assert!(same_time(a.at, cancelled_at), "{} vs {cancelled_at}", a.at);
    assert_eq!(a.at, answered.updated_at, "written with the change");

    clock.advance(Duration::from_secs(5));
    let retried_at = clock.now();
    let owner = Owner::new("alice", Some("acme".into()));
    match store.retry(waiting.id, &owner).await.expect("retry") {
        RetryOutcome::Requeued(r) => assert_eq!(r.history.len(), 2),
        other => panic!("expected Requeued, got {other:?}"),
    }
    let r = get(&store, waiting.id).await;
    assert_eq!(
        entries(&r),
        [
            (ActionOutcome::Cancelled, Some("root")),
            (ActionOutcome::Requeued, Some("alice"))
        ]
    );
    assert_eq!(r.history[1].action, ActionKind::Retry);
    assert!(same_time(r.history[1].at, retried_at));
    assert!(r.history[0].at < r.history[1].at);

    // A running task: the request is recorded; the worker's end of it is not an action.
    let running = claim_one(&store).await;
    assert_eq!(running.lease.id, waiting.id);
    match store
        .cancel(waiting.id, &admin("root"))
        .await
        .expect("cancel")
    {
        CancelOutcome::Requested(r) => assert_eq!(r.history.len(), 3),
        other => panic!("expected Requested, got {other:?}"),
    }
    complete(&store, running.lease, Outcome::Cancelled).await;
    let r = get(&store, waiting.id).await;
    assert_eq!(r.status, TaskState::Cancelled);
    assert_eq!(
        entries(&r)[2],
        (ActionOutcome::CancelRequested, Some("root"))
    );
    assert_eq!(r.history.len(), 3);
    let page = store
        .list(&ListQuery::owner(OwnerFilter::Owner(owner)))
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        page.items[0].history, r.history,
        "listings carry the history"
    );
}

/// A cancel or retry the task's state refuses, or of an unknown task, records nothing.
pub async fn refused_actions_leave_history_unchanged(store: S, _clock: C) {
    let key = ring();
    let done = enqueue_one(&store, task_for("alice", &key)).await;
    let c = claim_one(&store).await;
    complete(
        &store,
        c.lease,
        Outcome::Success(super::args(serde_json::json!(1))),
    )
    .await;
    assert!(matches!(
        store.cancel(done.id, &admin("root")).await.expect("cancel"),
        CancelOutcome::Conflict(TaskState::Success)
    ));
    assert!(matches!(
        store.retry(done.id, &admin("root")).await.expect("retry"),
        RetryOutcome::Conflict(TaskState::Success)
    ));
    assert!(get(&store, done.id).await.history.is_empty());

    let waiting = enqueue_one(&store, task_for("alice", &key)).await;
    assert!(matches!(
        store
            .retry(waiting.id, &admin("root"))
            .await
            .expect("retry"),
        RetryOutcome::Conflict(TaskState::Pending)
    ));
    assert!(get(&store, waiting.id).await.history.is_empty());
    store
        .cancel(waiting.id, &admin("first"))
        .await
        .expect("cancel");
    assert!(matches!(
        store
            .cancel(waiting.id, &admin("second"))
            .await
            .expect("cancel"),
        CancelOutcome::Conflict(TaskState::Cancelled)
    ));
    assert_eq!(
        entries(&get(&store, waiting.id).await),
        [(ActionOutcome::Cancelled, Some("first"))]
    );
    let failed = enqueue_one(&store, task_for("bob", &key)).await;
    let c = claim_one(&store).await;
    complete(&store, c.lease, Outcome::Failed(error("broken", false))).await;
    assert!(get(&store, failed.id).await.history.is_empty());
    assert!(matches!(
        store
            .cancel(TaskId::new(), &admin("root"))
            .await
            .expect("cancel"),
        CancelOutcome::NotFound
    ));
    assert!(matches!(
        store
            .retry(TaskId::new(), &admin("root"))
            .await
            .expect("retry"),
        RetryOutcome::NotFound
    ));
}

/// Two admins acting on the same tasks at once: every action that changed a task has its
/// entry (none overwrites another), and one that lost the race has none.
pub async fn actions_of_two_admins_at_once_all_land(store: S, _clock: C) {
    let key = ring();
    let running = enqueue_one(&store, task_for("alice", &key)).await;
    claim_one(&store).await;
    let waiting: Vec<TaskId> = {
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(enqueue_one(&store, task_for("bob", &key)).await.id);
        }
        ids
    };

    // Each admin requests the running task's cancellation 10 times, all at once.
    let mut calls = Vec::new();
    for name in ["ann", "ben"] {
        for _ in 0..10 {
            let store = store.clone();
            calls.push(tokio::spawn(async move {
                store
                    .cancel(running.id, &admin(name))
                    .await
                    .expect("cancel")
            }));
        }
    }
    for call in calls {
        assert!(matches!(
            call.await.expect("joins"),
            CancelOutcome::Requested(_)
        ));
    }
    let r = get(&store, running.id).await;
    assert_eq!(r.history.len(), 20, "every request is recorded");
    for name in ["ann", "ben"] {
        let by = r
            .history
            .iter()
            .filter(|a| a.by.user_id.as_deref() == Some(name))
            .count();
        assert_eq!(by, 10, "{name}'s requests");
    }

    // Both cancel each waiting task at once: one wins, and only the winner is recorded.
    let mut races = Vec::new();
    for id in &waiting {
        for name in ["ann", "ben"] {
            let (store, id) = (store.clone(), *id);
            races.push(tokio::spawn(async move {
                let outcome = store.cancel(id, &admin(name)).await.expect("cancel");
                (id, name, matches!(outcome, CancelOutcome::Cancelled(_)))
            }));
        }
    }
    let mut winners = Vec::new();
    for race in races {
        let (id, name, won) = race.await.expect("joins");
        if won {
            winners.push((id, name));
        }
    }
    assert_eq!(winners.len(), waiting.len(), "each task is cancelled once");
    for (id, name) in winners {
        assert_eq!(
            entries(&get(&store, id).await),
            [(ActionOutcome::Cancelled, Some(name))]
        );
    }
    assert!(claim(&store, 10).await.is_empty());
}

/// A task acted on more than [`HISTORY_LIMIT`] times keeps the newest entries, in order.
pub async fn history_is_bounded_to_the_newest(store: S, clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    claim_one(&store).await;
    let extra = 5;
    for i in 0..HISTORY_LIMIT + extra {
        clock.advance(Duration::from_millis(10));
        store
            .cancel(e.id, &admin(&format!("op{i}")))
            .await
            .expect("cancel");
    }
    let r = get(&store, e.id).await;
    assert_eq!(r.history.len(), HISTORY_LIMIT);
    let names: Vec<String> = (extra..HISTORY_LIMIT + extra)
        .map(|i| format!("op{i}"))
        .collect();
    let got: Vec<&str> = r
        .history
        .iter()
        .filter_map(|a| a.by.user_id.as_deref())
        .collect();
    assert_eq!(got, names, "the oldest entries are dropped");
    assert!(r.history.windows(2).all(|w| w[0].at < w[1].at));
}
