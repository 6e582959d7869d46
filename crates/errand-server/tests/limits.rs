//! Bounded, honest streams and health: event streams are capped per user and in all (429 with
//! `Retry-After` past either), a stream ends when the token that opened it expires, `/healthz`
//! answers 503 once the process can no longer write through its store, and `/readyz` reports
//! the store's risky settings.

mod common;

use common::{Harness, Options, TestStore, assert_error, config};
use errand_server::ServerConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

async fn open(h: &Harness, token: &str, id: &str) -> reqwest::Response {
    h.http
        .get(h.url(&format!("/v1/tasks/{id}/events")))
        .bearer_auth(token)
        .send()
        .await
        .expect("events request")
}

async fn refused(response: reqwest::Response) -> (String, Value) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .expect("Retry-After")
        .to_string();
    (retry, response.json().await.expect("JSON error"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped_per_user_and_in_all() {
    let h = Harness::with(Options {
        config: ServerConfig {
            streams_per_user: 2,
            streams_total: 3,
            sse_keep_alive: Duration::from_millis(50),
            ..config()
        },
        ..Options::default()
    })
    .await;
    let alice = h.token("alice", None, false);
    let bob = h.token("bob", None, false);
    // Waiting tasks (no worker): their streams stay open.
    let a = h
        .submit_ok(&alice, json!({"name": "hold", "args": {}}))
        .await;
    let b = h.submit_ok(&bob, json!({"name": "hold", "args": {}})).await;

    let first = open(&h, &alice, &a).await;
    let _second = open(&h, &alice, &a).await;
    assert_eq!(first.status(), StatusCode::OK);
    let (retry, body) = refused(open(&h, &alice, &a).await).await;
    assert_eq!(body["error"]["code"], "too_many_streams");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("one user")
    );
    assert!(retry.parse::<u64>().is_ok_and(|s| s > 0), "{retry}");

    // Bob has his own allowance, until the server's total is reached.
    let bobs = open(&h, &bob, &b).await;
    assert_eq!(bobs.status(), StatusCode::OK);
    let (_, body) = refused(open(&h, &bob, &b).await).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("the server has 3")
    );
    // A stranger's task costs no slot: 404 before any cap.
    let (status, json) = h.get(&bob, &format!("/v1/tasks/{a}/events")).await;
    assert_error(status, &json, StatusCode::NOT_FOUND, "not_found");

    // A stream that ends gives its slot back (the server notices at the next keep-alive).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let again = open(&h, &bob, &b).await;
        if again.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_the_token_that_opened_it_expires() {
    let h = Harness::start().await;
    let token = h
        .config
        .mint_token("alice", None, false, Duration::from_secs(2))
        .expect("mint");
    let id = h
        .submit_ok(&token, json!({"name": "hold", "args": {}}))
        .await;
    let began = Instant::now();
    let mut events = h.events(&token, &id).await.expect("stream opens");
    let first = events.next().await.expect("the current record");
    assert_eq!(first.data["status"], "pending");
    assert!(
        events.rest().await.is_empty(),
        "nothing else happened to the task"
    );
    let lasted = began.elapsed();
    assert!(
        lasted >= Duration::from_millis(900) && lasted < Duration::from_secs(8),
        "the stream ended with its token, after {lasted:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_once_the_store_cannot_write_and_readyz_reports_risky_settings() {
    let store = TestStore::default();
    let h = Harness::with(Options {
        store: Arc::new(store.clone()),
        ..Options::default()
    })
    .await;
    let (status, body) = h.get("", "/healthz").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = h.get("", "/readyz").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ready"})));

    store
        .warnings
        .lock()
        .expect("lock")
        .push("Redis evicts keys under memory pressure".into());
    let (status, body) = h.get("", "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["warnings"],
        json!(["Redis evicts keys under memory pressure"])
    );

    store.broken.store(true, Ordering::SeqCst);
    let (status, body) = h.get("", "/healthz").await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "store_broken",
    );
    h.stop().await;
}
