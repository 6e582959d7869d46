//! The reaper hands back every lapsed lease, however many workers crashed at once.

mod common;

use common::{LEASE, claim, open, task_for};
use errand_core::{CancelOutcome, ManualClock, Owner, SealKey, Store, TaskState};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_lapsed_leases_are_reaped_in_one_pass() {
    const TASKS: usize = 2_500;
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new());
    let store = open(&dir.path().join("errand.db"), clock.clone());
    let key = SealKey::generate();
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let mut t = task_for(&format!("u{}", i % 7), &key);
            t.max_attempts = if i < 500 { 1 } else { 3 };
            t
        })
        .collect();
    let ids: Vec<_> = tasks.iter().map(|t| t.id).collect();
    store.enqueue(tasks).await.expect("enqueue");
    assert_eq!(claim(&store, TASKS).await.len(), TASKS);
    for id in &ids[500..510] {
        let outcome = store
            .cancel(*id, &Owner::new("operator", None))
            .await
            .expect("cancel");
        assert!(
            matches!(outcome, CancelOutcome::Requested(_)),
            "{outcome:?}"
        );
    }

    clock.advance(LEASE + Duration::from_secs(1));
    let reaped = store.reap().await.expect("reap");
    assert_eq!(
        (reaped.requeued, reaped.failed, reaped.cancelled),
        (1_990, 500, 10)
    );
    let depth = store.depth().await.expect("depth");
    assert_eq!((depth.waiting, depth.running), (1_990, 0));
    let status = |i: usize| {
        let store = store.clone();
        let id = ids[i];
        async move { store.get(id).await.expect("get").expect("record").status }
    };
    assert_eq!(status(0).await, TaskState::Failed);
    assert_eq!(status(505).await, TaskState::Cancelled);
    assert_eq!(status(2_000).await, TaskState::Pending);
    let again = claim(&store, TASKS).await;
    assert_eq!(again.len(), 1_990);
    assert!(again.iter().all(|c| c.attempt == 2));
}
