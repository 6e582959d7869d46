//! Listing filters, search and counts over HTTP: alice never sees bob's tasks or counts
//! through any of them (nor by naming bob as `owner`), an admin sees one owner's with
//! `owner`, and malformed values are a 400 `invalid_query`.

mod common;

use common::{Harness, assert_error, page_ids as ids};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_filter_search_or_count_reaches_another_users_tasks() {
    let h = Harness::start().await;
    let alice = h.token("alice", Some("acme"), false);
    let bob = h.token("bob", Some("acme"), false);
    let admin = h.token("root", Some("acme"), true);

    let a_failed = h
        .submit_ok(
            &alice,
            json!({"name": "pipeline", "args": {"steps": ["x"], "fail_at": "x"}}),
        )
        .await;
    let b_failed = h
        .submit_ok(
            &bob,
            json!({"name": "pipeline", "args": {"steps": ["x"], "fail_at": "x"}}),
        )
        .await;
    let b_held = h.submit_ok(&bob, json!({"name": "hold", "args": {}})).await;
    let worker = h.worker();
    h.wait_status(&alice, &a_failed, "failed").await;
    let b_record = h.wait_status(&bob, &b_failed, "failed").await;
    h.wait_status(&bob, &b_held, "running").await;

    let bob_ids = |key: &str| b_record[key].as_str().map(str::to_string);
    let mut probes = vec![
        "status=failed".to_string(),
        "status=running".into(),
        "name=pipeline".into(),
        "name=hold".into(),
        "queue=default".into(),
        format!("q={b_failed}"),
        format!("q={b_held}"),
        "created_after=2000-01-01T00:00:00Z".into(),
        "owner=bob".into(),
        "owner=bob&owner_tenant=acme&status=failed".into(),
    ];
    for key in ["correlation_id", "request_id"] {
        if let Some(v) = bob_ids(key) {
            probes.push(format!("q={v}"));
        }
    }
    for probe in &probes {
        let (status, page) = h.get(&alice, &format!("/v1/tasks?{probe}")).await;
        assert_eq!(status, StatusCode::OK, "{probe}: {page}");
        let listed = ids(&page);
        assert!(
            listed.iter().all(|id| *id == a_failed),
            "{probe} showed alice {listed:?}"
        );
    }
    let (_, page) = h.get(&alice, "/v1/tasks?status=failed&name=pipeline").await;
    assert_eq!(ids(&page), [a_failed.as_str()]);
    let (_, page) = h.get(&alice, &format!("/v1/tasks?q={a_failed}")).await;
    assert_eq!(ids(&page), [a_failed.as_str()]);

    // Counts: alice's own, whatever owner she names; the admin's everyone's or one owner's.
    for path in ["/v1/tasks/counts", "/v1/tasks/counts?owner=bob"] {
        let (status, counts) = h.get(&alice, path).await;
        assert_eq!(status, StatusCode::OK, "{counts}");
        assert_eq!(counts["failed"], 1, "{path}: {counts}");
        assert_eq!(counts["running"], 0, "{path}: {counts}");
    }
    let (_, all) = h.get(&admin, "/v1/tasks/counts").await;
    assert_eq!(
        (all["failed"].as_u64(), all["running"].as_u64()),
        (Some(2), Some(1))
    );
    let (_, bobs) = h.get(&admin, "/v1/tasks/counts?owner=bob").await;
    assert_eq!(
        (bobs["failed"].as_u64(), bobs["running"].as_u64()),
        (Some(1), Some(1))
    );
    let (_, page) = h
        .get(
            &admin,
            "/v1/tasks?owner=bob&owner_tenant=acme&status=failed",
        )
        .await;
    assert_eq!(ids(&page), [b_failed.as_str()]);
    let (_, page) = h.get(&admin, "/v1/tasks?status=failed").await;
    assert_eq!(ids(&page), [b_failed.clone(), a_failed.clone()]);

    for bad in [
        "created_after=yesterday",
        "created_before=2026-13-01T00:00:00Z",
        "status=done",
        "limit=0",
    ] {
        let (status, json) = h.get(&alice, &format!("/v1/tasks?{bad}")).await;
        assert_error(status, &json, StatusCode::BAD_REQUEST, "invalid_query");
    }
    let long = "x".repeat(300);
    let (status, json) = h.get(&alice, &format!("/v1/tasks?q={long}")).await;
    assert_error(status, &json, StatusCode::BAD_REQUEST, "invalid_query");
    let (status, json) = h.get(&alice, "/v1/tasks/counts?color=red").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");

    h.gate.open(1);
    worker.shutdown(common::DEADLINE).await;
    h.stop().await;
}
