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
    Api, PrefixGuard, Proc, REDIS_URL, Record, RunEnd, RunLine, TestRedis, WorkerSpec,
    errand_worker, printed_stats, process_exists, read_events, read_runs, serve,
    spawn_proof_worker, token, unique_prefix, wait_until,
};
use errand_core::{Client, SealKey, Store, TaskId, TaskState};
use errand_redis::{RedisConfig, RedisStore};
use futures::StreamExt;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The entry point of the proof workers: this test binary re-executed with
/// `ERRAND_PROOF_WORKER` set runs a worker here; in a normal test run it returns at once.
#[test]
fn proof_worker_process() {
    cluster::run_proof_worker_if_asked();
}

/// A store client of the test itself, on `prefix`.
async fn store_on(url: &str, prefix: &str) -> Arc<RedisStore> {
    Arc::new(
        RedisStore::connect(url, RedisConfig::default().prefix(prefix))
            .await
            .expect("connect to Redis"),
    )
}

/// Every task's record, fetched 32 at a time; panics on an unknown id. A read that finds Redis
/// unreachable (just restarted, or slow under the test's load) is tried again for 30 s.
async fn records(store: &Arc<RedisStore>, ids: &[TaskId]) -> Vec<errand_core::TaskRecord> {
    futures::stream::iter(ids.iter().copied())
        .map(|id| {
            let store = store.clone();
            async move {
                let mut tries = 0;
                let found = loop {
                    match store.get(id).await {
                        Err(e) if e.is_unavailable() && tries < 300 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => break other.expect("read a record"),
                    }
                };
                found.unwrap_or_else(|| panic!("task {id} is unknown to the store"))
            }
        })
        .buffered(32)
        .collect()
        .await
}

/// Tasks whose record is not `success`, as `(id, status)`.
async fn not_successful(store: &Arc<RedisStore>, ids: &[TaskId]) -> Vec<(TaskId, TaskState)> {
    records(store, ids)
        .await
        .into_iter()
        .filter(|r| r.status != TaskState::Success)
        .map(|r| (r.id, r.status))
        .collect()
}

/// Waits until every task in `ids` is `success`; panics if one ends otherwise.
async fn wait_all_successful(store: &Arc<RedisStore>, ids: &[TaskId], within: Duration) {
    wait_until("every task to succeed", within, || async {
        let pending = not_successful(store, ids).await;
        let ended_badly: Vec<_> = pending.iter().filter(|(_, s)| s.is_terminal()).collect();
        assert!(
            ended_badly.is_empty(),
            "tasks ended other than success: {ended_badly:?}"
        );
        pending.is_empty().then_some(())
    })
    .await;
}

/// What the results log says about a set of submitted tasks.
#[derive(Debug)]
struct Runs {
    /// Runs that slept their full time.
    done: usize,
    /// Runs whose token fired first.
    interrupted: usize,
    /// Submitted tasks with no finished run.
    never_ran: Vec<TaskId>,
    /// Runs that saw a user (or credential) other than their submitter's.
    mismatches: usize,
    /// Finished runs beyond the first of each task.
    duplicates: usize,
    /// The processes whose finished runs were repeated by another run, with how many.
    repeated_by_pid: HashMap<u32, usize>,
    /// Lines of tasks the test never got an acknowledgement for.
    unacknowledged: usize,
}

/// Reads the results log against `submitted` (task → the user it was submitted for).
fn tally(log: &std::path::Path, submitted: &HashMap<TaskId, String>) -> (Runs, Vec<RunLine>) {
    let lines = read_runs(log);
    let mut done: HashMap<TaskId, Vec<&RunLine>> = HashMap::new();
    let mut runs = Runs {
        done: 0,
        interrupted: 0,
        never_ran: Vec::new(),
        mismatches: 0,
        duplicates: 0,
        repeated_by_pid: HashMap::new(),
        unacknowledged: 0,
    };
    for line in &lines {
        match submitted.get(&line.task) {
            Some(user) if *user != line.submitted_for => runs.mismatches += 1,
            Some(_) if line.saw_another_user() => runs.mismatches += 1,
            Some(_) => {}
            None => {
                runs.unacknowledged += 1;
                if line.saw_another_user() {
                    runs.mismatches += 1;
                }
            }
        }
        match line.end {
            RunEnd::Done => {
                runs.done += 1;
                done.entry(line.task).or_default().push(line);
            }
            RunEnd::Interrupted => runs.interrupted += 1,
        }
    }
    for id in submitted.keys() {
        match done.get(id) {
            None => runs.never_ran.push(*id),
            Some(finished) if finished.len() > 1 => {
                runs.duplicates += finished.len() - 1;
                // The log is in write order: every finished run but the last was repeated.
                for line in &finished[..finished.len() - 1] {
                    *runs.repeated_by_pid.entry(line.pid).or_default() += 1;
                }
            }
            Some(_) => {}
        }
    }
    (runs, lines)
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
    let prefix = unique_prefix("multi");
    let _clear = PrefixGuard::new(REDIS_URL, &prefix);
    // A first, so it generates the shared secrets; then B and the workers read them.
    let a = serve("api-a", REDIS_URL, &prefix, dir.path(), &data).await;
    let b = serve("api-b", REDIS_URL, &prefix, dir.path(), &data).await;
    let mut workers = vec![
        errand_worker("worker-1", REDIS_URL, &prefix, dir.path(), &data, 4).await,
        errand_worker("worker-2", REDIS_URL, &prefix, dir.path(), &data, 4).await,
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
    let started = Instant::now();
    let tasks = cluster::sized(2_000, 20_000);
    let users = 200;
    let concurrency = 4;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs.log");
    let prefix = unique_prefix("crash");
    let _clear = PrefixGuard::new(REDIS_URL, &prefix);
    let key = SealKey::generate();
    let spec = WorkerSpec::new(REDIS_URL, &prefix, &key, concurrency, &log);
    let store = store_on(REDIS_URL, &prefix).await;
    let client = Client::new(store.clone(), key);

    let mut spawned = 0;
    let mut workers = Vec::new();
    for _ in 0..3 {
        spawned += 1;
        workers.push(spawn_proof_worker(&format!("worker-{spawned}"), &spec, dir.path()).await);
    }
    let mut pids: Vec<u32> = workers.iter().map(Proc::pid).collect();

    // Submit while the workers run (and are being killed).
    let submitter = tokio::spawn(async move {
        futures::stream::iter(0..tasks)
            .map(|i| {
                let client = client.clone();
                async move {
                    let user = format!("user-{}", i % users);
                    let sleep_ms = rand::rng().random_range(10..=50);
                    let task = Record {
                        sleep_ms,
                        submitted_for: user.clone(),
                    };
                    let enqueued = client
                        .submit(task)
                        .context(Record::context(&user))
                        // Each kill spends an attempt of what the killed worker held.
                        .max_attempts(10)
                        .await
                        .expect("submit");
                    (enqueued.id, user)
                }
            })
            .buffer_unordered(16)
            .collect::<HashMap<TaskId, String>>()
            .await
    });

    // About once a second, kill -9 a random worker and start a fresh one in its place,
    // until every task has left the queues.
    let mut killed = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(cluster::sized(180, 900));
    loop {
        let pause = rand::rng().random_range(800..=1200);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let depth = store.depth().await.expect("depth");
        if submitter.is_finished() && depth.waiting + depth.running == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tasks did not drain in time: {depth:?}"
        );
        let victim = rand::rng().random_range(0..workers.len());
        workers[victim].kill9();
        killed.insert(workers[victim].pid());
        spawned += 1;
        workers[victim] = spawn_proof_worker(&format!("worker-{spawned}"), &spec, dir.path()).await;
        pids.push(workers[victim].pid());
    }
    let submitted = submitter.await.expect("the submitter");
    let drained = started.elapsed();
    let ids: Vec<TaskId> = submitted.keys().copied().collect();
    wait_all_successful(&store, &ids, Duration::from_secs(60)).await;
    let attempts: Vec<u32> = records(&store, &ids)
        .await
        .iter()
        .map(|r| r.attempt)
        .collect();
    let reclaimed = attempts.iter().filter(|a| **a > 1).count();
    let max_attempt = attempts.iter().copied().max().unwrap_or(0);
    drop(workers);
    let survivors: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| process_exists(*p))
        .collect();
    assert!(
        survivors.is_empty(),
        "worker processes survived: {survivors:?}"
    );

    let (runs, _) = tally(&log, &submitted);
    let kills = killed.len();
    let by_killed: usize = runs
        .repeated_by_pid
        .iter()
        .filter(|(pid, _)| killed.contains(pid))
        .map(|(_, n)| n)
        .sum();
    eprintln!(
        "crash proof: {tasks} tasks, {users} users, 3 workers x {concurrency}, {kills} kills \
         ({spawned} worker processes in all), {} runs finished, {} interrupted, {} duplicates \
         ({by_killed} repeating runs of killed workers, most from one worker {}), bound {}, \
         user mismatches {}, {reclaimed} tasks reclaimed from killed workers (highest \
         attempt {max_attempt}), drained in {:.1}s",
        runs.done,
        runs.interrupted,
        runs.duplicates,
        runs.repeated_by_pid.values().max().unwrap_or(&0),
        kills * concurrency,
        runs.mismatches,
        drained.as_secs_f64(),
    );
    assert!(
        kills >= 1 && reclaimed >= 1,
        "no worker was killed while it held tasks: the proof proved nothing"
    );
    assert!(
        runs.never_ran.is_empty(),
        "tasks never ran: {:?}",
        runs.never_ran
    );
    assert_eq!(runs.mismatches, 0, "runs saw another user");
    assert_eq!(runs.unacknowledged, 0, "runs of tasks nobody submitted");
    assert!(
        runs.duplicates <= kills * concurrency,
        "{} duplicates exceed what {kills} killed workers of {concurrency} held",
        runs.duplicates
    );
    assert_eq!(
        by_killed, runs.duplicates,
        "only the runs of killed workers are repeated: {:?} (killed {killed:?})",
        runs.repeated_by_pid
    );
}

// ---------------------------------------------------------------------------------------
// 3. Restart of Redis.

/// How long the test Redis stays down: longer than the workers' 2 s lease.
const OUTAGE: Duration = Duration::from_secs(3);

/// Worker processes of the restart proof, and tasks each runs at once.
const RESTART_WORKERS: usize = 2;
const RESTART_CONCURRENCY: usize = 4;

/// What a run of the Redis restart scenario measured.
struct Restarted {
    /// Acknowledged enqueues.
    acknowledged: usize,
    /// Enqueues refused while Redis was down.
    refused: u64,
    /// When Redis was killed and when it answered again, in seconds from the start.
    outages: Vec<(f64, f64)>,
    /// What the results log says.
    runs: Runs,
    /// The whole scenario.
    took: Duration,
}

/// Two proof workers on a Redis of the test's own; enqueues without pause while Redis is
/// killed with -9 `rounds` times, kept down for [`OUTAGE`] and started again on its append-only
/// file. Asserts that no acknowledged enqueue was lost, that every acknowledged task
/// succeeded with its submitter's user, and that the same two worker processes did it all.
async fn redis_restart_scenario(rounds: usize, per_phase: usize) -> Restarted {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut redis = TestRedis::start(dir.path()).await;
    let url = redis.url();
    let log = dir.path().join("runs.log");
    let prefix = unique_prefix("restart");
    let key = SealKey::generate();
    let spec = WorkerSpec::new(&url, &prefix, &key, RESTART_CONCURRENCY, &log);
    let mut workers = Vec::new();
    for n in 1..=RESTART_WORKERS {
        workers.push(spawn_proof_worker(&format!("worker-{n}"), &spec, dir.path()).await);
    }
    let pids: Vec<u32> = workers.iter().map(Proc::pid).collect();
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

    // Enqueue without pause for the whole run; keep the id (and time) of every acknowledged
    // enqueue.
    let acked = Arc::new(Mutex::new(HashMap::<TaskId, (String, Instant)>::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let enqueuer = tokio::spawn({
        let client = Client::new(store.clone(), key);
        let (acked, refused, stop) = (acked.clone(), refused.clone(), stop.clone());
        async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let user = format!("user-{}", i % 50);
                i += 1;
                let task = Record {
                    sleep_ms: rand::rng().random_range(10..=50),
                    submitted_for: user.clone(),
                };
                match client
                    .submit(task)
                    .context(Record::context(&user))
                    .max_attempts(10)
                    .await
                {
                    Ok(enqueued) => {
                        acked
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(enqueued.id, (user, Instant::now()));
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    });
    let acked_count = || acked.lock().unwrap_or_else(|p| p.into_inner()).len();

    let mut outages = Vec::new();
    for round in 0..rounds {
        let target = acked_count() + per_phase;
        wait_until(
            &format!("{per_phase} acknowledged enqueues (round {round})"),
            Duration::from_secs(60),
            || async { (acked_count() >= target).then_some(()) },
        )
        .await;
        let refused_before = refused.load(Ordering::Relaxed);
        let down = Instant::now();
        redis.kill9();
        // Down longer than a lease, so the running tasks' leases lapse too, and until the
        // enqueuer has felt it.
        wait_until(
            "enqueues to be refused while Redis is down",
            Duration::from_secs(30),
            || async {
                (refused.load(Ordering::Relaxed) >= refused_before + 3 && down.elapsed() >= OUTAGE)
                    .then_some(())
            },
        )
        .await;
        redis.restart().await;
        let seconds = |d: Duration| (d.as_secs_f64() * 100.0).round() / 100.0;
        outages.push((
            seconds(down.duration_since(started)),
            seconds(started.elapsed()),
        ));
    }
    let target = acked_count() + per_phase;
    wait_until(
        "acknowledged enqueues after the last restart",
        Duration::from_secs(60),
        || async { (acked_count() >= target).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    enqueuer.await.expect("the enqueuer");
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let ids: Vec<TaskId> = acked.keys().copied().collect();
    // Every acknowledged task is still known: say when the lost ones were acknowledged.
    let mut lost = Vec::new();
    for (id, (_, at)) in &acked {
        if store.get(*id).await.expect("read a record").is_none() {
            lost.push(at.duration_since(started).as_secs_f64());
        }
    }
    lost.sort_by(f64::total_cmp);
    assert!(
        lost.is_empty(),
        "{} acknowledged enqueues were lost, acknowledged at {lost:?} s; Redis was down \
         (killed, back) at {outages:?} s",
        lost.len()
    );
    wait_all_successful(&store, &ids, Duration::from_secs(120)).await;

    // The same worker processes did all of it: none was restarted, none died.
    for worker in &mut workers {
        assert!(
            worker.is_running(),
            "{} died:\n{}",
            worker.name(),
            worker.log_tail()
        );
    }
    assert_eq!(workers.iter().map(Proc::pid).collect::<Vec<_>>(), pids);
    let submitted: HashMap<TaskId, String> = acked
        .into_iter()
        .map(|(id, (user, _))| (id, user))
        .collect();
    let (runs, _) = tally(&log, &submitted);
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "no enqueue was refused: Redis was never down"
    );
    assert!(
        runs.never_ran.is_empty(),
        "acknowledged tasks never ran: {:?}",
        runs.never_ran
    );
    assert_eq!(runs.mismatches, 0, "runs saw another user");
    for mut worker in workers {
        worker.terminate();
        let status = worker.wait_exit(Duration::from_secs(30)).await;
        assert!(status.success(), "{} exited {status}", worker.name());
    }
    Restarted {
        acknowledged: ids.len(),
        refused: refused.load(Ordering::Relaxed),
        outages,
        runs,
        took: started.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_loses_no_acknowledged_enqueue() {
    let rounds = cluster::sized(1, 3);
    let r = redis_restart_scenario(rounds, cluster::sized(100, 1_000)).await;
    eprintln!(
        "restart proof: {} acknowledged enqueues, {} refused while Redis was down, {rounds} \
         kill -9 and restarts (killed, back at {:?} s), {} runs finished ({} duplicates; \
         the workers held at most {} tasks when Redis went down; {} of tasks whose enqueue \
         was not acknowledged), user mismatches {}, {:.1}s",
        r.acknowledged,
        r.refused,
        r.outages,
        r.runs.done,
        r.runs.duplicates,
        RESTART_WORKERS * RESTART_CONCURRENCY,
        r.runs.unacknowledged,
        r.runs.mismatches,
        r.took.as_secs_f64()
    );
    // An outage longer than the lease can make the tasks held at that moment run again, and
    // nothing else: finished attempts keep their lease until their result is written.
    let held = RESTART_WORKERS * RESTART_CONCURRENCY;
    assert!(
        r.runs.duplicates <= rounds * held,
        "{} duplicate runs exceed the {held} tasks held at each of {rounds} outages",
        r.runs.duplicates
    );
}

// ---------------------------------------------------------------------------------------
// 4. Graceful shutdown.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_worker_without_losing_or_spending_attempts() {
    let started = Instant::now();
    let concurrency = 4;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs.log");
    let prefix = unique_prefix("drain");
    let _clear = PrefixGuard::new(REDIS_URL, &prefix);
    let key = SealKey::generate();
    let mut spec = WorkerSpec::new(REDIS_URL, &prefix, &key, concurrency, &log);
    spec.drain_ms = 1_000;
    let store = store_on(REDIS_URL, &prefix).await;
    let client = Client::new(store.clone(), key);
    let mut first = spawn_proof_worker("worker-1", &spec, dir.path()).await;

    // Tasks of 1 to 3 s, each allowed one attempt only: a handed-back task that spent its
    // attempt could never run again.
    let sleeps =
        [1_000, 3_000, 1_000, 3_000, 2_000, 1_500, 2_500, 2_000].repeat(cluster::sized(1, 4));
    let mut submitted = HashMap::new();
    for (i, sleep_ms) in sleeps.iter().enumerate() {
        let user = format!("user-{i}");
        let task = Record {
            sleep_ms: *sleep_ms,
            submitted_for: user.clone(),
        };
        let enqueued = client
            .submit(task)
            .context(Record::context(&user))
            .max_attempts(1)
            .await
            .expect("submit");
        submitted.insert(enqueued.id, user);
    }
    let ids: Vec<TaskId> = submitted.keys().copied().collect();
    wait_until(
        "the worker to run a full set of tasks",
        Duration::from_secs(30),
        || async {
            let depth = store.depth().await.expect("depth");
            (depth.running as usize == concurrency).then_some(())
        },
    )
    .await;

    first.terminate();
    let status = first.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "the worker exited {status}:\n{}",
        first.log_tail()
    );
    let stats = printed_stats(&first).expect("the worker printed its stats");
    // Nothing is left running: each task finished, or waits again with its attempt given back.
    for record in records(&store, &ids).await {
        match record.status {
            TaskState::Success => assert_eq!(record.attempt, 1),
            TaskState::Pending => assert_eq!(record.attempt, 0, "{record:?}"),
            other => panic!("task {} is {other} after the worker stopped", record.id),
        }
    }

    let mut second = spawn_proof_worker("worker-2", &spec, dir.path()).await;
    wait_all_successful(&store, &ids, Duration::from_secs(60)).await;
    second.terminate();
    let status = second.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "the second worker exited {status}");

    let (runs, lines) = tally(&log, &submitted);
    let handed_back = lines
        .iter()
        .filter(|l| l.end == RunEnd::Interrupted && l.pid == first.pid())
        .count();
    let finished_first = lines
        .iter()
        .filter(|l| l.end == RunEnd::Done && l.pid == first.pid())
        .count();
    eprintln!(
        "shutdown proof: {} tasks, {} running at SIGTERM, {finished_first} finished by the \
         stopping worker, {handed_back} handed back and run again by the next, stats {stats:?}, \
         {:.1}s",
        ids.len(),
        stats.running_at_shutdown,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(stats.status, "timeout", "some tasks outlast the drain");
    assert_eq!(stats.running_at_shutdown as usize, concurrency);
    assert!(stats.released >= 1, "no task was handed back: {stats:?}");
    assert_eq!(stats.released as usize, handed_back);
    assert_eq!(stats.succeeded as usize, finished_first);
    assert_eq!(stats.claimed, stats.succeeded + stats.released);
    assert_eq!((stats.failed, stats.retried, stats.lost), (0, 0, 0));
    assert!(
        runs.never_ran.is_empty(),
        "tasks never ran: {:?}",
        runs.never_ran
    );
    assert_eq!(runs.duplicates, 0, "a task finished twice");
    assert_eq!(runs.mismatches, 0, "runs saw another user");
    assert!(
        lines.iter().all(|l| l.attempt == 1),
        "an attempt was spent: {lines:?}"
    );
    for record in records(&store, &ids).await {
        assert_eq!(record.attempt, 1, "{record:?}");
    }
}
