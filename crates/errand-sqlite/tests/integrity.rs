//! The SQLite file is not trusted with identity: a queued task whose stored owner, context or
//! arguments were edited in the file fails its attempt (`context_integrity`) and never runs;
//! neither the identity nor the credential is in clear in the file. Also: the file and its
//! directory are private, and a database of schema version 1 upgrades with its running tasks
//! handed out again under new lease tokens.

mod common;

use common::{LEASE, claim};
use errand_core::conformance::{Victims, tampered_contexts_never_run};
use errand_core::{ManualClock, SealKey, Store, TaskId};
use errand_sqlite::{SqliteConfig, SqliteStore};
use rusqlite::params;
use std::path::Path;
use std::sync::Arc;

fn sql(path: &Path, statement: &str, id: TaskId, other: Option<TaskId>) {
    let conn = rusqlite::Connection::open(path).expect("open the file directly");
    let other = other.map(|o| o.as_uuid().as_bytes().to_vec());
    let changed = conn
        .execute(statement, params![&id.as_uuid().as_bytes()[..], other])
        .expect("tamper");
    assert_eq!(changed, 1, "{statement}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_edited_in_the_file_never_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("errand.db");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&path, SqliteConfig::default()).expect("opens"));
    tampered_contexts_never_run(store, async |v: Victims| {
        let file = std::fs::read(&path).expect("read the file");
        let wal = std::fs::read(dir.path().join("errand.db-wal")).unwrap_or_default();
        for bytes in [&file, &wal] {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                !text.contains("secret-token-of"),
                "no credential in clear at rest"
            );
            assert!(
                !text.contains("corr-alice\""),
                "the sealed context hides its ids"
            );
        }
        // Someone with write access to the file moves, swaps, rewrites and strips contexts.
        let moved = "UPDATE tasks SET user_id = 'mallory' WHERE id = ?1 AND ?2 IS NULL";
        sql(&path, moved, v.owner_moved, None);
        let pasted =
            "UPDATE tasks SET context = (SELECT context FROM tasks WHERE id = ?2) WHERE id = ?1";
        sql(&path, pasted, v.context_pasted, Some(v.bob));
        let args = "UPDATE tasks SET args = '{\"n\":77}' WHERE id = ?1 AND ?2 IS NULL";
        sql(&path, args, v.args_changed, None);
        let stripped = "UPDATE tasks SET context = NULL WHERE id = ?1 AND ?2 IS NULL";
        sql(&path, stripped, v.context_stripped, None);
    })
    .await;
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_directory_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let path = data.join("errand.db");
    let store = SqliteStore::open(&path, SqliteConfig::default()).expect("opens");
    store
        .enqueue(vec![common::task_for("alice", &SealKey::generate())])
        .await
        .expect("enqueue");
    let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for file in ["errand.db", "errand.db-wal", "errand.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
}

#[tokio::test]
async fn a_version_1_database_upgrades_and_its_running_tasks_get_new_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("errand.db");
    let id = TaskId::new();
    {
        let conn = rusqlite::Connection::open(&path).expect("create");
        conn.execute_batch(include_str!("../sql/migrations/0001_init.sql"))
            .expect("version 1 schema");
        conn.pragma_update(None, "user_version", 1)
            .expect("version");
        conn.pragma_update(None, "application_id", 0x6572_7264)
            .expect("application id");
        conn.execute(
            "INSERT INTO tasks (id, name, queue, status, created_at, updated_at, attempt,
                 max_attempts, timeout_ms, ttl_us, fence, lease_until, args)
             VALUES (?1, 'test', 'default', 'running', 0, 0, 1, 3, 1000, 1000000, 4, 1, '{}')",
            [&id.as_uuid().as_bytes()[..]],
        )
        .expect("a task running under version 1");
    }
    let clock = Arc::new(ManualClock::new());
    let store = common::open(&path, clock.clone());
    // The old lease (a counter) matches no token: nobody holds it; the reaper hands it out.
    let reaped = store.reap().await.expect("reap");
    assert_eq!(reaped.requeued, 1);
    let claimed = claim(&store, 10).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].lease.id, claimed[0].attempt), (id, 2));
    let held = store
        .heartbeat(&[claimed[0].lease], LEASE)
        .await
        .expect("heartbeat");
    assert_eq!(held, [errand_core::LeaseState::Held]);
}
