//! The store vacuums its hot table itself (the server's autovacuum may be off): after enough
//! claims and finishes, `tasks` is vacuumed and the count deltas are folded.

mod common;

use common::{TempDb, claim_request};
use errand_core::{Completion, NewTask, Outcome, OwnerFilter, StatusUpdate, Store, SystemClock};
use sqlx_core::query::query;
use sqlx_core::row::Row;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_table_is_vacuumed_after_enough_work() {
    let db = TempDb::new().await;
    let store = db.store(Arc::new(SystemClock)).await;
    let pool = db.pool().await;
    let vacuums = || async {
        query("SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = 'errand' AND relname = 'tasks'")
            .fetch_one(&pool)
            .await
            .expect("statistics")
            .get::<i64, _>(0)
    };
    let before = vacuums().await;
    // 10,000 claims and 10,000 finishes leave 20,000 dead rows.
    let args = serde_json::value::to_raw_value(&serde_json::json!({})).expect("JSON");
    for _ in 0..10 {
        let batch: Vec<NewTask> = (0..1000).map(|_| NewTask::new("t", args.clone())).collect();
        store.enqueue(batch).await.expect("enqueue");
        let claimed = store.claim(&claim_request(1000)).await.expect("claim");
        let done = claimed
            .iter()
            .map(|c| Completion {
                lease: c.lease,
                outcome: Outcome::Success(args.clone()),
                report: StatusUpdate::default(),
            })
            .collect();
        store.complete(done).await.expect("complete");
    }
    let mut vacuumed = false;
    for _ in 0..100 {
        // The statistics collector reports with a delay.
        if vacuums().await > before {
            vacuumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(vacuumed, "the store vacuumed its hot table");
    let deltas: i64 = query("SELECT count(*) FROM errand.count_deltas")
        .fetch_one(&pool)
        .await
        .expect("deltas")
        .get(0);
    assert!(deltas < 20, "the count deltas were folded: {deltas} left");
    let counts = store.counts(&OwnerFilter::Any).await.expect("counts");
    assert_eq!((counts.success, counts.total()), (10_000, 10_000));
}
