//! The schema: created on open in the configured schema (any name), versioned, migrated once
//! when processes open at the same time, upgraded with the tasks it holds; two schemas in one
//! database are two stores.

mod common;

use common::TempDb;
use errand_core::{ListQuery, NewTask, OwnerFilter, Store, SystemClock};
use errand_postgres::{PostgresConfig, PostgresStore};
use sqlx_core::executor::Executor;
use sqlx_core::query::query;
use sqlx_core::raw_sql::raw_sql;
use sqlx_core::row::Row;
use std::sync::Arc;

async fn open(db: &TempDb, schema: &str) -> PostgresStore {
    let config = PostgresConfig {
        schema: schema.into(),
        clock: Arc::new(SystemClock),
        ..PostgresConfig::default()
    };
    PostgresStore::connect(&db.url, config)
        .await
        .expect("store opens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_opening_at_once_migrate_once_and_schemas_are_apart() {
    let db = TempDb::new().await;
    let odd = "billing \"v2\"";
    let (a, b, other) = tokio::join!(open(&db, odd), open(&db, odd), open(&db, "errand"));
    let pool = db.pool().await;
    let versions: Vec<i32> = query(r#"SELECT version FROM "billing ""v2""".schema_version"#)
        .fetch_all(&pool)
        .await
        .expect("versions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2], "each migration applied once");

    let args = serde_json::value::to_raw_value(&serde_json::json!({})).expect("JSON");
    let id = a
        .enqueue(vec![NewTask::new("t", args)])
        .await
        .expect("enqueue")[0]
        .id;
    assert!(
        b.get(id).await.expect("get").is_some(),
        "one schema, one store"
    );
    assert!(
        other.get(id).await.expect("get").is_none(),
        "another schema"
    );
    let everyone = ListQuery::owner(OwnerFilter::Any);
    assert!(other.list(&everyone).await.expect("list").items.is_empty());
    assert_eq!(
        other
            .counts(&OwnerFilter::Any)
            .await
            .expect("counts")
            .total(),
        0
    );
    drop(a);
    let reopened = open(&db, odd).await;
    assert!(
        reopened.get(id).await.expect("get").is_some(),
        "kept across opens"
    );
}

#[tokio::test]
async fn an_empty_schema_name_is_refused() {
    let db = TempDb::new().await;
    let config = PostgresConfig {
        schema: String::new(),
        ..PostgresConfig::default()
    };
    let err = PostgresStore::connect(&db.url, config)
        .await
        .expect_err("refused");
    assert!(
        matches!(err, errand_postgres::PostgresError::Invalid(_)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_upgrades_with_its_tasks() {
    let db = TempDb::new().await;
    let pool = db.pool().await;
    let v1 = include_str!("../sql/migrations/0001_init.sql").replace("{schema}", "errand");
    pool.execute(raw_sql(&format!(
        "CREATE SCHEMA errand;
         CREATE TABLE errand.schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
         {v1}
         INSERT INTO errand.schema_version (version) VALUES (1);
         INSERT INTO errand.tasks (id, name, queue, status, args, created_at, updated_at, due_at,
             max_attempts, timeout_ms, ttl_ms)
         VALUES ('0190a000-0000-7000-8000-000000000001', 'old', 'default', 'pending', '{{\"n\":1}}',
             now(), now(), now(), 3, 1000, 1000);"
    )))
    .await
    .expect("a version 1 schema with a task");
    let store = open(&db, "errand").await;
    let id: errand_core::TaskId = "0190a000-0000-7000-8000-000000000001".parse().expect("id");
    let old = store.get(id).await.expect("get").expect("kept");
    assert_eq!((old.name.as_str(), old.trace_id.as_deref()), ("old", None));
    assert!(old.attempts.is_empty());
    assert_eq!(old.args.expect("args").get(), r#"{"n":1}"#);
    let claimed = store.claim(&common::claim_request(1)).await.expect("claim");
    assert_eq!(claimed[0].lease.id, id, "and it runs");
}
