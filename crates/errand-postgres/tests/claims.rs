//! Claims from many processes at once: each task is claimed by exactly one of them (rows
//! another claim holds are skipped, not waited for nor taken twice).

mod common;

use common::{TempDb, claim_request};
use errand_core::{NewTask, Store, SystemClock, TaskId};
use std::collections::HashSet;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_take_each_task_once() {
    let db = TempDb::new().await;
    let stores = [
        db.store(Arc::new(SystemClock)).await,
        db.store(Arc::new(SystemClock)).await,
    ];
    let args = serde_json::value::to_raw_value(&serde_json::json!({})).expect("JSON");
    let tasks: Vec<NewTask> = (0..2000).map(|_| NewTask::new("t", args.clone())).collect();
    let ids: HashSet<TaskId> = tasks.iter().map(|t| t.id).collect();
    stores[0].enqueue(tasks).await.expect("enqueue");
    let claimers: Vec<_> = (0..8)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store.claim(&claim_request(37)).await.expect("claim");
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.iter().map(|c| c.lease.id));
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for c in claimers {
        claimed.extend(c.await.expect("joined"));
    }
    let unique: HashSet<TaskId> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), unique.len(), "no task was claimed twice");
    assert_eq!(unique, ids, "every task was claimed");
}

/// Sequential scans of the hot table and of the watchers' table so far, as the statistics say
/// once every backend has reported (a backend reports at the end of a transaction at most once
/// a second).
async fn seq_scans(pool: &sqlx_postgres::PgPool, store: &errand_postgres::PostgresStore) -> i64 {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    store.ping().await.expect("ping");
    sqlx_core::query_scalar::query_scalar(
        "SELECT sum(coalesce(seq_scan, 0))::bigint FROM pg_stat_user_tables \
         WHERE schemaname = 'errand' AND relname IN ('tasks', 'watching')",
    )
    .fetch_one(pool)
    .await
    .expect("statistics")
}

/// The worker's steady state (`finish_and_claim`) is planned once per session, at its first
/// call, which often finds the hot table empty; that plan must still walk the indexes once the
/// table holds thousands of rows (and thousands of status pages are watched), not scan the
/// tables whole for every batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_state_planned_on_an_empty_table_never_scans_it_whole() {
    let db = TempDb::new().await;
    let config = errand_postgres::PostgresConfig {
        // One session: the one that planned on the empty table runs every call after.
        max_connections: 1,
        ..errand_postgres::PostgresConfig::default()
    };
    let store = errand_postgres::PostgresStore::connect(&db.url, config)
        .await
        .expect("store opens");
    let (_, none) = store
        .complete_and_claim(Vec::new(), &claim_request(10))
        .await
        .expect("first call, on an empty table");
    assert!(none.is_empty());
    let args = serde_json::value::to_raw_value(&serde_json::json!({})).expect("JSON");
    for _ in 0..10 {
        let tasks: Vec<NewTask> = (0..2000).map(|_| NewTask::new("t", args.clone())).collect();
        store.enqueue(tasks).await.expect("enqueue");
    }
    let stats = db.pool().await;
    sqlx_core::query::query(
        "INSERT INTO errand.watching (task_id, watcher, until) \
         SELECT gen_random_uuid(), 'elsewhere', now() + interval '1 hour' \
         FROM generate_series(1, 5000)",
    )
    .execute(&stats)
    .await
    .expect("watchers of other tasks");
    let before = seq_scans(&stats, &store).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        let completions = held
            .drain(..)
            .map(|c: errand_core::Claimed| errand_core::Completion {
                lease: c.lease,
                outcome: errand_core::Outcome::Success(
                    serde_json::value::to_raw_value(&serde_json::json!(null)).expect("JSON"),
                ),
                report: errand_core::StatusUpdate::default(),
            })
            .collect();
        let (_, claimed) = store
            .complete_and_claim(completions, &claim_request(10))
            .await
            .expect("finish and claim");
        assert_eq!(claimed.len(), 10);
        held = claimed;
    }
    let after = seq_scans(&stats, &store).await;
    assert_eq!(
        after - before,
        0,
        "20 batches over 20,000 tasks and 5,000 watchers scanned a table whole {} times",
        after - before
    );
    // What keeps the scans off also inflates the plan's estimated cost past the point where
    // PostgreSQL compiles a statement (JIT), which would cost more than the statement itself.
    let settings: Vec<String> = sqlx_core::query_scalar::query_scalar(
        "SELECT unnest(proconfig) FROM pg_proc WHERE proname = 'finish_and_claim' \
         AND pronamespace = 'errand'::regnamespace",
    )
    .fetch_all(&stats)
    .await
    .expect("the function's settings");
    assert!(
        settings.iter().any(|s| s == "jit=off"),
        "finish_and_claim runs without JIT: {settings:?}"
    );
}
