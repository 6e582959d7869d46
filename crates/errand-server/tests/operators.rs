//! The operator views (`/v1/admin/*`) and `/v1/me`: admins see the deployment's workers,
//! queues and last hour; everyone else gets 403 and no data. And the dashboard's page and
//! assets are served from the binary.

mod common;

use common::{Harness, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// Polls `path` as `token` until `done` holds (10 s at most).
async fn wait_until(h: &Harness, token: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = h.get(token, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        if done(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never got there: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn admins_see_workers_queues_and_the_last_hour_and_users_get_nothing() {
    let h = Harness::start().await;
    let worker = h.worker();
    let alice = h.token("alice", None, false);
    let admin = h.token("root", None, true);
    let ok = h
        .submit_ok(
            &alice,
            json!({"name": "pipeline", "args": {"steps": ["a", "b"]}}),
        )
        .await;
    let bad = h
        .submit_ok(
            &alice,
            json!({"name": "pipeline", "args": {"steps": ["a"], "fail_at": "a"}}),
        )
        .await;
    h.wait_status(&alice, &ok, "success").await;
    h.wait_status(&alice, &bad, "failed").await;

    for path in [
        "/v1/admin/workers",
        "/v1/admin/queues",
        "/v1/admin/activity",
    ] {
        let (status, body) = h.get(&alice, path).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "admin_only");
        assert!(
            body.get("workers").is_none()
                && body.get("queues").is_none()
                && body.get("minutes").is_none()
        );
    }

    let workers = wait_until(&h, &admin, "/v1/admin/workers", |b| {
        b["workers"].as_array().is_some_and(|w| !w.is_empty())
    })
    .await;
    let w = &workers["workers"][0];
    assert_eq!(w["language"], "rust");
    assert_eq!(w["alive"], true);
    assert!(w["concurrency"].as_u64().is_some_and(|c| c > 0), "{w}");
    assert!(w["last_seen"].is_string() && w["host"].is_string());

    let activity = wait_until(&h, &admin, "/v1/admin/activity", |b| {
        b["minutes"].as_array().is_some_and(|m| {
            let (s, f): (u64, u64) = m.iter().fold((0, 0), |(s, f), p| {
                (
                    s + p["succeeded"].as_u64().unwrap_or(0),
                    f + p["failed"].as_u64().unwrap_or(0),
                )
            });
            s >= 1 && f >= 1
        })
    })
    .await;
    let minutes = activity["minutes"].as_array().expect("minutes");
    assert_eq!(minutes.len(), 60, "one point per minute of the last hour");
    let busy: Vec<&Value> = minutes
        .iter()
        .filter(|p| p["succeeded"].as_u64() > Some(0))
        .collect();
    assert!(
        busy.iter()
            .all(|p| p["run_p50_ms"].is_u64() && p["wait_p95_ms"].is_u64()),
        "{busy:?}"
    );
    assert!(
        minutes
            .iter()
            .any(|p| p["failure_rate"].as_f64().is_some_and(|r| r > 0.0))
    );
    let (_, other) = h.get(&admin, "/v1/admin/activity?queue=elsewhere").await;
    assert!(
        other["minutes"]
            .as_array()
            .expect("minutes")
            .iter()
            .all(|p| p["succeeded"] == 0)
    );

    let (status, queues) = h.get(&admin, "/v1/admin/queues").await;
    assert_eq!(status, StatusCode::OK);
    let default = queues["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|q| q["queue"] == "default"))
        .unwrap_or_else(|| panic!("no default queue in {queues}"));
    assert!(default["succeeded"].as_u64() >= Some(1) && default["failed"].as_u64() >= Some(1));

    // A stopped worker takes itself off the list.
    worker.shutdown(Duration::from_secs(5)).await;
    wait_until(&h, &admin, "/v1/admin/workers", |b| {
        b["workers"].as_array().is_some_and(|w| w.is_empty())
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn me_says_who_the_token_is() {
    let h = Harness::start().await;
    let (status, me) = h
        .get(&h.token("alice", Some("acme"), false), "/v1/me")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            me["user_id"].as_str(),
            me["tenant"].as_str(),
            me["admin"].as_bool()
        ),
        (Some("alice"), Some("acme"), Some(false))
    );
    assert!(me["token_expires_at"].is_string());
    let (_, me) = h.get(&h.token("root", None, true), "/v1/me").await;
    assert_eq!(me["admin"], true);
    let (status, body) = h.get("not-a-token", "/v1/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    h.stop().await;
}

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary_with_a_strict_policy() {
    let h = Harness::start().await;
    let http = reqwest::Client::new();
    for (path, kind) in [
        ("/ui/", "text/html"),
        (
            "/ui/tasks/0190d7a0-0000-7000-8000-000000000000",
            "text/html",
        ),
        ("/ui/workers", "text/html"),
        ("/ui/assets/app.js", "text/javascript"),
        ("/ui/assets/app.css", "text/css"),
    ] {
        let res = http.get(h.url(path)).send().await.expect("get");
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let headers = res.headers();
        assert!(
            headers["content-type"]
                .to_str()
                .is_ok_and(|t| t.starts_with(kind)),
            "{path}"
        );
        let csp = headers["content-security-policy"]
            .to_str()
            .unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert_eq!(headers["referrer-policy"], "no-referrer");
    }
    let page = http
        .get(h.url("/ui/"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("/ui/assets/app.js") && !page.contains("<script>"),
        "no inline script"
    );
    let res = http.get(h.url("/ui")).send().await.expect("get");
    assert_eq!(res.url().path(), "/ui/", "/ui redirects to /ui/");
    h.stop().await;
}
