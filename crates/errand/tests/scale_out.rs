//! The scale-out proofs (issue 4): errand's rules hold across processes sharing one Redis.
//!
//! 1. Two API processes and two worker processes behave as one service: status, live events
//!    and isolation cross process boundaries.
//! 2. Workers killed with -9 while they work lose nothing, and no run ever sees another
//!    user; duplicate runs are counted and bounded by what the killed workers held.
//! 3. Redis killed with -9 and restarted mid-run (append-only file, fsync always) loses no
//!    acknowledged enqueue, and the workers resume by themselves.
//! 4. SIGTERM drains a worker: its running tasks finish or go back to the queue without
//!    spending an attempt, and it exits 0 printing its stats.
//!
//! The sizes suit CI; `ERRAND_PROOF_LARGE=1` runs the large sizes (by hand):
//! `ERRAND_PROOF_LARGE=1 cargo test -p errand --test scale_out -- --nocapture`.
//! Each proof prints what it measured on stderr (shown with `--nocapture`).

mod cluster;

use cluster::{
    Api, Backend, Crash, Deployment, PrefixGuard, Proc, REDIS_URL, Restart, Server, Submitter,
    TestRedis, crash_scenario, drain_scenario, errand_worker, read_events, restart_scenario, serve,
    token, unique_name, wait_until,
};
use errand_core::{Client, SealKey, TaskId};
use errand_redis::{RedisConfig, RedisStore};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The entry point of the proof workers: this test binary re-executed with
/// `ERRAND_PROOF_WORKER` set runs a worker here; in a normal test run it returns at once.
#[test]
fn proof_worker_process() {
    cluster::run_proof_worker_if_asked();
}

/// A prefix of the test's own on the shared Redis, cleared when the guard drops.
fn shared_redis(test: &str) -> (Backend, PrefixGuard) {
    let prefix = unique_name(test);
    let guard = PrefixGuard::new(REDIS_URL, &prefix);
    let backend = Backend::Redis {
        url: REDIS_URL.to_string(),
        prefix,
    };
    (backend, guard)
}

// ---------------------------------------------------------------------------------------
// 1. Multi-process.

async fn submit_document(
    http: &reqwest::Client,
    api: &Api,
    token: &str,
    title: &str,
    content: &str,
    delay_s: Option<f64>,
) -> Value {
    let mut body = json!({
        "name": "ingest_document",
        "args": {"title": title, "content": content},
    });
    if let Some(delay) = delay_s {
        body["delay_s"] = json!(delay);
    }
    let response = http
        .post(api.url("/v1/tasks"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("submit");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.json().await.expect("submit answer")
}

async fn get(http: &reqwest::Client, url: String, token: &str) -> (StatusCode, Value) {
    let response = http.get(url).bearer_auth(token).send().await.expect("GET");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The task ids among a search answer's hits.
fn hit_task_ids(answer: &Value) -> HashSet<String> {
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|h| h["task_id"].as_str().expect("task_id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apis_and_two_workers_behave_as_one_service() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (backend, _clear) = shared_redis("multi");
    // A first, so it generates the shared secrets; then B and the workers read them.
    let a = serve("api-a", &backend, None, dir.path(), &data).await;
    let b = serve("api-b", &backend, None, dir.path(), &data).await;
    let mut workers = vec![
        errand_worker("worker-1", &backend, None, dir.path(), &data, 4).await,
        errand_worker("worker-2", &backend, None, dir.path(), &data, 4).await,
    ];
    let alice = token(&data, "alice");
    let bob = token(&data, "bob");
    let http = reqwest::Client::new();
    let word = format!("otter{:08x}", rand::random::<u32>());

    // Submitted to A with a delay, so B's event stream is open before any worker runs it.
    let submitted = submit_document(
        &http,
        &a,
        &alice,
        "Field notes",
        &format!("Sea {word}s sleep holding hands.\n\nThe {word} uses rocks as tools."),
        Some(3.0),
    )
    .await;
    assert_eq!(submitted["status"], "scheduled", "{submitted}");
    let id = submitted["id"].as_str().expect("id").to_string();
    let events = http
        .get(b.url(&format!("/v1/tasks/{id}/events")))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("open the event stream on B");
    assert_eq!(events.status(), StatusCode::OK);
    let stream = tokio::spawn(read_events(events, Duration::from_secs(60)));

    // B knows the task A took.
    let (status, record) = get(&http, b.url(&format!("/v1/tasks/{id}")), &alice).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["id"], id.as_str());
    assert_eq!(record["owner"]["user_id"], "alice");

    // Isolation and 404s hold in both processes.
    let unknown = TaskId::new().to_string();
    for api in [&a, &b] {
        for path in [format!("/v1/tasks/{id}"), format!("/v1/tasks/{id}/events")] {
            let (status, _) = get(&http, api.url(&path), &bob).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "bob reads alice's {path}");
        }
        let cancel = http
            .post(api.url(&format!("/v1/tasks/{id}/cancel")))
            .bearer_auth(&bob)
            .send()
            .await
            .expect("cancel");
        assert_eq!(
            cancel.status(),
            StatusCode::NOT_FOUND,
            "bob cancels alice's task"
        );
        let (status, _) = get(&http, api.url(&format!("/v1/tasks/{unknown}")), &alice).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "an unknown id");
        let (_, listing) = get(&http, api.url("/v1/tasks"), &bob).await;
        assert!(
            !listing.to_string().contains(&id),
            "bob's listing shows alice's task: {listing}"
        );
        let (_, listing) = get(&http, api.url("/v1/tasks"), &alice).await;
        assert!(
            listing.to_string().contains(&id),
            "alice's listing: {listing}"
        );
    }

    // B's stream saw every change, through the final one.
    let events = stream.await.expect("the event reader");
    let statuses: Vec<&str> = events
        .iter()
        .map(|r| r["status"].as_str().expect("status"))
        .fold(Vec::new(), |mut seen, s| {
            if seen.last() != Some(&s) {
                seen.push(s);
            }
            seen
        });
    assert_eq!(
        statuses,
        ["scheduled", "running", "success"],
        "the states B's stream saw"
    );
    let last = events.last().expect("a final event");
    for api in [&a, &b] {
        let (_, record) = get(&http, api.url(&format!("/v1/tasks/{id}")), &alice).await;
        assert_eq!(record["status"], "success");
        assert_eq!(
            record["result"], last["result"],
            "the final event is the record"
        );
        let steps: Vec<(&str, &str)> = record["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or(""),
                    s["status"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            steps,
            [
                ("chunk", "success"),
                ("embed", "success"),
                ("index", "success"),
                ("freshness", "success")
            ]
        );
    }
    // It ran on exactly one of the worker processes (the APIs run no workers).
    let ran_on: Vec<&str> = workers
        .iter()
        .filter(|w| w.log().contains(&id))
        .map(Proc::name)
        .collect();
    assert_eq!(ran_on.len(), 1, "the task ran on {ran_on:?}");

    // More documents, from both users through both APIs: each user's search, on either API,
    // finds that user's documents only.
    let extra = cluster::sized(20, 200);
    let shared = format!("heron{:08x}", rand::random::<u32>());
    let mut owned: HashMap<&str, HashSet<String>> = HashMap::new();
    owned.entry("alice").or_default().insert(id.clone());
    for i in 0..extra {
        let (user, token) = if i % 2 == 0 {
            ("alice", &alice)
        } else {
            ("bob", &bob)
        };
        let api = if i % 4 < 2 { &a } else { &b };
        let answer = submit_document(
            &http,
            api,
            token,
            &format!("doc {i}"),
            &format!("The {shared} of {user} wades in the reeds, note {i}."),
            None,
        )
        .await;
        owned
            .entry(user)
            .or_default()
            .insert(answer["id"].as_str().expect("id").to_string());
    }
    for (user, token) in [("alice", &alice), ("bob", &bob)] {
        for task in &owned[user] {
            let url = b.url(&format!("/v1/tasks/{task}"));
            wait_until(
                &format!("{user}'s task {task} to succeed"),
                Duration::from_secs(60),
                || async {
                    let (_, record) = get(&http, url.clone(), token).await;
                    assert!(
                        matches!(
                            record["status"].as_str(),
                            Some("pending" | "running" | "success")
                        ),
                        "{record}"
                    );
                    (record["status"] == "success").then_some(())
                },
            )
            .await;
        }
    }
    for api in [&a, &b] {
        for (user, token) in [("alice", &alice), ("bob", &bob)] {
            let (status, found) = get(
                &http,
                api.url(&format!("/v1/search?q={shared}&limit=100")),
                token,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{found}");
            let hits = hit_task_ids(&found);
            assert!(!hits.is_empty(), "{user} finds their documents");
            assert!(
                hits.is_subset(&owned[user]),
                "{user}'s search shows someone else's documents"
            );
        }
        let (_, found) = get(&http, api.url(&format!("/v1/search?q={word}")), &alice).await;
        assert_eq!(hit_task_ids(&found), HashSet::from([id.clone()]));
        let (_, found) = get(&http, api.url(&format!("/v1/search?q={word}")), &bob).await;
        assert!(
            hit_task_ids(&found).is_empty(),
            "bob finds alice's document"
        );
    }
    let per_worker: Vec<(String, usize)> = workers
        .iter()
        .map(|w| {
            let log = w.log();
            let ran = owned
                .values()
                .flatten()
                .filter(|t| log.contains(t.as_str()))
                .count();
            (w.name().to_string(), ran)
        })
        .collect();

    // Both kinds of process stop gracefully on SIGTERM.
    for worker in &mut workers {
        worker.terminate();
        let status = worker.wait_exit(Duration::from_secs(30)).await;
        assert!(status.success(), "{} exited {status}", worker.name());
        let stats: Value = serde_json::from_str(
            worker
                .stdout()
                .last()
                .expect("the worker printed its stats"),
        )
        .expect("stats JSON");
        assert_eq!(stats["status"], "completed", "{stats}");
    }
    for mut api in [a, b] {
        api.proc.terminate();
        let status = api.proc.wait_exit(Duration::from_secs(30)).await;
        assert!(status.success(), "{} exited {status}", api.proc.name());
    }
    eprintln!(
        "multi-process proof: 2 APIs, 2 workers, {} documents, tasks per worker {per_worker:?}, \
         events seen {statuses:?}, {:.1}s",
        extra + 1,
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// 2. Crash.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_with_sigkill_lose_nothing_and_never_mix_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (backend, _clear) = shared_redis("crash");
    let key = SealKey::generate();
    let store = backend.open().await;
    let submitter = Submitter::client(Client::new(store.clone(), key.clone()), 200);
    let deployment = Deployment {
        backend: &backend,
        key: &key,
        submitter,
        store,
        dir: dir.path(),
    };
    let plan = Crash {
        tasks: cluster::sized(2_000, 20_000),
        concurrency: 4,
        prefetch: 8,
        sleep_ms: 10..=50,
        drain_within: Duration::from_secs(cluster::sized(180, 900)),
    };
    crash_scenario(
        "crash proof (Redis, 200 users, prefetch 8)",
        deployment,
        plan,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// 3. Restart of Redis.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_loses_no_acknowledged_enqueue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut redis = TestRedis::start(dir.path()).await;
    let (url, prefix) = (redis.url(), unique_name("restart"));
    // The test's client fails fast while Redis is down.
    let store = Arc::new(
        RedisStore::connect(
            &url,
            RedisConfig::default()
                .prefix(&prefix)
                .connect_timeout(Duration::from_millis(500))
                .response_timeout(Duration::from_secs(1))
                .reconnect_delay(Duration::from_millis(50), Duration::from_millis(500)),
        )
        .await
        .expect("connect to the test Redis"),
    );
    let backend = Backend::Redis { url, prefix };
    let key = SealKey::generate();
    let deployment = Restart {
        backend: &backend,
        key: &key,
        submitter: Submitter::client(Client::new(store.clone(), key.clone()), 50),
        store,
        others: Vec::new(),
        dir: dir.path(),
    };
    let rounds = cluster::sized(1, 3);
    let per_phase = cluster::sized(100, 1_000);
    let restarted =
        restart_scenario(Server::Redis(&mut redis), deployment, rounds, per_phase).await;
    eprintln!("{}", restarted.summary("restart proof (Redis, kill -9)"));
}

// ---------------------------------------------------------------------------------------
// 4. Graceful shutdown.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_worker_without_losing_or_spending_attempts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (backend, _clear) = shared_redis("drain");
    drain_scenario(
        "shutdown proof (Redis, prefetch 4)",
        &backend,
        dir.path(),
        4,
    )
    .await;
}
