//! Finished records disappear once their TTL passes, and a purge deletes their rows.

mod common;

use common::{claim, open, task_for};
use errand_core::{
    Completion, ErrorInfo, ListQuery, ManualClock, Outcome, Owner, OwnerFilter, SealKey,
    StatusUpdate, Store,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn rows(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .expect("raw connection")
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .expect("count")
}

fn done(lease: errand_core::Lease, outcome: Outcome) -> Completion {
    Completion {
        lease,
        outcome,
        report: StatusUpdate::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_records_are_hidden_then_purged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("errand.db");
    let clock = Arc::new(ManualClock::new());
    let store = open(&path, clock.clone());
    let key = SealKey::generate();
    let mut short = task_for("alice", &key);
    short.ttl = Duration::from_secs(60);
    let mut long = task_for("alice", &key);
    long.ttl = Duration::from_secs(600);
    let waiting = task_for("alice", &key);
    let (short_id, long_id, waiting_id) = (short.id, long.id, waiting.id);
    store
        .enqueue(vec![short, long, waiting])
        .await
        .expect("enqueue");
    let c = claim(&store, 2).await;
    let failure = ErrorInfo {
        message: "no".into(),
        kind: "test".into(),
        details: None,
        retryable: false,
    };
    store
        .complete(vec![
            done(
                c[0].lease,
                Outcome::Success(serde_json::value::to_raw_value(&1).expect("json")),
            ),
            done(c[1].lease, Outcome::Failed(failure)),
        ])
        .await
        .expect("complete");

    clock.advance(Duration::from_secs(61));
    assert!(store.get(short_id).await.expect("get").is_none(), "expired");
    assert!(store.get(long_id).await.expect("get").is_some());
    let alice = OwnerFilter::Owner(Owner::new("alice", Some("acme".into())));
    let listed: Vec<_> = store
        .list(&ListQuery::owner(alice.clone()))
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, [waiting_id, long_id], "listings hide it too");
    assert_eq!(rows(&path), 3, "hidden, not yet deleted");

    assert_eq!(store.purge_expired().await.expect("purge"), 1);
    assert_eq!(rows(&path), 2);
    assert_eq!(store.purge_expired().await.expect("purge"), 0);

    clock.advance(Duration::from_secs(600));
    assert_eq!(store.purge_expired().await.expect("purge"), 1);
    assert_eq!(rows(&path), 1, "only the task that never finished is left");
    assert!(store.get(waiting_id).await.expect("get").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_purge_deletes_everything_expired() {
    const TASKS: usize = 12_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("errand.db");
    let clock = Arc::new(ManualClock::new());
    let store = open(&path, clock.clone());
    let key = SealKey::generate();
    let tasks = (0..TASKS).map(|i| {
        let mut t = task_for(&format!("u{}", i % 10), &key);
        t.ttl = Duration::from_secs(60);
        t
    });
    store.enqueue(tasks.collect()).await.expect("enqueue");
    loop {
        let c = claim(&store, 1000).await;
        if c.is_empty() {
            break;
        }
        let ok = || Outcome::Success(serde_json::value::to_raw_value(&()).expect("json"));
        store
            .complete(c.iter().map(|c| done(c.lease, ok())).collect())
            .await
            .expect("complete");
    }
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        store.purge_expired().await.expect("purge"),
        TASKS as u64,
        "purged in several chunks, all of them"
    );
    assert_eq!(rows(&path), 0);
}
