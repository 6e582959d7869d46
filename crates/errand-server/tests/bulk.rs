//! `POST /v1/tasks/bulk`: the same rules as the single-task routes, for many tasks at once;
//! and the history each action leaves in the task's record.

mod common;

use common::{Harness, assert_error};
use errand_core::{NewTask, Owner};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

async fn bulk(h: &Harness, token: &str, body: Value) -> (StatusCode, Value) {
    h.call(Method::POST, token, "/v1/tasks/bulk", body).await
}

/// Submits `n` tasks of `token`'s user that wait an hour before they may run.
async fn delayed(h: &Harness, token: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(
            h.submit_ok(token, json!({"name": "hold", "args": {}, "delay_s": 3600}))
                .await,
        );
    }
    ids
}

async fn status(h: &Harness, token: &str, id: &str) -> Value {
    let (code, record) = h.get(token, &format!("/v1/tasks/{id}")).await;
    assert_eq!(code, StatusCode::OK, "{record}");
    record
}

/// The outcome reported for each id, in order.
fn outcomes(answer: &Value) -> Vec<(String, String)> {
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("id").to_string(),
                r["outcome"].as_str().expect("outcome").to_string(),
            )
        })
        .collect()
}

/// Checks `value` against the document's schema `schema` (a JSON pointer into it).
fn conforms(doc: &Value, pointer: &str, value: &Value) -> Result<(), String> {
    let schema = json!({
        "$ref": format!("#{pointer}"),
        "components": doc["components"],
        "paths": doc["paths"],
    });
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| e.to_string())?;
    validator
        .validate(value)
        .map_err(|e| format!("{e} at {}", e.instance_path()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_cancel_cancels_exactly_the_named_tasks_and_records_who() {
    let h = Harness::start().await;
    let alice = h.token("alice", Some("acme"), false);
    let ids = delayed(&h, &alice, 5).await;
    let chosen = [ids[0].clone(), ids[2].clone(), ids[4].clone()];
    let (code, answer) = bulk(
        &h,
        &alice,
        json!({"action": "cancel", "ids": [chosen[0], chosen[1], chosen[2], chosen[0]]}),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(answer["action"], "cancel");
    assert_eq!(answer["truncated"], false);
    assert_eq!(
        answer["counts"],
        json!({"cancelled": 3, "cancel_requested": 0, "requeued": 0, "conflict": 0, "not_found": 0})
    );
    let expected: Vec<(String, String)> = chosen
        .iter()
        .map(|id| (id.clone(), "cancelled".to_string()))
        .collect();
    assert_eq!(outcomes(&answer), expected, "in order, a repeated id once");
    assert!(
        answer["results"]
            .as_array()
            .expect("results")
            .iter()
            .all(|r| r["status"] == "cancelled")
    );
    for id in &chosen {
        let record = status(&h, &alice, id).await;
        assert_eq!(record["status"], "cancelled");
        let history = record["history"].as_array().expect("history");
        assert_eq!(history.len(), 1);
        assert_eq!(history[0]["action"], "cancel");
        assert_eq!(history[0]["outcome"], "cancelled");
        assert_eq!(
            history[0]["by"],
            json!({"user_id": "alice", "tenant": "acme"})
        );
        assert_eq!(history[0]["at"], record["updated_at"]);
    }
    for id in [&ids[1], &ids[3]] {
        let record = status(&h, &alice, id).await;
        assert_eq!(record["status"], "scheduled", "left alone");
        assert_eq!(record["history"], json!([]));
    }

    // Again: each is a conflict now, with the state that refused it, and nothing is recorded.
    let (_, again) = bulk(&h, &alice, json!({"action": "cancel", "ids": chosen})).await;
    assert_eq!(again["counts"]["conflict"], 3);
    assert!(
        again["results"]
            .as_array()
            .expect("results")
            .iter()
            .all(|r| r["outcome"] == "conflict" && r["status"] == "cancelled")
    );
    let record = status(&h, &alice, &chosen[0]).await;
    assert_eq!(record["history"].as_array().map(Vec::len), Some(1));
    // A bulk retry brings them back, recorded after the cancel.
    let (_, retried) = bulk(&h, &alice, json!({"action": "retry", "ids": chosen})).await;
    assert_eq!(retried["counts"]["requeued"], 3, "{retried}");
    let record = status(&h, &alice, &chosen[1]).await;
    assert_eq!(record["status"], "pending");
    assert_eq!(record["history"][1]["action"], "retry");
    assert_eq!(record["history"][1]["outcome"], "requeued");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_on_another_users_ids_touches_nothing_and_reveals_nothing() {
    let h = Harness::start().await;
    let alice = h.token("alice", Some("acme"), false);
    let bob = h.token("bob", Some("acme"), false);
    let bobs = delayed(&h, &bob, 2).await;
    let unknown = errand_core::TaskId::new().to_string();
    for action in ["cancel", "retry"] {
        let (code, answer) = bulk(
            &h,
            &alice,
            json!({"action": action, "ids": [bobs[0], unknown, bobs[1]]}),
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{answer}");
        assert_eq!(answer["counts"]["not_found"], 3, "{answer}");
        let results = answer["results"].as_array().expect("results");
        for r in results {
            assert_eq!(r["outcome"], "not_found");
            assert!(r.get("status").is_none(), "no state of a stranger's task");
        }
        // Bob's tasks answer exactly like a task that does not exist.
        let strip = |r: &Value| {
            let mut r = r.clone();
            r["id"] = Value::Null;
            r
        };
        assert_eq!(strip(&results[0]), strip(&results[1]));
    }
    // The filter form sees only alice's own tasks (none).
    let (_, answer) = bulk(&h, &alice, json!({"action": "cancel", "filter": {}})).await;
    assert_eq!(answer["results"], json!([]));
    for id in &bobs {
        let record = status(&h, &bob, id).await;
        assert_eq!(record["status"], "scheduled");
        assert_eq!(record["history"], json!([]));
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_form_acts_on_the_callers_matching_tasks() {
    let h = Harness::start().await;
    let alice = h.token("alice", Some("acme"), false);
    let bob = h.token("bob", Some("acme"), false);
    let admin = h.token("root", None, true);
    let alice_waiting = delayed(&h, &alice, 3).await;
    let bob_waiting = delayed(&h, &bob, 2).await;
    let mut failed = Vec::new();
    for token in [&alice, &alice, &bob] {
        failed.push(
            h.submit_ok(
                token,
                json!({"name": "pipeline", "args": {"steps": ["x"], "fail_at": "x"}}),
            )
            .await,
        );
    }
    let worker = h.worker();
    for (token, id) in [
        (&alice, &failed[0]),
        (&alice, &failed[1]),
        (&bob, &failed[2]),
    ] {
        h.wait_status(token, id, "failed").await;
    }
    worker.shutdown(common::DEADLINE).await;

    // Alice's failed tasks, newest first; not bob's, not her scheduled ones.
    let (code, answer) = bulk(
        &h,
        &alice,
        json!({"action": "retry", "filter": {"status": "failed"}}),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(
        outcomes(&answer),
        [
            (failed[1].clone(), "requeued".to_string()),
            (failed[0].clone(), "requeued".to_string())
        ]
    );
    assert_eq!(answer["counts"]["requeued"], 2);
    assert_eq!(status(&h, &bob, &failed[2]).await["status"], "failed");

    // By name and queue: her three holds (the requeued pipelines are another name).
    let (_, answer) = bulk(
        &h,
        &alice,
        json!({"action": "cancel", "filter": {"name": "hold", "queue": "default"}}),
    )
    .await;
    let mut cancelled: Vec<String> = outcomes(&answer).into_iter().map(|(id, _)| id).collect();
    cancelled.sort();
    let mut expected = alice_waiting.clone();
    expected.sort();
    assert_eq!(cancelled, expected, "{answer}");
    assert_eq!(answer["counts"]["cancelled"], 3);
    for id in &bob_waiting {
        assert_eq!(status(&h, &bob, id).await["status"], "scheduled");
    }
    let (_, none) = bulk(
        &h,
        &alice,
        json!({"action": "cancel", "filter": {"queue": "elsewhere"}}),
    )
    .await;
    assert_eq!(none["results"], json!([]));

    // An admin's filter covers everyone's tasks.
    let (_, answer) = bulk(
        &h,
        &admin,
        json!({"action": "cancel", "filter": {"status": "scheduled"}}),
    )
    .await;
    let got: Vec<String> = outcomes(&answer).into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, [bob_waiting[1].clone(), bob_waiting[0].clone()]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admins_bulk_records_the_admin_not_the_owner() {
    let h = Harness::start().await;
    let alice = h.token("alice", Some("acme"), false);
    let admin = h.token("root", Some("ops"), true);
    let ids = delayed(&h, &alice, 2).await;
    let (code, answer) = bulk(&h, &admin, json!({"action": "cancel", "ids": ids})).await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(answer["counts"]["cancelled"], 2);
    let (_, answer) = bulk(&h, &alice, json!({"action": "retry", "ids": [ids[0]]})).await;
    assert_eq!(answer["counts"]["requeued"], 1);
    let record = status(&h, &alice, &ids[0]).await;
    assert_eq!(record["owner"]["user_id"], "alice");
    assert_eq!(
        record["history"][0]["by"],
        json!({"user_id": "root", "tenant": "ops"})
    );
    assert_eq!(record["history"][1]["by"]["user_id"], "alice");
    // The single-task routes record their caller the same way.
    let (code, record) = h
        .post(&admin, &format!("/v1/tasks/{}/cancel", ids[0]))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(record["history"][2]["by"]["user_id"], "root");
    assert_eq!(record["history"][2]["outcome"], "cancelled");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bulk_cancels_at_once_cancel_each_task_once() {
    let h = Harness::start().await;
    let alice = h.token("alice", Some("acme"), false);
    let admin = h.token("root", None, true);
    let ids = delayed(&h, &alice, 40).await;
    let body = json!({"action": "cancel", "ids": ids});
    let ((code_a, by_alice), (code_b, by_admin)) = tokio::join!(
        bulk(&h, &alice, body.clone()),
        bulk(&h, &admin, body.clone())
    );
    assert_eq!((code_a, code_b), (StatusCode::OK, StatusCode::OK));
    let won_a = by_alice["counts"]["cancelled"].as_u64().expect("count");
    let won_b = by_admin["counts"]["cancelled"].as_u64().expect("count");
    assert_eq!(won_a + won_b, 40, "{by_alice}\n{by_admin}");
    assert_eq!(
        by_alice["counts"]["conflict"].as_u64().expect("count")
            + by_admin["counts"]["conflict"].as_u64().expect("count"),
        40
    );
    let results_a = outcomes(&by_alice);
    let results_b = outcomes(&by_admin);
    for (i, id) in ids.iter().enumerate() {
        let winner = match (results_a[i].1.as_str(), results_b[i].1.as_str()) {
            ("cancelled", "conflict") => "alice",
            ("conflict", "cancelled") => "root",
            other => panic!("{id}: {other:?}"),
        };
        let record = status(&h, &alice, id).await;
        let history = record["history"].as_array().expect("history");
        assert_eq!(history.len(), 1, "only the winner is recorded: {record}");
        assert_eq!(history[0]["by"]["user_id"], winner);
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_acts_on_at_most_ten_thousand_tasks_and_says_so() {
    let h = Harness::start().await;
    let alice = h.token("alice", Some("acme"), false);
    let tasks: Vec<NewTask> = (0..10_001)
        .map(|_| {
            let mut t = NewTask::new(
                "hold",
                serde_json::value::to_raw_value(&json!({})).expect("raw"),
            );
            t.owner = Owner::new("alice", Some("acme".into()));
            t.delay = Some(Duration::from_secs(3600));
            t
        })
        .collect();
    let oldest = tasks[0].id.to_string();
    h.store.enqueue(tasks).await.expect("enqueue");
    let body = json!({"action": "cancel", "filter": {"status": "scheduled"}});
    let (code, answer) = bulk(&h, &alice, body.clone()).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(answer["truncated"], true);
    assert_eq!(answer["counts"]["cancelled"], 10_000);
    assert_eq!(status(&h, &alice, &oldest).await["status"], "scheduled");
    let (_, rest) = bulk(&h, &alice, body).await;
    assert_eq!(rest["truncated"], false);
    assert_eq!(outcomes(&rest), [(oldest, "cancelled".to_string())]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bulk_requests_are_400s_and_answers_match_the_document() {
    let h = Harness::start().await;
    let alice = h.token("alice", Some("acme"), false);
    let ids = delayed(&h, &alice, 2).await;
    let (_, doc) = h.get(&alice, "/openapi.json").await;
    let body_schema = "/paths/~1v1~1tasks~1bulk/post/requestBody/content/application~1json/schema";
    let too_many: Vec<String> = (0..1001)
        .map(|_| errand_core::TaskId::new().to_string())
        .collect();
    for bad in [
        json!({"action": "cancel"}),
        json!({"action": "cancel", "ids": ids, "filter": {}}),
        json!({"action": "cancel", "ids": null}),
        json!({"action": "cancel", "filter": null}),
        json!({"action": "cancel", "filter": {"status": "asleep"}}),
        json!({"action": "cancel", "filter": {"name": ""}}),
        json!({"action": "cancel", "filter": {"owner": "bob"}}),
        json!({"action": "delete", "ids": ids}),
        json!({"ids": ids}),
        json!({"action": "cancel", "ids": ["nope"]}),
        json!({"action": "cancel", "ids": too_many}),
        json!({"action": "cancel", "ids": ids, "extra": true}),
        json!(["cancel"]),
    ] {
        let (code, error) = bulk(&h, &alice, bad.clone()).await;
        assert_error(code, &error, StatusCode::BAD_REQUEST, "invalid_body");
        assert!(
            conforms(&doc, body_schema, &bad).is_err(),
            "the document allows what the server refuses: {bad}"
        );
    }
    let response = h
        .http
        .post(h.url("/v1/tasks/bulk"))
        .bearer_auth(&alice)
        .body("{\"action\": ")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = h
        .http
        .post(h.url("/v1/tasks/bulk"))
        .bearer_auth(&alice)
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    for good in [
        json!({"action": "cancel", "ids": [ids[0]]}),
        json!({"action": "retry", "ids": []}),
        json!({"action": "cancel", "filter": {"status": "scheduled", "name": "hold", "queue": "default"}}),
        json!({"action": "retry", "filter": {}}),
    ] {
        conforms(&doc, body_schema, &good).expect("the document allows it");
        let (code, answer) = bulk(&h, &alice, good.clone()).await;
        assert_eq!(code, StatusCode::OK, "{good}: {answer}");
        conforms(&doc, "/components/schemas/BulkAnswer", &answer)
            .unwrap_or_else(|e| panic!("{answer} does not match the document: {e}"));
    }
    h.stop().await;
}
