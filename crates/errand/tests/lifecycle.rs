//! A task's life through the real binary: a document goes pending → running → success with its
//! steps and progress visible and every change on the event stream; invalid documents fail at
//! the right step with the error in the status; the CLI follows both to the end.

mod common;

use common::{Serve, TERMINAL, document, is_terminal, run, steps, tempdir};
use reqwest::StatusCode;
use serde_json::{Value, json};

const STEPS: [&str; 4] = ["chunk", "embed", "index", "freshness"];

/// The order of the states a task moves through.
fn rank(status: &str) -> usize {
    match status {
        "scheduled" | "pending" => 0,
        "running" => 1,
        s if TERMINAL.contains(&s) => 2,
        other => panic!("unexpected state {other}"),
    }
}

/// The order of the states a step moves through.
fn step_rank(status: &str) -> usize {
    match status {
        "pending" => 0,
        "running" => 1,
        "success" | "failed" | "skipped" => 2,
        other => panic!("unexpected step state {other}"),
    }
}

/// Checks that a stream of records only moves forward: states, steps, progress and times.
fn assert_moves_forward(events: &[Value]) {
    for pair in events.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let at = |r: &Value| {
            chrono::DateTime::parse_from_rfc3339(r["updated_at"].as_str().expect("updated_at"))
                .expect("RFC 3339")
        };
        assert!(at(a) < at(b), "each event is a newer record: {a}\n{b}");
        assert!(
            rank(a["status"].as_str().unwrap_or_default())
                <= rank(b["status"].as_str().unwrap_or_default())
        );
        let (sa, sb) = (steps(a), steps(b));
        if !sa.is_empty() {
            assert_eq!(sa.len(), sb.len(), "steps never disappear");
            for ((na, xa), (nb, xb)) in sa.iter().zip(&sb) {
                assert_eq!(na, nb, "steps keep their order");
                assert!(step_rank(xa) <= step_rank(xb), "step {na}: {xa} then {xb}");
            }
        }
        let current = |r: &Value| r["progress"]["current"].as_u64().unwrap_or(0);
        assert!(current(a) <= current(b), "progress never goes back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_goes_pending_running_success_with_every_change_on_the_event_stream() {
    let dir = tempdir();
    let server = Serve::start(dir.path(), &[]);
    let alice = server.user("alice", None).await;

    // Large enough to run for a while: the stream opens long before it can finish.
    let content = document(600_000, "zanzibar");
    let (status, submitted) = alice
        .post(
            "/v1/tasks",
            &json!({"name": "ingest_document", "args": {"title": "Harbour ledger", "content": content}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    assert_eq!(submitted["status"], "pending");
    let id = submitted["id"].as_str().expect("id").to_string();
    assert_eq!(submitted["status_url"], format!("/v1/tasks/{id}"));
    assert_eq!(submitted["events_url"], format!("/v1/tasks/{id}/events"));
    assert_eq!(submitted["deduplicated"], false);

    let events = alice.events(&id).await;
    assert!(events.len() >= 3, "several changes: {}", events.len());
    assert!(
        !is_terminal(&events[0]),
        "the stream opened before the end: {}",
        events[0]
    );
    assert_moves_forward(&events);
    let running: Vec<&Value> = events.iter().filter(|e| e["status"] == "running").collect();
    assert!(!running.is_empty(), "the stream shows it running");
    assert!(
        running.iter().any(|e| {
            let s = steps(e);
            s.len() == 4 && s.iter().any(|(_, st)| st == "running") && e["progress"].is_object()
        }),
        "a running record shows a step in progress and the progress: {running:#?}"
    );
    assert!(
        running.iter().any(|e| {
            e["progress"]["current"].as_u64() < e["progress"]["total"].as_u64()
                || steps(e).iter().any(|(n, s)| n == "index" && s == "running")
        }),
        "some change happened before the last chunk was embedded"
    );

    // The last event is the final record, the same one GET answers.
    let last = events.last().expect("events");
    assert_eq!(last["status"], "success", "{last:#}");
    let record = alice.record(&id).await;
    let mut without_args = record.clone();
    without_args
        .as_object_mut()
        .expect("an object")
        .remove("args");
    assert_eq!(
        &without_args, last,
        "the last event is the final record (events leave out the args)"
    );
    assert_eq!(
        steps(&record),
        STEPS.map(|s| (s.to_string(), "success".to_string()))
    );
    for step in record["steps"].as_array().expect("steps") {
        assert!(step["started_at"].is_string() && step["completed_at"].is_string());
    }
    let chunks = record["result"]["chunks"].as_u64().expect("result.chunks");
    assert!(chunks > 100, "{}", record["result"]);
    assert!(record["result"]["terms"].as_u64() > Some(10));
    assert_eq!(record["progress"]["current"].as_u64(), Some(chunks));
    assert_eq!(record["progress"]["total"].as_u64(), Some(chunks));
    assert_eq!(record["owner"], json!({"user_id": "alice", "tenant": null}));
    assert_eq!(record["attempt"], 1);
    for time in ["created_at", "started_at", "completed_at", "expires_at"] {
        assert!(record[time].is_string(), "{time}: {record}");
    }

    // The work landed in alice's index.
    let (status, found) = alice.get("/v1/search?q=zanzibar").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["results"][0]["task_id"], id.as_str(), "{found}");

    // A stream opened after the end holds the final record alone.
    assert_eq!(alice.events(&id).await, vec![without_args]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_task_streams_from_scheduled_to_success() {
    let dir = tempdir();
    let server = Serve::start(dir.path(), &[]);
    let alice = server.user("alice", None).await;
    let submitted = alice
        .submit_with(
            "ingest_document",
            json!({"title": "Later", "content": "Otters hold hands while they sleep."}),
            json!({"delay_s": 1}),
        )
        .await;
    assert_eq!(submitted["status"], "scheduled");
    let events = alice.events(submitted["id"].as_str().expect("id")).await;
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(states.first(), Some(&"scheduled"), "{states:?}");
    assert!(states.contains(&"running"), "{states:?}");
    assert_eq!(states.last(), Some(&"success"), "{states:?}");
    assert_moves_forward(&events);
    let last = events.last().expect("events");
    assert_eq!(last["result"]["chunks"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_submits_waits_watches_and_lists() {
    let dir = tempdir();
    let server = Serve::start(dir.path(), &[]);
    let token = server.token("alice", None, false).await;
    let alice = server.client(&token);
    let flags = ["--url", server.base.as_str(), "--token", token.as_str()];
    let cwd = dir.path();
    let args =
        json!({"title": "CLI notes", "content": "Penguins propose with pebbles."}).to_string();

    // submit --wait: follows the task to the end and exits 0.
    let mut submit = vec![
        "submit",
        "ingest_document",
        "--args",
        args.as_str(),
        "--wait",
    ];
    submit.extend(flags);
    let out = run(cwd, &submit, &[]).await;
    out.expect_code(0, "errand submit --wait");
    assert!(out.stderr.contains("success"), "{}", out.stderr);
    assert!(
        out.stderr.contains("✔chunk"),
        "the steps are shown: {}",
        out.stderr
    );

    // --json --wait: one record per line on stdout, the last one final; the token can come
    // from the environment.
    let out = run(
        cwd,
        &[
            "submit",
            "ingest_document",
            "--args",
            &args,
            "--wait",
            "--json",
        ],
        &[("ERRAND_URL", &server.base), ("ERRAND_TOKEN", &token)],
    )
    .await;
    out.expect_code(0, "errand submit --wait --json");
    let last: Value = serde_json::from_str(out.last_line()).expect("a JSON record");
    assert_eq!(last["status"], "success");
    let id = last["id"].as_str().expect("id").to_string();
    // The CLI prints the last event: the API's record, without the arguments events leave out.
    let full = alice.record(&id).await;
    let submitted: Value = serde_json::from_str(&args).expect("the args are JSON");
    assert_eq!(full["args"], submitted, "GET returns the arguments");
    let mut record = full.clone();
    record.as_object_mut().expect("an object").remove("args");
    assert_eq!(last, record, "the CLI prints the API's record");

    // submit without --wait prints the id alone on stdout.
    let mut submit = vec!["submit", "ingest_document", "--args", args.as_str()];
    submit.extend(flags);
    let out = run(cwd, &submit, &[]).await;
    out.expect_code(0, "errand submit");
    let third = out.last_line().to_string();
    alice.wait_done(&third).await;

    // watch on a finished task prints the final state and exits 0.
    let mut watch = vec!["watch", id.as_str()];
    watch.extend(flags);
    let out = run(cwd, &watch, &[]).await;
    out.expect_code(0, "errand watch");
    assert!(out.stderr.contains("success"), "{}", out.stderr);
    watch.push("--json");
    let out = run(cwd, &watch, &[]).await;
    out.expect_code(0, "errand watch --json");
    assert_eq!(
        serde_json::from_str::<Value>(out.last_line()).expect("JSON"),
        last
    );

    // status --json is the same record; status without it is a summary.
    let mut status = vec!["status", id.as_str(), "--json"];
    status.extend(flags);
    let out = run(cwd, &status, &[]).await;
    out.expect_code(0, "errand status --json");
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).expect("JSON"),
        full,
        "status --json is GET's record, with the arguments"
    );
    status.retain(|a| *a != "--json");
    let out = run(cwd, &status, &[]).await;
    out.expect_code(0, "errand status");
    assert!(out.stdout.contains(&id) && out.stdout.contains("owner    alice"));

    // tasks lists all three, newest first.
    let mut tasks = vec!["tasks", "--status", "success", "--json"];
    tasks.extend(flags);
    let out = run(cwd, &tasks, &[]).await;
    out.expect_code(0, "errand tasks");
    let page: Value = serde_json::from_str(&out.stdout).expect("JSON");
    let ids: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(ids[0], third, "newest first");
    assert!(ids.contains(&id.as_str()));

    // Without a token the commands fail, with the server's reason.
    let out = run(cwd, &["tasks", "--url", &server.base], &[]).await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("401"), "{}", out.stderr);
}

/// The failure of `content`: the record, once final.
async fn fails(api: &common::Api, content: &str) -> Value {
    let id = api.ingest("Broken", content).await;
    let record = api.wait_done(&id).await;
    assert_eq!(record["status"], "failed", "{record:#}");
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_documents_fail_at_their_step_with_the_error_in_the_status() {
    let dir = tempdir();
    let server = Serve::start(dir.path(), &[]);
    let alice = server.user("alice", None).await;

    // Empty content fails at `chunk`; the later steps are skipped.
    let record = fails(&alice, "").await;
    assert_eq!(
        steps(&record),
        [
            ("chunk", "failed"),
            ("embed", "skipped"),
            ("index", "skipped"),
            ("freshness", "skipped")
        ]
        .map(|(n, s)| (n.to_string(), s.to_string()))
    );
    let error = &record["error"];
    assert_eq!(error["kind"], "empty_content", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("empty")),
        "{error}"
    );
    assert_eq!(error["details"], json!({"title": "Broken", "length": 0}));
    assert_eq!(error["retryable"], false);
    assert_eq!(record["steps"][0]["error"], error["message"]);
    assert_eq!(record["attempt"], 1, "a fatal error is not retried");
    assert!(record["result"].is_null());
    assert!(record["completed_at"].is_string());

    // Only punctuation passes `chunk` and fails at `embed`.
    let record = fails(&alice, "!!! ??? ... ---").await;
    assert_eq!(
        steps(&record),
        [
            ("chunk", "success"),
            ("embed", "failed"),
            ("index", "skipped"),
            ("freshness", "skipped")
        ]
        .map(|(n, s)| (n.to_string(), s.to_string()))
    );
    assert_eq!(record["error"]["kind"], "no_terms");
    assert_eq!(record["error"]["details"]["chunks"], 1);
    assert!(record["steps"][1]["error"].is_string());

    // Binary content is refused at `chunk`, saying where.
    let record = fails(&alice, "text\u{1}more").await;
    assert_eq!(record["error"]["kind"], "binary_content");
    assert_eq!(record["error"]["details"]["offset"], 4);
    assert_eq!(steps(&record)[0].1, "failed");

    // The CLI: submit --wait exits non-zero and says why; watch and status agree.
    let token = server.token("alice", None, false).await;
    let flags = ["--url", server.base.as_str(), "--token", token.as_str()];
    let args = json!({"title": "Empty", "content": ""}).to_string();
    let mut submit = vec![
        "submit",
        "ingest_document",
        "--args",
        args.as_str(),
        "--wait",
    ];
    submit.extend(flags);
    let out = run(dir.path(), &submit, &[]).await;
    out.expect_code(1, "errand submit --wait of an empty document");
    assert!(
        out.stderr
            .contains("failed: the document's content is empty"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("✖chunk"), "{}", out.stderr);

    let id = record["id"].as_str().expect("id");
    let mut watch = vec!["watch", id];
    watch.extend(flags);
    run(dir.path(), &watch, &[])
        .await
        .expect_code(1, "errand watch of a failed task");
    let mut status = vec!["status", id];
    status.extend(flags);
    let out = run(dir.path(), &status, &[]).await;
    out.expect_code(0, "errand status");
    assert!(out.stdout.contains("✖ chunk"), "{}", out.stdout);
    assert!(out.stdout.contains("binary_content"), "{}", out.stdout);
}
