//! Cancellation: a waiting task is cancelled at once, a running one is asked to stop and
//! ends cancelled whether or not it watches its token.

mod common;

use common::*;
use errand_core::*;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_pending_and_running_tasks() {
    let s = setup(Arc::new(MemoryStore::new()));
    let worker = s.worker(config(4));
    let later = s
        .client
        .submit(Observe { sleep_ms: 0 })
        .delay(Duration::from_secs(3600))
        .await
        .expect("submit")
        .id;
    assert!(matches!(
        s.store
            .cancel(later, &Owner::new("tester", None))
            .await
            .expect("cancel"),
        CancelOutcome::Cancelled(_)
    ));
    assert_eq!(
        s.store.get(later).await.expect("get").expect("rec").status,
        TaskState::Cancelled
    );

    let polite = s
        .client
        .submit(Sleepy {
            ms: 3_600_000,
            cooperative: true,
        })
        .await
        .expect("submit")
        .id;
    let stubborn = s
        .client
        .submit(Sleepy {
            ms: 3_600_000,
            cooperative: false,
        })
        .await
        .expect("submit")
        .id;
    for id in [polite, stubborn] {
        until(&s.store, id, LONG, |r| r.status == TaskState::Running).await;
        assert!(matches!(
            s.store
                .cancel(id, &Owner::new("tester", None))
                .await
                .expect("cancel"),
            CancelOutcome::Requested(_)
        ));
    }
    for id in [polite, stubborn] {
        let r = finished(&s.store, id, LONG).await;
        assert_eq!(r.status, TaskState::Cancelled, "{id}");
        assert_eq!(r.attempt, 1);
    }
    assert!(
        s.journal.of(later).is_empty(),
        "the cancelled pending task never ran"
    );
    let stats = worker.shutdown(LONG).await;
    assert_eq!(stats.cancelled, 2);
}
