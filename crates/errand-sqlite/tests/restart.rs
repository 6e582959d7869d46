//! Nothing is lost across a restart: pending tasks run after it, and a task that was running
//! in a process that was killed is reclaimed once its lease lapses.

mod common;

use common::{LEASE, claim, open, task_for};
use errand_core::{
    CompleteResult, Completion, LEASE_EXPIRED, ManualClock, Outcome, SealKey, StatusUpdate, Store,
    TaskState,
};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_tasks_run_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("errand.db");
    let clock = Arc::new(ManualClock::new());
    let key = SealKey::generate();

    let store = open(&path, clock.clone());
    let alice = task_for("alice", &key);
    let mut keyed = task_for("bob", &key);
    keyed.key = Some("nightly".into());
    let mut delayed = task_for("carol", &key);
    delayed.delay = Some(Duration::from_secs(60));
    let ids = [alice.id, keyed.id, delayed.id];
    store
        .enqueue(vec![alice, keyed, delayed])
        .await
        .expect("enqueue");
    // The process stops without closing the store.
    drop(store);

    let store = open(&path, clock.clone());
    let depth = store.depth().await.expect("depth");
    assert_eq!((depth.waiting, depth.running), (3, 0));
    let mut again = task_for("bob", &key);
    again.key = Some("nightly".into());
    let dedup = store.enqueue(vec![again]).await.expect("enqueue");
    assert!(dedup[0].deduplicated, "the idempotency key survives");
    assert_eq!(dedup[0].id, ids[1]);

    let first = claim(&store, 10).await;
    assert_eq!(
        first.iter().map(|c| c.lease.id).collect::<Vec<_>>(),
        ids[..2],
        "pending tasks are claimable, oldest first"
    );
    clock.advance(Duration::from_secs(61));
    let later = claim(&store, 10).await;
    assert_eq!(later.len(), 1);
    assert_eq!(
        later[0].lease.id, ids[2],
        "the delayed task kept its schedule"
    );
    for c in first.iter().chain(&later) {
        let opened = c
            .context
            .as_ref()
            .expect("context")
            .open(&key.clone().into(), c.seal_binding())
            .expect("opens");
        assert_eq!(opened.user_id(), c.owner.user_id.as_deref());
        assert_eq!(c.attempt, 1);
    }
}

/// Run as a child process by `a_task_running_in_a_killed_process_is_reclaimed`: enqueues one
/// task, claims it, says so, and waits to be killed.
#[tokio::test]
#[ignore = "helper process of a_task_running_in_a_killed_process_is_reclaimed"]
async fn child_claims_then_waits_to_be_killed() {
    let path = std::env::var("ERRAND_SQLITE_CHILD_DB").expect("database path given");
    let key = SealKey::generate();
    let store = open(path.as_ref(), Arc::new(errand_core::SystemClock));
    store
        .enqueue(vec![task_for("alice", &key)])
        .await
        .expect("enqueue");
    let claimed = claim(&store, 1).await;
    assert_eq!(claimed.len(), 1);
    println!("CLAIMED {}", claimed[0].lease.id);
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// Kills the child process if the test fails before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_running_in_a_killed_process_is_reclaimed() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("errand.db");
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "child_claims_then_waits_to_be_killed",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ERRAND_SQLITE_CHILD_DB", &path)
            .stdout(Stdio::piped())
            .spawn()
            .expect("child starts"),
    );
    let stdout = child.0.stdout.take().expect("child stdout");
    // libtest prints the test's name first, on the same line.
    let id: errand_core::TaskId = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| Some(l.split_once("CLAIMED ")?.1.trim().to_string()))
        .expect("the child claimed a task")
        .parse()
        .expect("task id");
    child.0.kill().expect("SIGKILL");
    child.0.wait().expect("child reaped");

    let clock = Arc::new(ManualClock::new());
    let store = open(&path, clock.clone());
    let before = store.get(id).await.expect("get").expect("record");
    assert_eq!((before.status, before.attempt), (TaskState::Running, 1));
    let sealed_before = {
        let raw = rusqlite::Connection::open(&path).expect("raw connection");
        raw.query_row("SELECT context FROM tasks", [], |r| r.get::<_, String>(0))
            .expect("context document")
    };

    assert!(
        claim(&store, 10).await.is_empty(),
        "the lease is still held"
    );
    assert_eq!(store.reap().await.expect("reap").requeued, 0);
    clock.advance(LEASE + Duration::from_secs(1));
    assert_eq!(store.reap().await.expect("reap").requeued, 1);
    let record = store.get(id).await.expect("get").expect("record");
    assert_eq!(record.status, TaskState::Pending);
    assert_eq!(
        record.error.map(|e| e.kind),
        Some(LEASE_EXPIRED.to_string())
    );

    let again = claim(&store, 10).await;
    assert_eq!(again.len(), 1);
    let c = &again[0];
    assert_eq!((c.lease.id, c.attempt), (id, 2));
    assert_eq!(
        c.context.as_ref().map(|s| s.as_str()),
        Some(sealed_before.as_str()),
        "the original context document"
    );
    assert_eq!(c.owner.user_id.as_deref(), Some("alice"));
    let done = store
        .complete(vec![Completion {
            lease: c.lease,
            outcome: Outcome::Success(serde_json::value::to_raw_value(&1).expect("json")),
            report: StatusUpdate::default(),
        }])
        .await
        .expect("complete");
    assert_eq!(done, [CompleteResult::Applied]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_share_the_queue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("errand.db");
    let clock = Arc::new(ManualClock::new());
    let key = SealKey::generate();
    let a = open(&path, clock.clone());
    let b = open(&path, clock.clone());
    let t = task_for("alice", &key);
    let id = t.id;
    a.enqueue(vec![t]).await.expect("enqueue");
    let got = claim(&b, 10).await;
    assert_eq!(got.len(), 1, "the other store claims it");
    assert!(claim(&a, 10).await.is_empty(), "and only once");
    assert_eq!(
        a.get(id).await.expect("get").map(|r| r.status),
        Some(TaskState::Running)
    );
}
