//! Per-user isolation: another user's task is a 404 on every route, listings hold only the
//! caller's tasks, tenants separate equal user ids, and the admin role sees all.

mod common;

use common::{Harness, assert_error, page_ids as ids};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_sees_or_touches_anothers_tasks_but_the_admin() {
    let h = Harness::start().await;
    let alice = h.token("alice", Some("acme"), false);
    let bob = h.token("bob", Some("acme"), false);
    // The same user id in another tenant is another owner.
    let alice_elsewhere = h.token("alice", Some("globex"), false);
    let admin = h.token("root", None, true);

    let a_waiting = h
        .submit_ok(&alice, json!({"name": "hold", "args": {}}))
        .await;
    let a_failed = h
        .submit_ok(
            &alice,
            json!({"name": "pipeline", "args": {"steps": ["x"], "fail_at": "x"}}),
        )
        .await;
    let b_task = h.submit_ok(&bob, json!({"name": "hold", "args": {}})).await;
    let worker = h.worker();
    h.wait_status(&alice, &a_failed, "failed").await;
    h.wait_status(&alice, &a_waiting, "running").await;

    for outsider in [&bob, &alice_elsewhere] {
        for id in [&a_waiting, &a_failed] {
            let (status, json) = h.get(outsider, &format!("/v1/tasks/{id}")).await;
            assert_error(status, &json, StatusCode::NOT_FOUND, "not_found");
            let (status, json) = h.events(outsider, id).await.err().expect("refused");
            assert_error(status, &json, StatusCode::NOT_FOUND, "not_found");
            for action in ["cancel", "retry"] {
                let (status, json) = h.post(outsider, &format!("/v1/tasks/{id}/{action}")).await;
                assert_error(status, &json, StatusCode::NOT_FOUND, "not_found");
            }
        }
        // A stranger's task answers exactly like a task that does not exist.
        let unknown = errand_core::TaskId::new();
        let (_, missing) = h.get(outsider, &format!("/v1/tasks/{unknown}")).await;
        let (_, theirs) = h.get(outsider, &format!("/v1/tasks/{a_waiting}")).await;
        assert_eq!(missing, theirs);
    }
    // Nothing the outsiders tried changed alice's tasks.
    let (_, waiting) = h.get(&alice, &format!("/v1/tasks/{a_waiting}")).await;
    assert_eq!(waiting["status"], "running");
    assert!(waiting.get("cancel_requested").is_none());
    let (_, failed) = h.get(&alice, &format!("/v1/tasks/{a_failed}")).await;
    assert_eq!(failed["status"], "failed");

    let (_, page) = h.get(&alice, "/v1/tasks").await;
    assert_eq!(ids(&page), [a_failed.clone(), a_waiting.clone()]);
    let (_, page) = h.get(&bob, "/v1/tasks").await;
    assert_eq!(ids(&page), [b_task.as_str()]);
    let (_, page) = h.get(&alice_elsewhere, "/v1/tasks").await;
    assert!(ids(&page).is_empty());

    // The admin sees and acts on everyone's tasks.
    let (_, page) = h.get(&admin, "/v1/tasks").await;
    assert_eq!(
        ids(&page),
        [b_task.clone(), a_failed.clone(), a_waiting.clone()]
    );
    let (status, record) = h.get(&admin, &format!("/v1/tasks/{a_failed}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["owner"]["user_id"], "alice");
    let mut events = h.events(&admin, &a_failed).await.expect("admin stream");
    assert_eq!(events.rest().await.len(), 1);
    let (status, _) = h.post(&admin, &format!("/v1/tasks/{a_failed}/retry")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = h.post(&admin, &format!("/v1/tasks/{b_task}/cancel")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The owner sees what the admin did; the admin's retry keeps alice as the owner.
    let retried = h.wait_status(&alice, &a_failed, "failed").await;
    assert_eq!(retried["owner"]["user_id"], "alice");
    h.wait_status(&bob, &b_task, "cancelled").await;

    h.gate.open(1);
    worker.shutdown(common::DEADLINE).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_as_their_submitter() {
    let h = Harness::start().await;
    let worker = h.worker();
    let mut submitted = Vec::new();
    for i in 0..20 {
        let user = format!("user-{i}");
        let token = h.token(&user, Some("acme"), false);
        let id = h
            .submit_ok(&token, json!({"name": "whoami", "args": {}}))
            .await;
        submitted.push((user, token, id));
    }
    for (user, token, id) in &submitted {
        let record = h.wait_status(token, id, "success").await;
        assert_eq!(record["owner"]["user_id"], user.as_str());
        assert_eq!(record["result"]["user_id"], user.as_str());
        assert_eq!(record["result"]["tenant"], "acme");
    }
    worker.shutdown(common::DEADLINE).await;
    h.stop().await;
}
