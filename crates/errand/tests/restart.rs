//! Stops of `errand serve`, abrupt and graceful: nothing is lost.
//!
//! - SIGKILL with tasks pending: after a restart on the same data directory every task runs,
//!   for its original owner.
//! - SIGKILL with a task running: after a restart it is claimed again once its lease lapses.
//! - SIGTERM (and Ctrl-C): running tasks finish within the drain timeout, the process exits 0
//!   and logs the worker's statistics; past the drain timeout, unfinished tasks are handed back
//!   without spending an attempt. A SIGTERM right after the ready line is graceful too.

mod common;

use common::{Api, Serve, document, steps, tempdir};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// Ids of the tasks `api` can list in `status`.
async fn ids_in(api: &Api, status: &str) -> Vec<String> {
    let (code, page) = api
        .get(&format!("/v1/tasks?status={status}&limit=1000"))
        .await;
    assert!(code.is_success(), "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

/// Polls until `api` lists at least `n` tasks in `status`.
async fn wait_for_count(api: &Api, status: &str, n: usize) {
    let deadline = Instant::now() + common::DEADLINE;
    loop {
        let ids = ids_in(api, status).await;
        if ids.len() >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} tasks became {status}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A config file with a short lease, so a crashed worker's task is reclaimed quickly.
fn short_lease_config(dir: &Path) -> String {
    let path = dir.join("short-lease.toml");
    std::fs::write(&path, "lease = \"2s\"\n").expect("write the config file");
    path.to_string_lossy().into_owned()
}

/// The JSON log lines of `stderr` whose message is `message`.
fn logged(stderr: &str, message: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_tasks_survive_a_kill_9_and_run_for_their_owners_after_restart() {
    let dir = tempdir();
    let mut api_only = Serve::start(dir.path(), &["--workers", "0"]);
    let (alice, bob, root) = tokio::join!(
        api_only.user("alice", None),
        api_only.user("bob", Some("acme")),
        api_only.admin("root"),
    );
    let mut submitted: Vec<(String, &str)> = Vec::new();
    for i in 0..25 {
        let doc = alice
            .ingest(
                &format!("Report {i}"),
                &format!("Quarterly report {i} mentions the word survivor."),
            )
            .await;
        submitted.push((doc, "alice"));
        let chat = bob
            .persist(&format!("chat-{i}"), &[("user", &format!("message {i}"))])
            .await;
        submitted.push((chat, "bob"));
    }
    assert_eq!(ids_in(&root, "pending").await.len(), 50, "nothing runs yet");
    api_only.kill9();

    // The same data directory, with workers; the tokens minted before still work.
    let server = Serve::start(dir.path(), &[]);
    let (alice, bob, root) = (
        alice.with_base(&server.base),
        bob.with_base(&server.base),
        root.with_base(&server.base),
    );
    wait_for_count(&root, "success", 50).await;
    for (id, user) in &submitted {
        let record = root.record(id).await;
        assert_eq!(record["status"], "success", "{record}");
        assert_eq!(record["owner"]["user_id"], *user, "{record}");
        assert_eq!(record["attempt"], 1, "{record:#}");
    }
    let (_, found) = alice.get("/v1/search?q=survivor&limit=100").await;
    assert_eq!(
        found["results"].as_array().map(Vec::len),
        Some(25),
        "{found}"
    );
    let (_, found) = bob.get("/v1/search?q=survivor").await;
    assert_eq!(found["results"], json!([]), "bob has no documents");
    for i in [0, 24] {
        let (_, chat) = bob.get(&format!("/v1/conversations/chat-{i}")).await;
        assert_eq!(chat["messages"][0]["content"], format!("message {i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_running_at_a_kill_9_is_reclaimed_once_its_lease_lapses() {
    let dir = tempdir();
    let config = short_lease_config(dir.path());
    let args = ["--config", config.as_str(), "--workers", "1"];
    let mut first = Serve::start(dir.path(), &args);
    let alice = first.user("alice", None).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let content = document(600_000, &format!("lighthouse{i}"));
        ids.push(alice.ingest(&format!("Ledger {i}"), &content).await);
    }
    // Killed early in a document's run, so it is surely still running.
    let deadline = Instant::now() + common::DEADLINE;
    loop {
        let (_, page) = alice.get("/v1/tasks?status=running").await;
        let early = page["items"].as_array().into_iter().flatten().any(|r| {
            let progress = &r["progress"];
            progress.is_null()
                || progress["current"].as_u64().unwrap_or(0) * 2
                    < progress["total"].as_u64().unwrap_or(0)
        });
        if early {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no document was seen early in its run"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill9();

    // Without workers nothing reaps: the record shows what the kill left behind.
    let look = Serve::start(dir.path(), &["--config", &config, "--workers", "0"]);
    let alice = alice.with_base(&look.base);
    let running = ids_in(&alice, "running").await;
    assert_eq!(
        running.len(),
        1,
        "one task was running when the process was killed"
    );
    let was_running = running[0].clone();
    assert_eq!(alice.record(&was_running).await["attempt"], 1);
    drop(look);

    let server = Serve::start(dir.path(), &args);
    let alice = alice.with_base(&server.base);
    for id in &ids {
        let record = alice.wait_done(id).await;
        assert_eq!(record["status"], "success", "{record:#}");
        assert_eq!(record["owner"]["user_id"], "alice");
        assert!(record["error"].is_null(), "{record:#}");
        assert!(steps(&record).iter().all(|(_, s)| s == "success"));
        let expected = if *id == was_running { 2 } else { 1 };
        assert_eq!(record["attempt"], expected, "{record:#}");
    }
    let (_, found) = alice.get("/v1/search?q=lighthouse0").await;
    assert_eq!(
        found["results"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_tasks_finish_exits_0_and_logs_the_stats() {
    let dir = tempdir();
    let mut server = Serve::start(dir.path(), &["--log-format", "json"]);
    let alice = server.user("alice", None).await;
    for i in 0..3 {
        let id = alice.ingest(&format!("Small {i}"), "A few words.").await;
        assert_eq!(alice.wait_done(&id).await["status"], "success");
    }
    let long = alice.ingest("Long", &document(600_000, "drain")).await;
    alice
        .wait_for(&long, "running", |r| r["status"] == "running")
        .await;

    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    let logs = server.stderr();
    let stopped = logged(&logs, "worker stopped");
    assert_eq!(stopped.len(), 1, "{logs}");
    let stats = &stopped[0]["fields"];
    assert_eq!(stats["status"], "completed", "{stats}");
    assert_eq!(stats["succeeded"], 4, "{stats}");
    assert_eq!(stats["running_at_shutdown"], 1, "{stats}");
    assert_eq!(stats["released"], 0, "{stats}");
    assert_eq!(logged(&logs, "errand stopped").len(), 1, "{logs}");

    // The running task finished before the process exited.
    let after = Serve::start(dir.path(), &["--workers", "0"]);
    let record = alice.with_base(&after.base).record(&long).await;
    assert_eq!(record["status"], "success", "{record:#}");
    assert_eq!(record["attempt"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_drain_timeout_a_running_task_is_handed_back_without_spending_an_attempt() {
    let dir = tempdir();
    let args = ["--log-format", "json", "--drain-timeout", "10ms"];
    let mut server = Serve::start(dir.path(), &args);
    let alice = server.user("alice", None).await;
    // Signalled while it embeds its chunks, the task stops at the next one.
    let long = alice.ingest("Long", &document(900_000, "handback")).await;
    alice
        .wait_for(&long, "embedding", |r| {
            steps(r).iter().any(|(n, s)| n == "embed" && s == "running")
        })
        .await;

    // Ctrl-C is a graceful shutdown too.
    let status = server.signal("INT");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    let logs = server.stderr();
    let stopped = logged(&logs, "worker stopped");
    assert_eq!(stopped.len(), 1, "{logs}");
    let stats = &stopped[0]["fields"];
    assert_eq!(stats["status"], "timeout", "{stats}");
    assert_eq!(stats["released"], 1, "{stats}");

    let look = Serve::start(dir.path(), &["--workers", "0"]);
    let record = alice.with_base(&look.base).record(&long).await;
    assert_eq!(record["status"], "pending", "{record:#}");
    assert_eq!(
        record["attempt"], 0,
        "the attempt was not spent: {record:#}"
    );
    drop(look);

    let server = Serve::start(dir.path(), &[]);
    let record = alice.with_base(&server.base).wait_done(&long).await;
    assert_eq!(record["status"], "success", "{record:#}");
    assert_eq!(record["attempt"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_right_after_the_ready_line_is_a_graceful_shutdown() {
    // The signal handlers are in place before `serve` and `worker` say they are ready, so
    // even an immediate SIGTERM ends with exit 0 and the worker's statistics, never with the
    // signal's default action. Several rounds, since the window it guards is small.
    let dir = tempdir();
    for _ in 0..8 {
        let mut server = Serve::start(dir.path(), &[]);
        let status = server.terminate();
        assert_eq!(status.code(), Some(0), "{status}\n{}", server.stderr());
        assert!(server.stderr().contains("worker stopped"));
        let mut worker = Serve::builder(dir.path()).worker().start();
        let status = worker.terminate();
        assert_eq!(status.code(), Some(0), "{status}\n{}", worker.stderr());
        assert!(
            worker.stdout().contains("\"status\":\"completed\""),
            "{}",
            worker.stdout()
        );
    }
}
