//! Watching: every change delivered, watchers leaving, idle workers woken.

use super::{C, S, args, claim_one, complete, enqueue_one, next_event, ring, task_for};
use crate::{Outcome, Progress, StatusUpdate, TaskState};
use futures::StreamExt;
use std::time::Duration;

/// A watcher sees each change of its task, ending with the final state.
pub async fn watch_delivers_each_change(store: S, _clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    let mut events = store.watch(e.id).await.expect("watch");
    let c = claim_one(&store).await;
    let report = StatusUpdate {
        progress: Some(Progress {
            current: 1,
            total: 2,
            message: None,
        }),
        steps: None,
    };
    store.report(vec![(c.lease, report)]).await.expect("report");
    complete(
        &store,
        c.lease,
        Outcome::Success(args(serde_json::json!(true))),
    )
    .await;
    let mut states = Vec::new();
    while states.last() != Some(&TaskState::Success) {
        let r = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("event within 5 s")
            .expect("stream open");
        assert_eq!(r.id, e.id);
        assert!(
            !serde_json::to_string(&r)
                .expect("json")
                .contains("token-of")
        );
        states.push(r.status);
    }
    assert_eq!(states.first(), Some(&TaskState::Running));
    assert!(
        states.len() >= 3,
        "running, progress and success each arrive: {states:?}"
    );
}

/// New work wakes an idle worker's signal promptly.
pub async fn work_signal_wakes_idle_worker(store: S, _clock: C) {
    let key = ring();
    let mut signal = store
        .work_signal(&["default".into()])
        .await
        .expect("signal");
    signal.wait(Duration::from_millis(50)).await; // consume any initial wake-up
    let waiter = tokio::spawn(async move {
        let began = std::time::Instant::now();
        signal.wait(Duration::from_secs(20)).await;
        began.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    enqueue_one(&store, task_for("alice", &key)).await;
    let waited = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken")
        .expect("join");
    assert!(
        waited < Duration::from_secs(5),
        "woken by the enqueue, not the timeout: {waited:?}"
    );
}

/// Two watchers follow one task; when one goes away, the other still gets every change.
pub async fn a_watcher_leaving_does_not_end_the_others(store: S, _clock: C) {
    let key = ring();
    let e = enqueue_one(&store, task_for("alice", &key)).await;
    let mut stays = store.watch(e.id).await.expect("watch");
    let leaves = store.watch(e.id).await.expect("watch");
    drop(leaves);
    let c = claim_one(&store).await;
    assert_eq!(next_event(&mut stays).await.status, TaskState::Running);
    complete(
        &store,
        c.lease,
        Outcome::Success(args(serde_json::json!(1))),
    )
    .await;
    let mut last = next_event(&mut stays).await;
    while !last.status.is_terminal() {
        last = next_event(&mut stays).await;
    }
    assert_eq!(last.status, TaskState::Success);
}
