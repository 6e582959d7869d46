//! The store vacuums its hot table itself (the server's autovacuum may be off): after enough
//! claims and finishes, `tasks` is vacuumed and the count deltas are folded.

mod common;

use common::{TempDb, claim_request};
use errand_core::{Completion, NewTask, Outcome, OwnerFilter, StatusUpdate, Store, SystemClock};
use errand_postgres::PostgresStore;
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_postgres::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// How many times `tasks` was vacuumed by hand (the store's own vacuums, not autovacuum's).
async fn vacuums(pool: &PgPool) -> i64 {
    query("SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = 'errand' AND relname = 'tasks'")
        .fetch_one(pool)
        .await
        .expect("statistics")
        .get::<i64, _>(0)
}

/// Waits until `tasks` was vacuumed more than `count` times; whether it was.
async fn vacuumed_after(pool: &PgPool, count: i64) -> bool {
    for _ in 0..100 {
        // The statistics reach the shared counters with a delay.
        if vacuums(pool).await > count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Claims and finishes `tasks` tasks in batches of `batch`, enqueueing each batch first when
/// `enqueue` is set: each task leaves two dead rows.
async fn claim_and_finish(store: &PostgresStore, tasks: usize, batch: usize, enqueue: bool) {
    let args = serde_json::value::to_raw_value(&serde_json::json!({})).expect("JSON");
    for _ in 0..tasks / batch {
        if enqueue {
            let new: Vec<NewTask> = (0..batch)
                .map(|_| NewTask::new("t", args.clone()))
                .collect();
            store.enqueue(new).await.expect("enqueue");
        }
        let claimed = store.claim(&claim_request(batch)).await.expect("claim");
        assert_eq!(claimed.len(), batch, "the backlog holds enough tasks");
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_table_is_vacuumed_after_enough_work() {
    let db = TempDb::new().await;
    let store = db.store(Arc::new(SystemClock)).await;
    let pool = db.pool().await;
    let before = vacuums(&pool).await;
    // 10,000 claims and 10,000 finishes leave 20,000 dead rows.
    claim_and_finish(&store, 10_000, 1000, true).await;
    assert!(
        vacuumed_after(&pool, before).await,
        "the store vacuumed its hot table"
    );
    let deltas: i64 = query("SELECT count(*) FROM errand.count_deltas")
        .fetch_one(&pool)
        .await
        .expect("deltas")
        .get(0);
    assert!(deltas < 20, "the count deltas were folded: {deltas} left");
    let counts = store.counts(&OwnerFilter::Any).await.expect("counts");
    assert_eq!((counts.success, counts.total()), (10_000, 10_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_backlog_is_vacuumed_less_often() {
    let db = TempDb::new().await;
    let store = db.store(Arc::new(SystemClock)).await;
    let pool = db.pool().await;
    let args = serde_json::value::to_raw_value(&serde_json::json!({})).expect("JSON");
    for _ in 0..100 {
        let batch: Vec<NewTask> = (0..1000).map(|_| NewTask::new("t", args.clone())).collect();
        store.enqueue(batch).await.expect("enqueue");
    }
    let before = vacuums(&pool).await;
    // 6,000 dead rows: past the first threshold, so the store vacuums and learns that the
    // table holds about 97,000 rows.
    claim_and_finish(&store, 3_000, 500, false).await;
    assert!(vacuumed_after(&pool, before).await, "the first vacuum ran");
    let first = vacuums(&pool).await;
    // 6,000 more dead rows would start another vacuum of a small table, not of this one (a
    // tenth of it is 9,700).
    tokio::time::sleep(Duration::from_millis(500)).await;
    claim_and_finish(&store, 3_000, 500, false).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        vacuums(&pool).await,
        first,
        "no second vacuum before a tenth of the table is dead"
    );
    // Past a tenth, it vacuums again.
    claim_and_finish(&store, 2_500, 500, false).await;
    assert!(vacuumed_after(&pool, first).await, "the second vacuum ran");
}
