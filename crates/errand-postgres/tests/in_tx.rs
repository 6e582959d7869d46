//! Enqueueing inside the caller's transaction: a rollback or a crash before the commit leaves
//! no task, a commit makes it run (a real worker claims it) with the caller's context, and an
//! idempotency key holds across concurrent transactions.

mod common;

use common::TempDb;
use errand_core::{
    Client, Context, ListQuery, OwnerFilter, Registry, SealKey, Store, Submit, SystemClock, Task,
    TaskCx, TaskError, TaskId, TaskState, Worker,
};
use errand_postgres::{PostgresStore, SubmitInTx};
use sqlx_core::executor::Executor;
use sqlx_core::query::query;
use sqlx_core::raw_sql::raw_sql;
use sqlx_core::row::Row;
use sqlx_postgres::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// Says who it ran for.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Invoice {
    order: String,
}

impl Task for Invoice {
    const NAME: &'static str = "invoice";
    type Output = serde_json::Value;
    async fn run(self, cx: TaskCx) -> Result<serde_json::Value, TaskError> {
        Ok(serde_json::json!({
            "order": self.order,
            "user": cx.user_id(),
            "request": cx.context().and_then(|c| c.request_id().map(String::from)),
        }))
    }
}

/// `client`'s submission of the invoice of `order`, for alice.
fn invoice<'a>(client: &'a Client, order: &str) -> Submit<'a> {
    client
        .submit(Invoice {
            order: order.into(),
        })
        .context(alice())
}

fn alice() -> Context {
    Context::builder()
        .user_id("alice")
        .tenant("acme")
        .request_id("req-42")
        .build()
}

struct Setup {
    db: TempDb,
    store: PostgresStore,
    client: Client,
    key: SealKey,
    /// The service's own pool, with its `orders` table.
    service: PgPool,
}

async fn setup() -> Setup {
    let db = TempDb::new().await;
    let store = db.store(Arc::new(SystemClock)).await;
    let key = SealKey::generate();
    let client = Client::new(Arc::new(store.clone()), key.clone());
    let service = db.pool().await;
    service
        .execute(raw_sql(
            "CREATE TABLE orders (id uuid PRIMARY KEY, total bigint NOT NULL)",
        ))
        .await
        .expect("the service's table");
    Setup {
        db,
        store,
        client,
        key,
        service,
    }
}

async fn tasks_stored(store: &PostgresStore) -> usize {
    let mut all = ListQuery::owner(OwnerFilter::Any);
    all.limit = 1000;
    store.list(&all).await.expect("list").items.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_leaves_no_task() {
    let s = setup().await;
    let mut tx = s.service.begin().await.expect("begin");
    let order = uuid::Uuid::now_v7();
    let queued = invoice(&s.client, &order.to_string())
        .in_tx(&mut tx)
        .await
        .expect("enqueue in the transaction");
    assert!(
        s.store.get(queued.id).await.expect("get").is_none(),
        "invisible before the commit"
    );
    tx.rollback().await.expect("rollback");
    assert!(s.store.get(queued.id).await.expect("get").is_none());
    assert_eq!(tasks_stored(&s.store).await, 0);
    let counts = s.store.counts(&OwnerFilter::Any).await.expect("counts");
    assert_eq!(counts.total(), 0, "the counters rolled back with it");
    drop(s.db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_runs_the_task_with_the_callers_context() {
    let s = setup().await;
    let mut registry = Registry::new();
    registry.register::<Invoice>().expect("register");
    let worker = Worker::new(Arc::new(s.store.clone()), Arc::new(registry), s.key.clone()).start();
    let order = uuid::Uuid::now_v7();
    let mut tx = s.service.begin().await.expect("begin");
    query("INSERT INTO orders (id, total) VALUES ($1, 1200)")
        .bind(order)
        .execute(&mut *tx)
        .await
        .expect("the service's own write");
    let queued = invoice(&s.client, &order.to_string())
        .in_tx(&mut tx)
        .await
        .expect("enqueue in the transaction");
    tx.commit().await.expect("commit");
    let record = finished(&s.store, queued.id).await;
    assert_eq!(record.status, TaskState::Success, "{:?}", record.error);
    let result: serde_json::Value =
        serde_json::from_str(record.result.expect("result").get()).expect("JSON");
    assert_eq!(
        result,
        serde_json::json!({"order": order.to_string(), "user": "alice", "request": "req-42"})
    );
    assert_eq!(record.owner.user_id.as_deref(), Some("alice"));
    let stats = worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.succeeded, 1);
    drop(s.db);
}

async fn finished(store: &PostgresStore, id: TaskId) -> errand_core::TaskRecord {
    for _ in 0..1000 {
        if let Some(r) = store.get(id).await.expect("get")
            && r.status.is_terminal()
        {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("task {id} did not finish within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_commit_leaves_nothing() {
    let s = setup().await;
    let mut tx = s.service.begin().await.expect("begin");
    let pid: i32 = query("SELECT pg_backend_pid()")
        .fetch_one(&mut *tx)
        .await
        .expect("pid")
        .get(0);
    let queued = invoice(&s.client, "o-1")
        .key("order-1")
        .in_tx(&mut tx)
        .await
        .expect("enqueue in the transaction");
    // The service's process dies: its session ends without a commit.
    let admin = s.db.pool().await;
    let killed: bool = query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&admin)
        .await
        .expect("terminate")
        .get(0);
    assert!(killed);
    assert!(tx.commit().await.is_err(), "the session is gone");
    assert!(s.store.get(queued.id).await.expect("get").is_none());
    assert_eq!(tasks_stored(&s.store).await, 0);
    // The key was never taken.
    let again = invoice(&s.client, "o-1")
        .key("order-1")
        .await
        .expect("submit");
    assert!(!again.deduplicated);
    drop(s.db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idempotency_key_holds_across_transactions() {
    let s = setup().await;
    let submit = |client: Client, service: PgPool| async move {
        let mut tx = service.begin().await.expect("begin");
        let queued = invoice(&client, "o-7")
            .key("order-7")
            .in_tx(&mut tx)
            .await
            .expect("enqueue in the transaction");
        (queued, tx)
    };
    let (first, tx1) = submit(s.client.clone(), s.service.clone()).await;
    // The second transaction's insert waits for the first to end.
    let second = tokio::spawn(submit(s.client.clone(), s.service.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!second.is_finished(), "waits for the first transaction");
    tx1.commit().await.expect("commit the first");
    let (second, tx2) = second.await.expect("joined");
    tx2.commit().await.expect("commit the second");
    assert!(!first.deduplicated);
    assert!(second.deduplicated);
    assert_eq!(second.id, first.id);
    assert_eq!(tasks_stored(&s.store).await, 1);
    drop(s.db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_another_store_is_refused() {
    let s = setup().await;
    let memory = Client::new(Arc::new(errand_core::MemoryStore::new()), s.key.clone());
    let mut tx = s.service.begin().await.expect("begin");
    let refused = invoice(&memory, "o-9").in_tx(&mut tx).await;
    assert!(
        matches!(
            refused,
            Err(errand_core::SubmitError::Store(
                errand_core::StoreError::Invalid(_)
            ))
        ),
        "{refused:?}"
    );
    drop(s.db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_racing_a_transaction_for_its_key_comes_back_without_it() {
    let s = setup().await;
    let first = invoice(&s.client, "o-3")
        .key("order-3")
        .await
        .expect("submit");
    let by = errand_core::Owner::new("operator", None);
    s.store.cancel(first.id, &by).await.expect("cancel");
    // A transaction takes the key, and has not committed when the retry wants it back.
    let mut tx = s.service.begin().await.expect("begin");
    let second = invoice(&s.client, "o-3")
        .key("order-3")
        .in_tx(&mut tx)
        .await
        .expect("enqueue in the transaction");
    let store = s.store.clone();
    let retry = tokio::spawn(async move { store.retry(first.id, &by).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.commit().await.expect("commit");
    let retried = retry.await.expect("joined").expect("retry");
    assert!(
        matches!(retried, errand_core::RetryOutcome::Requeued(_)),
        "{retried:?}"
    );
    let again = invoice(&s.client, "o-3")
        .key("order-3")
        .await
        .expect("submit");
    assert_eq!(
        again.id, second.id,
        "the key stayed with the committed task"
    );
    assert_eq!(tasks_stored(&s.store).await, 2);
    drop(s.db);
}
