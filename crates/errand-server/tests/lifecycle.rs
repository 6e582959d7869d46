//! A task's life through the API, against a real Worker: submit, follow (polling and SSE),
//! fail, cancel, retry, deduplicate, list.

mod common;

use common::{Harness, Options, TestStore, assert_error, status_changes};
use errand_server::ServerConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_running_success_with_steps_progress_and_every_change_on_sse() {
    let h = Harness::start().await;
    let token = h.token("alice", Some("acme"), false);
    let (status, submitted) = h
        .submit(
            &token,
            json!({"name": "pipeline", "args": {"steps": ["chunk", "embed", "index"], "wait_at": "embed"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    let id = submitted["id"].as_str().expect("id");
    assert_eq!(submitted["status"], "pending");
    assert_eq!(submitted["deduplicated"], false);
    assert_eq!(submitted["status_url"], format!("/v1/tasks/{id}"));
    assert_eq!(submitted["events_url"], format!("/v1/tasks/{id}/events"));

    // No worker yet: the task waits, and the stream starts with that record.
    let (status, record) = h.get(&token, &format!("/v1/tasks/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["status"], "pending");
    assert_eq!(
        record["owner"],
        json!({"user_id": "alice", "tenant": "acme"})
    );
    let mut events = h.events(&token, id).await.expect("stream opens");
    let first = events.next().await.expect("first event");
    assert_eq!(first.event, "status");
    assert_eq!(first.data["status"], "pending");

    let worker = h.worker();
    // The task runs, holding at `embed`: the first step is done and visible.
    let running = h
        .wait_for(&token, id, |r| {
            r["status"] == "running" && r["steps"][1]["status"] == "running"
        })
        .await;
    assert_eq!(running["attempt"], 1);
    assert_eq!(running["steps"][0]["name"], "chunk");
    assert_eq!(running["steps"][0]["status"], "success");
    assert_eq!(running["steps"][2]["status"], "pending");
    assert_eq!(running["progress"]["current"], 1);
    assert_eq!(running["progress"]["total"], 3);
    assert_eq!(running["progress"]["message"], "chunk done");

    h.gate.open(1);
    let mut records: Vec<Value> = vec![first.data];
    records.extend(events.rest().await.into_iter().map(|e| {
        assert_eq!(e.event, "status");
        e.data
    }));
    assert_eq!(status_changes(&records), ["pending", "running", "success"]);
    let last = records.last().expect("records");
    assert_eq!(last["result"], json!({"steps": 3}));
    assert!(
        last["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .all(|s| s["status"] == "success")
    );
    assert_eq!(last["progress"]["current"], 3);
    // The stream showed the running task's progress on its way.
    assert!(
        records
            .iter()
            .any(|r| r["status"] == "running" && r["progress"]["current"] == 1)
    );
    // Each event is a change: no record repeats.
    for pair in records.windows(2) {
        assert_ne!(pair[0], pair[1]);
    }

    // Once finished, the stream is the final record alone.
    let mut again = h.events(&token, id).await.expect("stream opens");
    let only = again.rest().await;
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].data["status"], "success");

    let (status, mut polled) = h.get(&token, &format!("/v1/tasks/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(polled["args"].is_object(), "GET returns the arguments");
    assert!(last.get("args").is_none(), "events leave the arguments out");
    polled.as_object_mut().expect("an object").remove("args");
    assert_eq!(&polled, last, "polling and events show one shape");
    worker.shutdown(common::DEADLINE).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_shows_the_failed_step_the_error_and_skipped_steps() {
    let h = Harness::start().await;
    let worker = h.worker();
    let token = h.token("alice", None, false);
    let id = h
        .submit_ok(
            &token,
            json!({"name": "pipeline", "args": {"steps": ["chunk", "embed", "index", "freshness"], "fail_at": "embed"}}),
        )
        .await;
    let mut events = h.events(&token, &id).await.expect("stream opens");
    let records: Vec<Value> = events.rest().await.into_iter().map(|e| e.data).collect();
    let failed = records.last().expect("events");
    assert_eq!(failed["status"], "failed");
    let steps: Vec<(&str, &str)> = failed["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name"),
                s["status"].as_str().expect("status"),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("chunk", "success"),
            ("embed", "failed"),
            ("index", "skipped"),
            ("freshness", "skipped")
        ]
    );
    assert_eq!(failed["steps"][1]["error"], "step embed failed on purpose");
    assert_eq!(failed["error"]["message"], "step embed failed on purpose");
    assert_eq!(failed["error"]["kind"], "bad_input");
    assert_eq!(
        failed["error"]["details"],
        json!({"step": "embed", "index": 1})
    );
    assert_eq!(failed["error"]["retryable"], false);
    assert!(failed.get("result").is_none());

    let (status, mut polled) = h.get(&token, &format!("/v1/tasks/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    polled.as_object_mut().expect("an object").remove("args");
    assert_eq!(&polled, failed);
    worker.shutdown(common::DEADLINE).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_retry_follow_the_state_rules() {
    let h = Harness::start().await;
    let token = h.token("alice", None, false);

    // Pending: cancelled at once.
    let pending = h
        .submit_ok(&token, json!({"name": "hold", "args": {}}))
        .await;
    let (status, record) = h.post(&token, &format!("/v1/tasks/{pending}/cancel")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{record}");
    assert_eq!(record["status"], "cancelled");
    // Finished: 409, for cancel; retry brings it back.
    let (status, json) = h.post(&token, &format!("/v1/tasks/{pending}/cancel")).await;
    assert_error(status, &json, StatusCode::CONFLICT, "conflict");
    assert!(
        json["error"]["message"]
            .as_str()
            .expect("message")
            .contains("cancelled")
    );
    let (status, record) = h.post(&token, &format!("/v1/tasks/{pending}/retry")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{record}");
    assert_eq!(record["status"], "pending");
    assert_eq!(record["attempt"], 0);

    let worker = h.worker();
    // Both holds run now (the retried one and a new one).
    let running = h
        .submit_ok(&token, json!({"name": "hold", "args": {}}))
        .await;
    h.wait_status(&token, &running, "running").await;
    h.wait_status(&token, &pending, "running").await;
    // Running: a retry is a 409, a cancel is requested and ends the task cancelled.
    let (status, json) = h.post(&token, &format!("/v1/tasks/{running}/retry")).await;
    assert_error(status, &json, StatusCode::CONFLICT, "conflict");
    let (status, record) = h.post(&token, &format!("/v1/tasks/{running}/cancel")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{record}");
    assert_eq!(record["status"], "running");
    assert_eq!(record["cancel_requested"], true);
    h.wait_status(&token, &running, "cancelled").await;

    // Success: neither cancel nor retry.
    h.gate.open(1);
    h.wait_status(&token, &pending, "success").await;
    for action in ["cancel", "retry"] {
        let (status, json) = h
            .post(&token, &format!("/v1/tasks/{pending}/{action}"))
            .await;
        assert_error(status, &json, StatusCode::CONFLICT, "conflict");
    }
    worker.shutdown(common::DEADLINE).await;
    h.stop().await;
}

#[tokio::test]
async fn a_live_key_answers_the_existing_task() {
    let h = Harness::start().await;
    let alice = h.token("alice", None, false);
    let body = json!({"name": "hold", "args": {}, "key": "upload-7"});
    let first = h.submit_ok(&alice, body.clone()).await;
    let (status, again) = h.submit(&alice, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["deduplicated"], true);
    assert_eq!(again["id"], first.as_str());
    // Keys are scoped to their owner.
    let bob = h.token("bob", None, false);
    let (status, other) = h.submit(&bob, body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_ne!(other["id"], first.as_str());
    // A finished task frees its key.
    h.post(&alice, &format!("/v1/tasks/{first}/cancel")).await;
    let (status, fresh) = h.submit(&alice, body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_ne!(fresh["id"], first.as_str());
    h.stop().await;
}

#[tokio::test]
async fn submission_options_reach_the_record() {
    let h = Harness::start().await;
    let token = h.token("alice", None, false);
    let id = h
        .submit_ok(
            &token,
            json!({"name": "hold", "args": {}, "delay_s": 3600, "max_attempts": 7, "timeout_s": 1.5}),
        )
        .await;
    let (_, record) = h.get(&token, &format!("/v1/tasks/{id}")).await;
    assert_eq!(record["status"], "scheduled");
    assert!(record["run_at"].is_string());
    assert_eq!(record["max_attempts"], 7);
    assert_eq!(record["timeout_ms"], 1500);
    // Without options, the task's own policy applies.
    let id = h
        .submit_ok(&token, json!({"name": "hold", "args": {}}))
        .await;
    let (_, record) = h.get(&token, &format!("/v1/tasks/{id}")).await;
    assert_eq!(record["status"], "pending");
    assert_eq!(record["max_attempts"], 1);
    assert_eq!(record["timeout_ms"], 300_000);
    // A JSON Schema integer may be written with a fraction of zero; a key is counted in
    // characters (these 256 are 512 bytes); null is absent.
    let key = "é".repeat(256);
    let id = h
        .submit_ok(
            &token,
            json!({"name": "hold", "args": {}, "max_attempts": 926.0, "key": key, "delay_s": null}),
        )
        .await;
    let (_, record) = h.get(&token, &format!("/v1/tasks/{id}")).await;
    assert_eq!(record["max_attempts"], 926);
    assert_eq!(record["key"], key.as_str());
    assert_eq!(record["status"], "pending");
    h.stop().await;
}

#[tokio::test]
async fn listing_pages_newest_first_with_filters() {
    let h = Harness::start().await;
    let token = h.token("alice", None, false);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            h.submit_ok(&token, json!({"name": "hold", "args": {}}))
                .await,
        );
    }
    let strict = h
        .submit_ok(
            &token,
            json!({"name": "strict", "args": {"count": 1, "label": "x"}}),
        )
        .await;
    h.post(&token, &format!("/v1/tasks/{}/cancel", ids[0]))
        .await;

    let (status, page) = h.get(&token, "/v1/tasks?limit=4").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let listed: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed, [strict.as_str(), &ids[4], &ids[3], &ids[2]]);
    let cursor = page["next_cursor"].as_str().expect("cursor");
    let (_, page) = h
        .get(&token, &format!("/v1/tasks?limit=4&cursor={cursor}"))
        .await;
    let listed: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed, [&ids[1], &ids[0]]);
    assert_eq!(page["next_cursor"], Value::Null);

    let (_, page) = h.get(&token, "/v1/tasks?status=cancelled").await;
    assert_eq!(page["items"].as_array().expect("items").len(), 1);
    assert_eq!(page["items"][0]["id"], ids[0].as_str());
    let (_, page) = h.get(&token, "/v1/tasks?name=strict&status=").await;
    assert_eq!(page["items"].as_array().expect("items").len(), 1);
    assert_eq!(page["items"][0]["name"], "strict");
    h.stop().await;
}

#[tokio::test]
async fn task_types_list_names_and_argument_schemas() {
    let h = Harness::start().await;
    let token = h.token("alice", None, false);
    let (status, types) = h.get(&token, "/v1/task-types").await;
    assert_eq!(status, StatusCode::OK);
    let items = types["items"].as_array().expect("items");
    let names: Vec<&str> = items
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["hold", "pipeline", "strict", "whoami"]);
    let strict = items
        .iter()
        .find(|t| t["name"] == "strict")
        .expect("strict");
    assert_eq!(strict["schema"]["required"], json!(["count", "label"]));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_event_streams() {
    let h = Harness::start().await;
    let token = h.token("alice", None, false);
    let id = h
        .submit_ok(&token, json!({"name": "hold", "args": {}}))
        .await;
    let mut events = h.events(&token, &id).await.expect("stream opens");
    assert_eq!(
        events.next().await.expect("first").data["status"],
        "pending"
    );
    let stopping = tokio::spawn(h.stop());
    // The server does not wait for the (never finishing) task: the stream ends.
    assert!(events.next().await.is_none());
    tokio::time::timeout(common::DEADLINE, stopping)
        .await
        .expect("shutdown completes")
        .expect("stop task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_subscribes_before_it_reads_so_no_change_is_lost() {
    // The store cancels the task inside `watch`, before subscribing: a server that read the
    // record first would send `pending` and then wait for a change it had already missed.
    let store = TestStore::default();
    let h = Harness::with(Options {
        store: Arc::new(store.clone()),
        ..Default::default()
    })
    .await;
    let token = h.token("alice", None, false);
    let id = h
        .submit_ok(&token, json!({"name": "hold", "args": {}}))
        .await;
    *store.cancel_on_watch.lock().expect("lock") = Some(id.parse().expect("id"));
    let mut events = h.events(&token, &id).await.expect("stream opens");
    let records: Vec<Value> = events.rest().await.into_iter().map(|e| e.data).collect();
    assert_eq!(status_changes(&records), ["cancelled"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_rereads_the_record_and_keeps_the_connection_alive() {
    // The store's watch never delivers anything: only the periodic re-read can end the stream.
    let store = TestStore::default();
    store.blind_watch.store(true, Ordering::SeqCst);
    let config = ServerConfig {
        events_resync: Duration::from_millis(100),
        sse_keep_alive: Duration::from_millis(20),
        ..common::config()
    };
    let h = Harness::with(Options {
        store: Arc::new(store.clone()),
        config,
        ..Default::default()
    })
    .await;
    let token = h.token("alice", None, false);
    let id = h
        .submit_ok(&token, json!({"name": "hold", "args": {}}))
        .await;
    let mut events = h.events(&token, &id).await.expect("stream opens");
    assert_eq!(
        events.next().await.expect("first").data["status"],
        "pending"
    );
    let worker = h.worker();
    h.wait_status(&token, &id, "running").await;
    h.gate.open(1);
    h.wait_status(&token, &id, "success").await;
    let rest: Vec<Value> = events.rest().await.into_iter().map(|e| e.data).collect();
    assert_eq!(rest.last().expect("final record")["status"], "success");
    assert!(
        events.comments > 0,
        "keep-alive comments on the idle stream"
    );
    worker.shutdown(common::DEADLINE).await;
    h.stop().await;
}

/// Follows a running task that is cancelled through the API while every record the store
/// returns carries an earlier `updated_at` than the one before (clocks of different hosts):
/// the stream must still send the changes and end with the final record. `blind_watch`: only
/// the periodic re-read can deliver them.
async fn follow_a_cancel_with_times_running_backwards(blind_watch: bool) {
    let store = TestStore::default();
    store.blind_watch.store(blind_watch, Ordering::SeqCst);
    let config = ServerConfig {
        events_resync: Duration::from_millis(100),
        ..common::config()
    };
    let h = Harness::with(Options {
        store: Arc::new(store.clone()),
        config,
        ..Default::default()
    })
    .await;
    let token = h.token("alice", None, false);
    let id = h
        .submit_ok(&token, json!({"name": "hold", "args": {}}))
        .await;
    let worker = h.worker();
    h.wait_status(&token, &id, "running").await;
    store.rewind_times.store(true, Ordering::SeqCst);
    let mut events = h.events(&token, &id).await.expect("stream opens");
    assert_eq!(
        events.next().await.expect("first").data["status"],
        "running"
    );
    let (status, json) = h.post(&token, &format!("/v1/tasks/{id}/cancel")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    let rest: Vec<Value> = events.rest().await.into_iter().map(|e| e.data).collect();
    let last = rest.last().expect("the final record is sent");
    assert_eq!(last["status"], "cancelled", "{rest:?}");
    let times: Vec<&str> = rest
        .iter()
        .map(|r| r["updated_at"].as_str().expect("updated_at"))
        .collect();
    assert!(
        times.windows(2).all(|t| t[0] > t[1]),
        "the store's times ran backwards: {times:?}"
    );
    worker.shutdown(common::DEADLINE).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_record_with_an_earlier_time_still_ends_the_stream() {
    follow_a_cancel_with_times_running_backwards(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reread_final_record_with_an_earlier_time_still_ends_the_stream() {
    follow_a_cancel_with_times_running_backwards(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_watched_only_once_the_caller_may_see_the_task() {
    let store = TestStore::default();
    let h = Harness::with(Options {
        store: Arc::new(store.clone()),
        ..Default::default()
    })
    .await;
    let alice = h.token("alice", None, false);
    let bob = h.token("bob", None, false);
    let id = h
        .submit_ok(&alice, json!({"name": "hold", "args": {}}))
        .await;
    let (status, json) = h.events(&bob, &id).await.err().expect("not bob's");
    assert_error(status, &json, StatusCode::NOT_FOUND, "not_found");
    let unknown = uuid::Uuid::now_v7().to_string();
    let (status, json) = h
        .events(&alice, &unknown)
        .await
        .err()
        .expect("no such task");
    assert_error(status, &json, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        store.watches.load(Ordering::SeqCst),
        0,
        "refused streams set up no watch"
    );
    let mut events = h.events(&alice, &id).await.expect("alice's stream opens");
    assert_eq!(
        events.next().await.expect("first").data["status"],
        "pending"
    );
    assert_eq!(store.watches.load(Ordering::SeqCst), 1);
    h.stop().await;
}
