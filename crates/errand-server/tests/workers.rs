//! The worker protocol against a real server: worker tokens, task types kept in the store,
//! long-poll claims woken by submissions, heartbeats carrying reports and cancellations,
//! completions fenced by lease token, and the server's own timeouts and lease watchdog.

mod common;

use common::Harness;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const QUEUE: &str = "py";

async fn register(h: &Harness, worker: &str, types: Value) -> (StatusCode, Value) {
    h.call(
        Method::PUT,
        worker,
        "/v1/worker/task-types",
        json!({ "types": types }),
    )
    .await
}

fn ingest_type(timeout_s: f64, max_attempts: u32) -> Value {
    json!([{
        "name": "py_ingest",
        "queue": QUEUE,
        "args_schema": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]},
        "max_attempts": max_attempts,
        "timeout_s": timeout_s,
        "backoff": {"base_s": 0.05, "max_s": 0.05}
    }])
}

async fn claim(h: &Harness, worker: &str, wait_s: f64, lease_s: f64) -> Vec<Value> {
    let (status, body) = h
        .call(
            Method::POST,
            worker,
            "/v1/worker/claim",
            json!({"types": ["py_ingest"], "max": 8, "wait_s": wait_s, "lease_s": lease_s}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["tasks"].as_array().expect("tasks").clone()
}

async fn beat(h: &Harness, worker: &str, items: Value) -> Vec<Value> {
    let (status, body) = h
        .call(
            Method::POST,
            worker,
            "/v1/worker/heartbeat",
            json!({ "leases": items }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["leases"].as_array().expect("leases").clone()
}

async fn complete(h: &Harness, worker: &str, items: Value) -> Vec<Value> {
    let (status, body) = h
        .call(
            Method::POST,
            worker,
            "/v1/worker/complete",
            json!({ "completions": items }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["results"].as_array().expect("results").clone()
}

fn lease_of(task: &Value) -> Value {
    json!({"task_id": task["task_id"], "lease_token": task["lease_token"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_task_runs_as_its_submitter_reports_and_completes() {
    let h = Harness::start().await;
    let worker = h.worker_token("py-1");
    let alice = h.token("alice", Some("acme"), false);

    let (status, body) = register(&h, &alice, ingest_type(60.0, 3)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "not_a_worker");
    let (status, body) = register(&h, &worker, json!([{"name": "pipeline"}])).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = register(
        &h,
        &worker,
        json!([{"name": "x", "args_schema": {"type": 5}}]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_schema");
    let (status, body) = register(&h, &worker, ingest_type(60.0, 3)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The document lists the registered type, with its arguments.
    let (_, doc) = h.get(&alice, "/openapi.json").await;
    let variant = &doc["components"]["schemas"]["SubmitRequest.py_ingest"];
    assert_eq!(
        variant["properties"]["name"]["const"], "py_ingest",
        "{variant}"
    );
    assert_eq!(
        doc["components"]["schemas"]["py_ingestArgs"]["required"],
        json!(["title"])
    );

    let (_, types) = h.get(&alice, "/v1/task-types").await;
    let listed = types["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|t| t["name"] == "py_ingest")
        .cloned()
        .expect("the remote type is listed");
    assert_eq!(
        (listed["runs_on"].as_str(), listed["queue"].as_str()),
        (Some("remote"), Some(QUEUE))
    );

    let (status, body) = h
        .submit(&alice, json!({"name": "py_ingest", "args": {"title": 7}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_args");

    // A claim waiting for work is woken by the submission.
    let waiting = {
        let h2 = (h.base.clone(), h.http.clone(), worker.clone());
        tokio::spawn(async move {
            let began = Instant::now();
            let r =
                h2.1.post(format!("{}/v1/worker/claim", h2.0))
                    .bearer_auth(&h2.2)
                    .json(&json!({"types": ["py_ingest"], "max": 4, "wait_s": 20}))
                    .send()
                    .await
                    .expect("claim");
            let body: Value = r.json().await.expect("json");
            (began.elapsed(), body)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let submitted = Instant::now();
    let id = h
        .submit_ok(&alice, json!({"name": "py_ingest", "args": {"title": "t"}}))
        .await;
    let (waited, body) = waiting.await.expect("claim task");
    let woke_after = submitted.elapsed();
    assert!(
        woke_after < Duration::from_secs(1),
        "the claim woke {woke_after:?} after the submission"
    );
    assert!(
        waited > Duration::from_millis(250),
        "it waited for the work"
    );
    let task = body["tasks"][0].clone();
    assert_eq!(task["task_id"], id.as_str());
    assert_eq!(task["attempt"], 1);
    assert_eq!(task["max_attempts"], 3);
    assert_eq!(task["args"], json!({"title": "t"}));
    let ctx = &task["context"];
    assert_eq!(
        (ctx["user_id"].as_str(), ctx["tenant"].as_str()),
        (Some("alice"), Some("acme"))
    );
    assert_eq!(
        ctx["credential"].as_str(),
        Some(alice.as_str()),
        "the submitter's token, in clear for the worker"
    );

    // A worker token is nobody on the user routes.
    let (status, _) = h.get(&worker, &format!("/v1/tasks/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let mut item = lease_of(&task);
    item["progress"] = json!({"current": 3, "total": 10, "message": "chunk 3"});
    item["plan"] = json!(["embed", "index"]);
    item["steps"] =
        json!([{"name": "embed", "status": "running"}, {"name": "embed", "status": "success"}]);
    let answers = beat(&h, &worker, json!([item])).await;
    assert_eq!(answers[0]["held"], true);
    assert_eq!(answers[0]["cancel_requested"], false);
    let record = h
        .wait_for(&alice, &id, |r| r["progress"]["current"] == 3)
        .await;
    assert_eq!(record["status"], "running");
    assert_eq!(record["steps"][0]["status"], "success");
    assert_eq!(record["steps"][1]["status"], "pending");

    let mut done = lease_of(&task);
    done["outcome"] = json!("success");
    done["result"] = json!({"chunks": 10});
    let results = complete(&h, &worker, json!([done.clone()])).await;
    assert_eq!(
        results[0],
        json!({"task_id": id, "accepted": true, "fenced": false})
    );
    let record = h.wait_status(&alice, &id, "success").await;
    assert_eq!(record["result"], json!({"chunks": 10}));
    let again = complete(&h, &worker, json!([done])).await;
    assert_eq!(
        again[0]["fenced"], true,
        "a second completion is fenced out"
    );

    let bob = h.token("bob", Some("acme"), false);
    for path in [format!("/v1/tasks/{id}"), format!("/v1/tasks/{id}/events")] {
        assert_eq!(h.get(&bob, &path).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    for path in [
        format!("/v1/tasks/{id}/cancel"),
        format!("/v1/tasks/{id}/retry"),
    ] {
        assert_eq!(h.post(&bob, &path).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_reaches_the_worker_at_its_next_heartbeat() {
    let h = Harness::start().await;
    let worker = h.worker_token("py-1");
    let alice = h.token("alice", None, false);
    register(&h, &worker, ingest_type(60.0, 3)).await;
    let id = h
        .submit_ok(&alice, json!({"name": "py_ingest", "args": {"title": "t"}}))
        .await;
    let task = claim(&h, &worker, 5.0, 30.0).await.remove(0);
    assert_eq!(
        h.post(&alice, &format!("/v1/tasks/{id}/cancel")).await.0,
        StatusCode::ACCEPTED
    );
    let began = Instant::now();
    loop {
        let answers = beat(&h, &worker, json!([lease_of(&task)])).await;
        if answers[0]["cancel_requested"] == true {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "the cancel did not reach the heartbeat within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut done = lease_of(&task);
    done["outcome"] = json!("cancelled");
    let results = complete(&h, &worker, json!([done])).await;
    assert_eq!(results[0]["accepted"], true);
    h.wait_status(&alice, &id, "cancelled").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_worker_loses_its_task_and_its_late_completion_is_fenced() {
    let h = Harness::start().await;
    let worker = h.worker_token("py-1");
    let alice = h.token("alice", None, false);
    register(&h, &worker, ingest_type(60.0, 3)).await;
    let id = h
        .submit_ok(&alice, json!({"name": "py_ingest", "args": {"title": "t"}}))
        .await;
    let first = claim(&h, &worker, 5.0, 2.0).await.remove(0);
    // No heartbeat: after its 2 s lease the attempt fails as worker_lost and is retried.
    let second = claim(&h, &worker, 10.0, 30.0).await.remove(0);
    assert_eq!(second["task_id"], id.as_str());
    assert_eq!(second["attempt"], 2);
    assert_ne!(second["lease_token"], first["lease_token"]);
    let (_, record) = h.get(&alice, &format!("/v1/tasks/{id}")).await;
    assert_eq!(record["error"]["kind"], "worker_lost", "{record}");
    assert_eq!(
        beat(&h, &worker, json!([lease_of(&first)])).await[0]["held"],
        false
    );

    let mut stale = lease_of(&first);
    stale["outcome"] = json!("failure");
    stale["error"] = json!({"message": "late", "retryable": false});
    let mut fresh = lease_of(&second);
    fresh["outcome"] = json!("success");
    let results = complete(&h, &worker, json!([stale, fresh])).await;
    assert_eq!(results[0]["fenced"], true);
    assert_eq!(results[1]["accepted"], true);
    let record = h.wait_status(&alice, &id, "success").await;
    assert_eq!(record["attempt"], 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_times_out_a_hanging_attempt_and_a_released_one_spends_nothing() {
    let h = Harness::start().await;
    let worker = h.worker_token("py-1");
    let alice = h.token("alice", None, false);
    register(&h, &worker, ingest_type(1.0, 1)).await;
    let id = h
        .submit_ok(
            &alice,
            json!({"name": "py_ingest", "args": {"title": "hang"}}),
        )
        .await;
    let task = claim(&h, &worker, 5.0, 30.0).await.remove(0);
    assert_eq!(task["timeout_s"], 1.0);
    // The worker keeps heartbeating, but the attempt's timeout is the server's.
    let began = Instant::now();
    while beat(&h, &worker, json!([lease_of(&task)])).await[0]["held"] == true {
        assert!(began.elapsed() < Duration::from_secs(5), "never timed out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let record = h.wait_status(&alice, &id, "failed").await;
    assert_eq!(record["error"]["kind"], "timeout", "{record}");

    register(&h, &worker, ingest_type(60.0, 3)).await;
    let id = h
        .submit_ok(
            &alice,
            json!({"name": "py_ingest", "args": {"title": "drain"}}),
        )
        .await;
    let task = claim(&h, &worker, 5.0, 30.0).await.remove(0);
    let mut back = lease_of(&task);
    back["outcome"] = json!("released");
    assert_eq!(
        complete(&h, &worker, json!([back])).await[0]["accepted"],
        true
    );
    let again = claim(&h, &worker, 5.0, 30.0).await.remove(0);
    assert_eq!(again["task_id"], id.as_str());
    assert_eq!(again["attempt"], 1, "a released attempt is not spent");
    let mut fail = lease_of(&again);
    fail["outcome"] = json!("failure");
    fail["error"] = json!({"message": "busy", "kind": "upstream", "details": {"status": 503}, "retryable": true, "retry_in_s": 0.2});
    complete(&h, &worker, json!([fail])).await;
    let record = h.wait_status(&alice, &id, "retrying").await;
    assert_eq!(record["error"]["kind"], "upstream");
    assert_eq!(record["error"]["details"], json!({"status": 503}));
    let third = claim(&h, &worker, 5.0, 30.0).await.remove(0);
    assert_eq!(third["attempt"], 2);
    h.stop().await;
}
