//! What the store answers for data it cannot read or store: `Corrupt` and `Invalid`, never a
//! panic.

mod common;

use common::TempDb;
use errand_core::{NewTask, Store, StoreError, SystemClock};
use sqlx_core::query::query;
use std::sync::Arc;

fn task() -> NewTask {
    NewTask::new(
        "t",
        serde_json::value::to_raw_value(&serde_json::json!({})).expect("JSON"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_edited_into_nonsense_is_corrupt() {
    let db = TempDb::new().await;
    let store = db.store(Arc::new(SystemClock)).await;
    let id = store.enqueue(vec![task()]).await.expect("enqueue")[0].id;
    let pool = db.pool().await;
    for edit in [
        "history = '{\"not\": \"a list\"}'",
        "history = '[]', status = 'lost'",
    ] {
        query(&format!("UPDATE errand.tasks SET {edit} WHERE id = $1"))
            .bind(id.as_uuid())
            .execute(&pool)
            .await
            .expect("edit");
        let read = store.get(id).await;
        assert!(
            matches!(read, Err(StoreError::Corrupt(_))),
            "{edit}: {read:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_postgres_cannot_hold_is_an_invalid_request() {
    let db = TempDb::new().await;
    let store = db.store(Arc::new(SystemClock)).await;
    let mut bad = task();
    bad.key = Some("nul\0byte".into());
    let stored = store.enqueue(vec![bad]).await;
    assert!(matches!(stored, Err(StoreError::Invalid(_))), "{stored:?}");
    // The store goes on.
    assert_eq!(store.enqueue(vec![task()]).await.expect("enqueue").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_lose_commits_are_warned_about() {
    let db = TempDb::new().await;
    let name = db.url.rsplit('/').next().expect("name").to_string();
    let pool = db.pool().await;
    let mut seen = Vec::new();
    for setting in ["on", "off"] {
        query(&format!(
            "ALTER DATABASE {name} SET synchronous_commit = {setting}"
        ))
        .execute(&pool)
        .await
        .expect("alter");
        // The store's new sessions see it.
        let store = db.store(Arc::new(SystemClock)).await;
        let warnings = store.warnings().await.expect("warnings");
        seen.push(
            warnings
                .iter()
                .any(|w| w.contains("synchronous_commit is off")),
        );
    }
    assert_eq!(seen, [false, true]);
}
