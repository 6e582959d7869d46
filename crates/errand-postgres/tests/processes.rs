//! Two processes on one database (two stores, each with its own pool and listener): one's
//! enqueues, commits, cancellations and status changes reach the other through
//! LISTEN/NOTIFY; a `poll_only` store never listens and still sees them by polling; finished
//! tasks leave the hot table.

mod common;

use common::{Ping, TempDb, claim_request};
use errand_core::{
    CancelOutcome, Client, CompleteResult, Completion, Context, ListQuery, NewTask, Outcome, Owner,
    OwnerFilter, SealKey, StatusUpdate, Store, SystemClock, TaskState,
};
use errand_postgres::{PostgresConfig, PostgresStore, SubmitInTx};
use futures::StreamExt;
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_postgres::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A store of its own (a process) on `db`, polling every `poll_interval`.
async fn process(db: &TempDb, poll_only: bool, poll_interval: Duration) -> PostgresStore {
    let config = PostgresConfig {
        poll_only,
        poll_interval,
        clock: Arc::new(SystemClock),
        ..PostgresConfig::default()
    };
    PostgresStore::connect(&db.url, config)
        .await
        .expect("store opens")
}

fn task(user: &str, key: &SealKey) -> NewTask {
    let args = serde_json::value::to_raw_value(&serde_json::json!({})).expect("JSON");
    let ctx = Context::builder().user_id(user).build();
    NewTask::new("cross", args)
        .with_context(&ctx, &key.clone().into())
        .expect("seal")
}

/// How long `store`'s idle worker waits (at most 30 s) when `act` runs 100 ms into the wait.
async fn woken_after<F: Future<Output = ()>>(store: &PostgresStore, act: F) -> Duration {
    let mut signal = store
        .work_signal(&["default".into()])
        .await
        .expect("signal");
    signal.wait(Duration::from_millis(50)).await; // the initial wake-up
    let waiter = tokio::spawn(async move {
        let began = Instant::now();
        signal.wait(Duration::from_secs(30)).await;
        began.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    act.await;
    tokio::time::timeout(Duration::from_secs(40), waiter)
        .await
        .expect("the wait ends")
        .expect("joined")
}

/// The first final record `events` delivers, each within 5 s of the one before.
async fn final_event(events: &mut errand_core::EventStream) -> errand_core::TaskRecord {
    loop {
        let r = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event within 5 s")
            .expect("open");
        if r.status.is_terminal() {
            return r;
        }
    }
}

/// Asserts that `b`'s idle worker is woken by `a`'s enqueue within 5 s.
async fn woken_by_enqueue(a: &PostgresStore, b: &PostgresStore, key: &SealKey) {
    let waited = woken_after(b, async {
        a.enqueue(vec![task("alice", key)]).await.expect("enqueue");
    })
    .await;
    assert!(
        waited < Duration::from_secs(5),
        "woken by the other's enqueue: {waited:?}"
    );
}

/// The sessions listening on the database.
async fn listener_pids(pool: &PgPool) -> Vec<i32> {
    query(
        "SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(pool)
    .await
    .expect("activity")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn listeners(pool: &PgPool) -> usize {
    listener_pids(pool).await.len()
}

/// Two processes that poll so rarely that only a notification wakes them within a test,
/// once both listen, and a pool on their database.
async fn two_listening(db: &TempDb) -> (PostgresStore, PostgresStore, PgPool) {
    let slow = Duration::from_secs(60);
    let (a, b) = (
        process(db, false, slow).await,
        process(db, false, slow).await,
    );
    let pool = db.pool().await;
    while listeners(&pool).await < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (a, b, pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_is_woken_and_hears_cancels_and_changes() {
    let db = TempDb::new().await;
    let (a, b, pool) = two_listening(&db).await;
    let key = SealKey::generate();
    woken_by_enqueue(&a, &b, &key).await;

    // A commit of a caller's transaction wakes the enqueuing process itself too.
    let client = Client::new(Arc::new(a.clone()), key.clone());
    let service = pool;
    let waited = woken_after(&a, async {
        let mut tx = service.begin().await.expect("begin");
        client
            .submit(Ping)
            .context(Context::builder().user_id("carol").build())
            .in_tx(&mut tx)
            .await
            .expect("in tx");
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.commit().await.expect("commit");
    })
    .await;
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "woken by the commit, not before: {waited:?}"
    );

    let mut cancels = b.cancellations().await.expect("cancellations");
    let claimed = a.claim(&claim_request(1)).await.expect("claim");
    let lease = claimed[0].lease;
    let mut events = b.watch(lease.id).await.expect("watch");
    let operator = Owner::new("operator", None);
    assert!(matches!(
        a.cancel(lease.id, &operator).await.expect("cancel"),
        CancelOutcome::Requested(_)
    ));
    let heard = tokio::time::timeout(Duration::from_secs(5), cancels.next())
        .await
        .expect("B hears the cancellation")
        .expect("open");
    assert_eq!(heard, lease.id);
    let ended = a
        .complete(vec![Completion {
            lease,
            outcome: Outcome::Cancelled,
            report: StatusUpdate::default(),
        }])
        .await
        .expect("complete");
    assert_eq!(ended, [CompleteResult::Applied]);
    let last = final_event(&mut events).await;
    assert_eq!(last.status, TaskState::Cancelled);
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_whose_session_died_listens_again() {
    let db = TempDb::new().await;
    let (a, b, pool) = two_listening(&db).await;
    // Both listening sessions die (a failover, an administrator).
    let before = listener_pids(&pool).await;
    query("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid")
        .bind(&before)
        .execute(&pool)
        .await
        .expect("terminate");
    let began = Instant::now();
    loop {
        let now = listener_pids(&pool).await;
        if now.len() == 2 && now.iter().all(|pid| !before.contains(pid)) {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "listening again: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    woken_by_enqueue(&a, &b, &SealKey::generate()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_only_process_never_listens_and_still_sees_changes() {
    let db = TempDb::new().await;
    let pool = db.pool().await;
    let polling = process(&db, true, Duration::from_millis(200)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(listeners(&pool).await, 0, "poll_only never LISTENs");
    let other = process(&db, false, Duration::from_secs(60)).await;
    let key = SealKey::generate();
    let waited = woken_after(&polling, async {
        other
            .enqueue(vec![task("alice", &key)])
            .await
            .expect("enqueue");
    })
    .await;
    assert!(
        waited < Duration::from_secs(2),
        "polled within its interval: {waited:?}"
    );
    let id = polling
        .list(&ListQuery::owner(OwnerFilter::Any))
        .await
        .expect("list")
        .items[0]
        .id;
    let mut events = polling.watch(id).await.expect("watch");
    other
        .cancel(id, &Owner::new("operator", None))
        .await
        .expect("cancel");
    let seen = final_event(&mut events).await;
    assert_eq!(seen.status, TaskState::Cancelled);
    assert_eq!(listeners(&pool).await, 1, "only the other process listens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_tasks_leave_the_hot_table() {
    let db = TempDb::new().await;
    let store = process(&db, false, Duration::from_secs(1)).await;
    let key = SealKey::generate();
    let batch: Vec<NewTask> = (0..50).map(|i| task(&format!("u{i}"), &key)).collect();
    store.enqueue(batch).await.expect("enqueue");
    let claimed = store.claim(&claim_request(100)).await.expect("claim");
    assert_eq!(claimed.len(), 50);
    let done: Vec<Completion> = claimed
        .iter()
        .map(|c| Completion {
            lease: c.lease,
            outcome: Outcome::Success(serde_json::value::to_raw_value(&1).expect("JSON")),
            report: StatusUpdate::default(),
        })
        .collect();
    store.complete(done).await.expect("complete");
    let pool = db.pool().await;
    let rows = |table: &'static str| {
        let pool = pool.clone();
        async move {
            query(&format!("SELECT count(*) FROM errand.{table}"))
                .fetch_one(&pool)
                .await
                .expect("count")
                .get::<i64, _>(0)
        }
    };
    assert_eq!(
        rows("tasks").await,
        0,
        "the hot table holds live tasks only"
    );
    assert_eq!(rows("finished").await, 50);
    let record = store
        .get(claimed[7].lease.id)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(record.status, TaskState::Success);
    let mut all = ListQuery::owner(OwnerFilter::Any);
    all.limit = 100;
    assert_eq!(store.list(&all).await.expect("list").items.len(), 50);
    let counts = store.counts(&OwnerFilter::Any).await.expect("counts");
    assert_eq!((counts.success, counts.total()), (50, 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_announced_only_while_somebody_watches() {
    let db = TempDb::new().await;
    let (a, b, pool) = two_listening(&db).await;
    let mut overheard = sqlx_postgres::PgListener::connect_with(&pool)
        .await
        .expect("listener");
    overheard.listen("errand.errand").await.expect("listen");
    let key = SealKey::generate();
    a.enqueue(vec![task("alice", &key), task("bob", &key)])
        .await
        .expect("enqueue");
    let unwatched = a.claim(&claim_request(1)).await.expect("claim")[0].lease.id;
    let watched = {
        let all = a
            .list(&ListQuery::owner(OwnerFilter::Any))
            .await
            .expect("list");
        all.items
            .iter()
            .find(|r| r.id != unwatched)
            .expect("the other")
            .id
    };
    let events = b.watch(watched).await.expect("watch");
    a.claim(&claim_request(1)).await.expect("claim");
    let mut changes = Vec::new();
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), overheard.recv()).await {
        if n.payload().starts_with('s') {
            changes.push(n.payload().to_string());
        }
    }
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(changes[0].ends_with(&watched.to_string()), "{changes:?}");
    drop(events);
    let registrations = || async {
        query("SELECT count(*) FROM errand.watching")
            .fetch_one(&pool)
            .await
            .expect("count")
            .get::<i64, _>(0)
    };
    let began = Instant::now();
    while registrations().await > 0 {
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "unregistered on drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
