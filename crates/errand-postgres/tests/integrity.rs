//! Postgres is not trusted with identity: a queued task whose stored owner, context or
//! arguments were edited in the database fails its attempt (`context_integrity`) and never
//! runs; neither the identity nor the credential is stored in clear.

mod common;

use common::TempDb;
use errand_core::conformance::{Victims, tampered_contexts_never_run};
use errand_core::{Store, SystemClock, TaskId};
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_postgres::PgPool;
use std::sync::Arc;

async fn edit(pool: &PgPool, statement: &str, id: TaskId, other: Option<TaskId>) {
    let done = query(statement)
        .bind(id.as_uuid())
        .bind(other.map(|o| *o.as_uuid()))
        .execute(pool)
        .await
        .expect("tamper");
    assert_eq!(done.rows_affected(), 1, "{statement}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_edited_in_the_database_never_run() {
    let db = TempDb::new().await;
    let store: Arc<dyn Store> = Arc::new(db.store(Arc::new(SystemClock)).await);
    let pool = db.pool().await;
    tampered_contexts_never_run(store, async |v: Victims| {
        let everything: String = query("SELECT string_agg(t::text, ' ') FROM errand.tasks t")
            .fetch_one(&pool)
            .await
            .expect("read the table")
            .get(0);
        assert!(everything.contains(&v.bob.to_string()), "the rows were read");
        assert!(
            !everything.contains("secret-token-of"),
            "no credential in clear at rest"
        );
        assert!(
            !everything.contains("corr-alice\""),
            "the sealed context hides its ids"
        );
        // Someone with write access to the database moves, swaps, rewrites and strips
        // contexts.
        let moved = "UPDATE errand.tasks SET user_id = 'mallory' WHERE id = $1 AND $2::uuid IS NULL";
        edit(&pool, moved, v.owner_moved, None).await;
        let pasted = "UPDATE errand.tasks SET context = (SELECT context FROM errand.tasks WHERE id = $2) WHERE id = $1";
        edit(&pool, pasted, v.context_pasted, Some(v.bob)).await;
        let args = "UPDATE errand.tasks SET args = '{\"n\":77}' WHERE id = $1 AND $2::uuid IS NULL";
        edit(&pool, args, v.args_changed, None).await;
        let stripped = "UPDATE errand.tasks SET context = NULL WHERE id = $1 AND $2::uuid IS NULL";
        edit(&pool, stripped, v.context_stripped, None).await;
    })
    .await;
    drop(db);
}
