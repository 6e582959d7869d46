//! Failures give clear errors naming the file and the cause, never a panic or a hang.

mod common;

use common::{open, task_for};
use errand_core::{ManualClock, SealKey, Store, StoreError};
use errand_sqlite::{SqliteConfig, SqliteError, SqliteStore};
use std::sync::Arc;
use std::time::Duration;

fn config(busy: Duration) -> SqliteConfig {
    SqliteConfig {
        busy_timeout: busy,
        ..SqliteConfig::default()
    }
}

#[test]
fn a_directory_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let path = file.join("data").join("errand.db");
    let err = SqliteStore::open(&path, SqliteConfig::default()).expect_err("cannot open");
    assert!(matches!(err, SqliteError::CreateDir { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("Not a directory"), "{message}");
    let store_error = StoreError::from(err);
    assert!(store_error.is_unavailable(), "{store_error}");
}

#[test]
fn a_directory_in_place_of_the_file_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = SqliteStore::open(dir.path(), SqliteConfig::default()).expect_err("a directory");
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
}

#[test]
fn a_corrupt_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("errand.db");
    std::fs::write(&path, vec![0x5a_u8; 8192]).expect("write garbage");
    let err = SqliteStore::open(&path, SqliteConfig::default()).expect_err("garbage");
    assert!(matches!(err, SqliteError::Corrupt { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("not a database"), "{message}");
}

#[test]
fn another_applications_database_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("app.db");
    rusqlite::Connection::open(&path)
        .expect("raw connection")
        .execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        .expect("their schema");
    let err = SqliteStore::open(&path, SqliteConfig::default()).expect_err("foreign");
    assert!(matches!(err, SqliteError::Foreign { .. }), "{err:?}");
    assert!(err.to_string().contains("another application"), "{err}");
}

#[test]
fn a_database_locked_while_it_needs_creating_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("errand.db");
    let holder = rusqlite::Connection::open(&path).expect("raw connection");
    holder
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("exclusive lock");
    let err = SqliteStore::open(&path, config(Duration::from_millis(100))).expect_err("locked");
    assert!(matches!(err, SqliteError::Locked { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("locked"), "{message}");
    holder.execute_batch("ROLLBACK").expect("unlock");
    SqliteStore::open(&path, SqliteConfig::default()).expect("opens once the lock is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_write_lock_makes_writes_unavailable_not_stuck() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("errand.db");
    let key = SealKey::generate();
    let store = SqliteStore::open(&path, config(Duration::from_millis(200))).expect("opens");
    let first = task_for("alice", &key);
    let first_id = first.id;
    store.enqueue(vec![first]).await.expect("enqueue");

    // Another process holds the write lock for a long time.
    let holder = rusqlite::Connection::open(&path).expect("raw connection");
    holder
        .execute_batch("BEGIN IMMEDIATE; UPDATE tasks SET updated_at = updated_at")
        .expect("write lock");

    let began = std::time::Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        store.enqueue(vec![task_for("alice", &key)]),
    )
    .await
    .expect("answers instead of hanging")
    .expect_err("cannot write while locked");
    assert!(err.is_unavailable(), "{err}");
    let message = err.to_string();
    assert!(message.contains("locked"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        began.elapsed() >= Duration::from_millis(150),
        "waited the busy timeout"
    );

    // Readers are not blocked by a writer in WAL mode, and a second store opens.
    assert!(store.get(first_id).await.expect("get").is_some());
    store.ping().await.expect("ping");
    SqliteStore::open(&path, config(Duration::from_millis(200))).expect("opens while locked");

    holder.execute_batch("ROLLBACK").expect("unlock");
    let again = store
        .enqueue(vec![task_for("alice", &key)])
        .await
        .expect("writes work again once the lock is gone");
    assert!(!again[0].deduplicated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_answers_unavailable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = SealKey::generate();
    let store = open(&dir.path().join("errand.db"), Arc::new(ManualClock::new()));
    let t = task_for("alice", &key);
    let id = t.id;
    store.enqueue(vec![t]).await.expect("enqueue");
    let clone = store.clone();
    store.close().await;
    let calls = async {
        let write = clone.enqueue(vec![task_for("bob", &key)]).await;
        let claim = common::claim_result(&clone).await;
        let read = clone.get(id).await;
        let ping = clone.ping().await;
        (write, claim, read, ping)
    };
    let (write, claim, read, ping) = tokio::time::timeout(Duration::from_secs(10), calls)
        .await
        .expect("answers instead of hanging");
    for err in [
        write.expect_err("write"),
        claim.expect_err("claim"),
        read.expect_err("read"),
        ping.expect_err("ping"),
    ] {
        assert!(err.is_unavailable(), "{err}");
        assert!(err.to_string().contains("errand.db"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_enqueue_stores_none_of_its_tasks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = SealKey::generate();
    let store = open(&dir.path().join("errand.db"), Arc::new(ManualClock::new()));
    let first = task_for("alice", &key);
    let mut duplicate = task_for("alice", &key);
    duplicate.id = first.id;
    store.enqueue(vec![first]).await.expect("enqueue");
    let fresh = task_for("alice", &key);
    let fresh_id = fresh.id;
    let err = store
        .enqueue(vec![fresh, duplicate])
        .await
        .expect_err("an id that exists is refused");
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    // A server may show an Invalid message to its client: no path, no SQL.
    let message = err.to_string();
    for private in [
        "errand.db",
        &dir.path().display().to_string(),
        "UNIQUE",
        "tasks.id",
    ] {
        assert!(!message.contains(private), "{private} in {message}");
    }
    assert!(
        store.get(fresh_id).await.expect("get").is_none(),
        "the whole call is undone, not just the bad task"
    );
    assert_eq!(store.depth().await.expect("depth").waiting, 1);
}
