//! Bad input answers with the right status and errand's JSON error shape, never a 500: every
//! form of 401, 400, 404, 405, 413, 415, 422, a fuzz loop, a panicking route, and 503 while the
//! store is down.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use common::{Harness, Options, SECRET, TestStore, assert_error};
use errand_core::{Context, TaskId};
use errand_server::{ApiError, Caller, Json};
use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn signed<M: Mac + hmac::digest::KeyInit>(alg: &str, claims: &Value, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        B64URL.encode(json!({"alg": alg, "typ": "JWT"}).to_string()),
        B64URL.encode(claims.to_string())
    );
    let mut mac = <M as Mac>::new_from_slice(secret).expect("key");
    mac.update(input.as_bytes());
    format!("{input}.{}", B64URL.encode(mac.finalize().into_bytes()))
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    signed::<Hmac<sha2::Sha256>>("HS256", claims, secret)
}

#[tokio::test]
async fn every_kind_of_bad_token_is_a_distinct_401() {
    let h = Harness::start().await;
    let claims = json!({"sub": "alice", "exp": now() + 600});
    let cases: Vec<(&str, Option<String>, &str, &str)> = vec![
        (
            "no header",
            None,
            "missing_token",
            "authentication required",
        ),
        (
            "basic scheme",
            Some("Basic YWxpY2U6cHc=".into()),
            "malformed_authorization",
            "Bearer",
        ),
        (
            "bearer without token",
            Some("Bearer".into()),
            "malformed_authorization",
            "Bearer",
        ),
        (
            "not a JWT",
            Some("Bearer not-a-jwt".into()),
            "malformed_token",
            "well-formed",
        ),
        (
            "bad signature",
            Some(format!(
                "Bearer {}",
                hs256(&claims, b"some-other-secret-of-32-bytes-xxxx")
            )),
            "invalid_signature",
            "signature",
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                hs256(&json!({"sub": "alice", "exp": now() - 3600}), SECRET)
            )),
            "token_expired",
            "expired",
        ),
        (
            "HS512",
            Some(format!(
                "Bearer {}",
                signed::<Hmac<sha2::Sha512>>("HS512", &claims, SECRET)
            )),
            "unsupported_algorithm",
            "accepts only HS256",
        ),
        (
            "alg none",
            Some(format!(
                "Bearer {}.{}.",
                B64URL.encode(r#"{"alg":"none"}"#),
                B64URL.encode(claims.to_string())
            )),
            "unsupported_algorithm",
            "\"none\"",
        ),
        (
            "no user claim",
            Some(format!(
                "Bearer {}",
                hs256(&json!({"exp": now() + 600}), SECRET)
            )),
            "invalid_claims",
            "\"sub\"",
        ),
        (
            "not yet valid",
            Some(format!(
                "Bearer {}",
                hs256(
                    &json!({"sub": "alice", "exp": now() + 7200, "nbf": now() + 3600}),
                    SECRET
                )
            )),
            "token_not_yet_valid",
            "not valid before",
        ),
    ];
    let mut messages = std::collections::HashSet::new();
    for (what, header, code, says) in cases {
        for path in [
            "/v1/tasks",
            "/v1/task-types",
            &format!("/v1/tasks/{}", TaskId::new()),
        ] {
            let mut request = h.http.get(h.url(path));
            if let Some(header) = &header {
                request = request.header("authorization", header);
            }
            let response = request.send().await.expect("request");
            assert!(
                response.headers()["www-authenticate"]
                    .to_str()
                    .expect("ascii")
                    .starts_with("Bearer"),
                "{what}"
            );
            let status = response.status();
            let json: Value = response.json().await.expect("json");
            assert_error(status, &json, StatusCode::UNAUTHORIZED, code);
            let message = json["error"]["message"]
                .as_str()
                .expect("message")
                .to_string();
            assert!(message.contains(says), "{what}: {message}");
            messages.insert(message);
        }
    }
    assert!(messages.len() >= 9, "messages are distinct: {messages:?}");
    // A good token with the same claims passes.
    let good = hs256(&claims, SECRET);
    let (status, _) = h.get(&good, "/v1/tasks").await;
    assert_eq!(status, StatusCode::OK);
    // Operational routes need no token.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let response = h.http.get(h.url(path)).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    h.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_400s_with_a_reason() {
    let h = Harness::start().await;
    let token = h.token("alice", None, false);
    let raw = |body: &'static str| {
        h.http
            .post(h.url("/v1/tasks"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
    };
    let (status, json) = h.send(raw("{\"name\": \"hold\", ")).await;
    assert_error(status, &json, StatusCode::BAD_REQUEST, "invalid_json");
    let (status, json) = h.send(raw("not json at all")).await;
    assert_error(status, &json, StatusCode::BAD_REQUEST, "invalid_json");
    let (status, json) = h.send(raw("")).await;
    assert_error(status, &json, StatusCode::BAD_REQUEST, "invalid_json");

    let bodies = [
        (json!({"args": {}}), "name"),
        (json!({"name": "hold"}), "args"),
        (json!({"name": 5, "args": {}}), "name"),
        (
            json!({"name": "hold", "args": {}, "colour": "red"}),
            "colour",
        ),
        (
            json!({"name": "hold", "args": {}, "delay_s": -1}),
            "delay_s",
        ),
        (
            json!({"name": "hold", "args": {}, "delay_s": 1e300}),
            "delay_s",
        ),
        (
            json!({"name": "hold", "args": {}, "timeout_s": 0}),
            "timeout_s",
        ),
        (
            json!({"name": "hold", "args": {}, "max_attempts": 0}),
            "max_attempts",
        ),
        (
            json!({"name": "hold", "args": {}, "max_attempts": -3}),
            "max_attempts",
        ),
        (
            json!({"name": "hold", "args": {}, "max_attempts": 2.5}),
            "whole number",
        ),
        (
            json!({"name": "hold", "args": {}, "max_attempts": 1e9}),
            "max_attempts",
        ),
        (json!({"name": "hold", "args": {}, "key": ""}), "key"),
        (
            json!({"name": "hold", "args": {}, "key": "k".repeat(300)}),
            "key",
        ),
        (
            json!({"name": "hold", "args": {}, "key": "é".repeat(257)}),
            "256 characters",
        ),
        (json!([1, 2, 3]), "invalid type"),
    ];
    for (body, mentions) in bodies {
        let (status, json) = h.submit(&token, body.clone()).await;
        assert_error(status, &json, StatusCode::BAD_REQUEST, "invalid_body");
        assert!(
            json["error"]["message"]
                .as_str()
                .expect("message")
                .contains(mentions),
            "{body}: {json}"
        );
    }

    let (status, json) = h
        .send(
            h.http
                .post(h.url("/v1/tasks"))
                .bearer_auth(&token)
                .body(r#"{"name":"hold","args":{}}"#),
        )
        .await;
    assert_error(
        status,
        &json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    for path in [
        "/v1/tasks/nope",
        "/v1/tasks/12345/events",
        "/v1/tasks/%F0%9F%92%A5",
    ] {
        let (status, json) = h.get(&token, path).await;
        assert_error(status, &json, StatusCode::BAD_REQUEST, "invalid_id");
    }
    let (status, json) = h.post(&token, "/v1/tasks/not-a-uuid/cancel").await;
    assert_error(status, &json, StatusCode::BAD_REQUEST, "invalid_id");

    for query in [
        "status=bogus",
        "limit=0",
        "limit=1001",
        "limit=ten",
        "cursor=xyz",
        "sort=asc",
    ] {
        let (status, json) = h.get(&token, &format!("/v1/tasks?{query}")).await;
        assert_error(status, &json, StatusCode::BAD_REQUEST, "invalid_query");
    }
    h.stop().await;
}

#[tokio::test]
async fn unknown_tasks_and_bad_args_are_422s_with_serdes_message() {
    let h = Harness::start().await;
    let token = h.token("alice", None, false);
    let (status, json) = h
        .submit(&token, json!({"name": "no_such_task", "args": {}}))
        .await;
    assert_error(
        status,
        &json,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_task",
    );
    assert!(
        json["error"]["message"]
            .as_str()
            .expect("message")
            .contains("no_such_task")
    );

    let cases = [
        (json!({"count": 1}), "missing field `label`"),
        (
            json!({"count": "one", "label": "x"}),
            "invalid type: string \"one\"",
        ),
        (
            json!({"count": 1, "label": "x", "extra": true}),
            "unknown field `extra`",
        ),
        (json!(null), "invalid type: null"),
    ];
    for (args, serde_says) in cases {
        let (status, json) = h
            .submit(&token, json!({"name": "strict", "args": args}))
            .await;
        assert_error(
            status,
            &json,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_args",
        );
        assert!(
            json["error"]["message"]
                .as_str()
                .expect("message")
                .contains(serde_says),
            "{json}"
        );
    }
    // Nothing was stored.
    let (_, page) = h.get(&token, "/v1/tasks").await;
    assert!(page["items"].as_array().expect("items").is_empty());
    h.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let h = Harness::start().await;
    let token = h.token("alice", None, false);
    let (status, json) = h.get(&token, "/v2/everything").await;
    assert_error(status, &json, StatusCode::NOT_FOUND, "not_found");
    let (status, json) = h.get(&token, &format!("/v1/tasks/{}", TaskId::new())).await;
    assert_error(status, &json, StatusCode::NOT_FOUND, "not_found");
    let response = h
        .http
        .delete(h.url("/v1/tasks"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(response.headers().contains_key("allow"));
    let json: Value = response.json().await.expect("json");
    assert_eq!(json["error"]["code"], "method_not_allowed");
    h.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let config = errand_server::ServerConfig {
        body_limit: 4096,
        ..common::config()
    };
    let h = Harness::with(Options {
        config,
        ..Default::default()
    })
    .await;
    let token = h.token("alice", None, false);
    let big = json!({"name": "hold", "args": {}, "key": "x".repeat(8192)});
    let (status, json) = h.submit(&token, big).await;
    assert_error(
        status,
        &json,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    // The same without a Content-Length: a chunked body is cut off at the limit too.
    let addr = h.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let chunk = format!(
        "{{\"name\":\"hold\",\"args\":{{}},\"key\":\"{}\"}}",
        "y".repeat(8192)
    );
    let request = format!(
        "POST /v1/tasks HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    h.stop().await;
}

async fn whoami(caller: Caller, axum::Extension(context): axum::Extension<Context>) -> Json<Value> {
    let current = Context::current().and_then(|c| c.user_id().map(str::to_string));
    Json(json!({
        "user": caller.user_id(),
        "current": current,
        "extension": context.user_id(),
        "admin": caller.is_admin(),
    }))
}

async fn explode() -> Json<Value> {
    panic!("handler bug")
}

async fn teapot() -> Result<Json<Value>, ApiError> {
    Err(ApiError::new(
        StatusCode::IM_A_TEAPOT,
        "teapot",
        "short and stout",
    ))
}

async fn typed(axum::Json(body): axum::Json<Vec<u32>>) -> Json<usize> {
    Json(body.len())
}

#[tokio::test]
async fn application_routes_share_auth_context_and_error_shape_and_panics_are_contained() {
    let routes = axum::Router::new()
        .route("/v1/whoami", axum::routing::get(whoami))
        .route("/v1/explode", axum::routing::get(explode))
        .route("/v1/teapot", axum::routing::get(teapot))
        .route("/v1/typed", axum::routing::post(typed));
    let h = Harness::with(Options {
        routes: Some(routes),
        ..Default::default()
    })
    .await;
    let token = h.token("alice", None, true);

    let response = h
        .http
        .get(h.url("/v1/whoami"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, json) = h.get(&token, "/v1/whoami").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json,
        json!({"user": "alice", "current": "alice", "extension": "alice", "admin": true})
    );

    let (status, json) = h.get(&token, "/v1/teapot").await;
    assert_error(status, &json, StatusCode::IM_A_TEAPOT, "teapot");

    // axum's own extractor in an application route: its plain-text rejection becomes JSON.
    let (status, json) = h
        .send(
            h.http
                .post(h.url("/v1/typed"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("[1, \"two\"]"),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json["error"]["code"], "unprocessable");
    assert!(
        json["error"]["message"]
            .as_str()
            .expect("message")
            .contains("invalid type")
    );

    for _ in 0..3 {
        let response = h
            .http
            .get(h.url("/v1/explode"))
            .bearer_auth(&token)
            .header("x-request-id", "boom-1")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["x-request-id"], "boom-1");
        let json: Value = response.json().await.expect("json");
        assert_eq!(json["error"]["code"], "internal");
        assert!(
            !json["error"]["message"]
                .as_str()
                .expect("message")
                .contains("handler bug")
        );
    }
    // The server goes on serving.
    let (status, _) = h.get(&token, "/v1/whoami").await;
    assert_eq!(status, StatusCode::OK);
    h.stop().await;
}

#[tokio::test]
async fn fuzzed_requests_never_get_a_5xx() {
    let h = Harness::start().await;
    let token = h.token("fuzz", None, false);
    let mut rng = StdRng::seed_from_u64(0x5eed_e44a);
    let id = TaskId::new().to_string();
    let path_parts = [
        "v1",
        "tasks",
        "task-types",
        "events",
        "cancel",
        "retry",
        &id,
        "",
        "..",
        "%00",
        "%ff",
        "%F0%9F%92%A5",
        "healthz",
        "metrics",
        "x".repeat(300).leak(),
        "{id}",
        "%2F",
        "?",
        "%",
    ];
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    let json_bits = [
        "{",
        "}",
        "[",
        "]",
        "\"name\"",
        "\"args\"",
        ":",
        ",",
        "\"hold\"",
        "\"strict\"",
        "null",
        "1e999",
        "-0",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "{\"count\":4294967296}",
        "true",
        "\"key\"",
        "\"delay_s\"",
        "1e-400",
        "\"max_attempts\"",
        "18446744073709551616",
    ];
    for round in 0..600 {
        let depth = rng.random_range(1..6);
        let mut path = String::new();
        for _ in 0..depth {
            path.push('/');
            path.push_str(path_parts[rng.random_range(0..path_parts.len())]);
        }
        if rng.random_bool(0.2) {
            path.push_str("?status=");
            path.push_str(["running", "x", "%zz", ""][rng.random_range(0..4)]);
            path.push_str("&limit=");
            path.push_str(["1", "-1", "99999999999999999999", "abc"][rng.random_range(0..4)]);
        }
        let body: Vec<u8> = match rng.random_range(0..4) {
            0 => Vec::new(),
            1 => (0..rng.random_range(0..200))
                .map(|_| rng.random())
                .collect(),
            _ => (0..rng.random_range(1..30))
                .map(|_| json_bits[rng.random_range(0..json_bits.len())])
                .collect::<String>()
                .into_bytes(),
        };
        let method =
            reqwest::Method::from_bytes(methods[rng.random_range(0..methods.len())].as_bytes())
                .expect("method");
        let Ok(url) = reqwest::Url::parse(&h.url(&path)) else {
            continue;
        };
        let mut request = h.http.request(method.clone(), url).body(body.clone());
        request = match rng.random_range(0..4) {
            0 => request,
            1 => request.header(
                "authorization",
                format!(
                    "Bearer {}",
                    String::from_utf8_lossy(&body)
                        .chars()
                        .filter(|c| c.is_ascii_graphic())
                        .take(40)
                        .collect::<String>()
                ),
            ),
            _ => request.bearer_auth(&token),
        };
        if rng.random_bool(0.7) {
            request = request.header("content-type", "application/json");
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        assert!(
            status.as_u16() < 500,
            "round {round}: {method} {path} -> {status}"
        );
        assert!(response.headers().contains_key("x-request-id"));
        if status.is_client_error() && method != reqwest::Method::HEAD {
            let json: Value = response.json().await.expect("error bodies are JSON");
            assert!(json["error"]["code"].is_string(), "{method} {path}: {json}");
        }
    }
    // Well-formed submissions of random argument values: 202, 400 or 422, never 5xx.
    for _ in 0..200 {
        let args = match rng.random_range(0..4) {
            0 => json!({"count": rng.random::<i64>(), "label": "x"}),
            1 => json!({"count": rng.random::<u32>(), "label": rng.random::<f64>()}),
            2 => json!({"steps": ["a", "b"], "fail_at": rng.random::<bool>()}),
            _ => json!(rng.random::<u8>()),
        };
        let name = ["strict", "pipeline", "hold", "whoami"][rng.random_range(0..4)];
        let (status, json) = h.submit(&token, json!({"name": name, "args": args})).await;
        assert!(
            [
                StatusCode::ACCEPTED,
                StatusCode::BAD_REQUEST,
                StatusCode::UNPROCESSABLE_ENTITY
            ]
            .contains(&status),
            "{name} {args}: {status} {json}"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn an_unreachable_store_is_a_503_and_the_server_keeps_serving() {
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

    store.down.store(true, Ordering::SeqCst);
    let (status, json) = h.submit(&token, json!({"name": "hold", "args": {}})).await;
    assert_error(
        status,
        &json,
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
    );
    for path in [format!("/v1/tasks/{id}"), "/v1/tasks".into()] {
        let (status, json) = h.get(&token, &path).await;
        assert_error(
            status,
            &json,
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
        );
    }
    let (status, json) = h.events(&token, &id).await.err().expect("refused");
    assert_error(
        status,
        &json,
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
    );
    for action in ["cancel", "retry"] {
        let (status, json) = h.post(&token, &format!("/v1/tasks/{id}/{action}")).await;
        assert_error(
            status,
            &json,
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
        );
    }
    let response = h.http.get(h.url("/readyz")).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let json: Value = response.json().await.expect("json");
    assert_eq!(json["error"]["code"], "store_unavailable");
    // The error body says nothing about the store's internals.
    assert!(!json.to_string().contains("connection refused"));
    let response = h.http.get(h.url("/healthz")).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = h.http.get(h.url("/metrics")).send().await.expect("request");
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.expect("text");
    assert!(text.contains("errand_store_up 0"));
    assert!(
        text.contains("errand_store_errors_total{operation=\"enqueue\",kind=\"unavailable\"} 1")
    );

    store.down.store(false, Ordering::SeqCst);
    let response = h.http.get(h.url("/readyz")).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let (status, record) = h.get(&token, &format!("/v1/tasks/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["status"], "pending");
    h.stop().await;
}
