//! Bad input against the real binary: every refusal has its status and JSON shape, and nothing
//! makes the server answer 500 or fall over.

mod common;

use common::{Api, Serve, document, now_s, sign, tempdir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Asserts an error answer: `status`, and `{error: {code, message}}` with this code.
#[track_caller]
fn refused(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "a message says why: {body}");
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only `error`: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_unauthenticated_request_is_a_401_with_its_reason() {
    let dir = tempdir();
    let server = Serve::start(dir.path(), &[]);
    let secret = server.jwt_secret();
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let claims = json!({"sub": "alice", "iat": now_s(), "exp": now_s() + 600});
    let valid = sign(&secret, &header, &claims);
    let other_secret = b"not-the-server-secret-but-32-bytes-long".as_slice();
    let expired = json!({"sub": "alice", "iat": now_s() - 7200, "exp": now_s() - 3600});
    let hs512 = json!({"alg": "HS512", "typ": "JWT"});
    let unsigned = {
        let mut parts: Vec<String> = sign(&secret, &json!({"alg": "none"}), &claims)
            .split('.')
            .map(str::to_string)
            .collect();
        parts[2].clear();
        parts.join(".")
    };
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "missing_token"),
        (
            "a bad signature",
            Some(sign(other_secret, &header, &claims)),
            "invalid_signature",
        ),
        (
            "an expired token",
            Some(sign(&secret, &header, &expired)),
            "token_expired",
        ),
        (
            "another algorithm",
            Some(sign(&secret, &hs512, &claims)),
            "unsupported_algorithm",
        ),
        ("alg none", Some(unsigned), "unsupported_algorithm"),
        ("garbage", Some("not.a.jwt".to_string()), "malformed_token"),
    ];
    let anonymous = server.anonymous();
    let some_id = uuid::Uuid::now_v7().to_string();
    for (what, token, code) in &cases {
        let api = match token {
            Some(t) => anonymous.with_token(t),
            None => anonymous.clone(),
        };
        for (method, path) in [
            (Method::GET, "/v1/tasks".to_string()),
            (Method::GET, format!("/v1/tasks/{some_id}")),
            (Method::GET, format!("/v1/tasks/{some_id}/events")),
            (Method::POST, format!("/v1/tasks/{some_id}/cancel")),
            (Method::GET, "/v1/search?q=x".to_string()),
            (Method::GET, "/v1/conversations/s1".to_string()),
            (Method::GET, "/v1/task-types".to_string()),
        ] {
            let answer = api.send(api.request(method.clone(), &path)).await;
            assert_eq!(
                answer.0,
                StatusCode::UNAUTHORIZED,
                "{what}: {method} {path}"
            );
            refused(&answer, StatusCode::UNAUTHORIZED, code);
        }
        let answer = api
            .post(
                "/v1/tasks",
                &json!({"name": "ingest_document", "args": {"title": "t", "content": "c"}}),
            )
            .await;
        refused(&answer, StatusCode::UNAUTHORIZED, code);
    }
    // A scheme other than Bearer.
    let answer = anonymous
        .send(
            anonymous
                .request(Method::GET, "/v1/tasks")
                .header("authorization", format!("Basic {valid}")),
        )
        .await;
    refused(&answer, StatusCode::UNAUTHORIZED, "malformed_authorization");
    // The same claims, correctly signed, are accepted; nothing was submitted by the refusals.
    let (status, page) = anonymous.with_token(&valid).get("/v1/tasks").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"], json!([]));
    assert_no_server_errors(&anonymous).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_400_404_409_413_415_422_and_never_500() {
    let dir = tempdir();
    let server = Serve::start(dir.path(), &[]);
    let alice = server.user("alice", None).await;

    // 404: unknown task, unknown route; 400 for an id that is not one.
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/v1/tasks/{unknown}"),
        format!("/v1/tasks/{unknown}/events"),
        "/v1/conversations/nobody-has-this".to_string(),
    ] {
        refused(&alice.get(&path).await, StatusCode::NOT_FOUND, "not_found");
    }
    for action in ["cancel", "retry"] {
        refused(
            &alice
                .post_empty(&format!("/v1/tasks/{unknown}/{action}"))
                .await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    let (status, _) = alice.get("/v1/no-such-route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    refused(
        &alice.get("/v1/tasks/not-a-task-id").await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );

    // 409: cancel a finished task; retry a running one and a finished one.
    let done = alice.ingest("Done", "Finished already.").await;
    let record = alice.wait_done(&done).await;
    assert_eq!(record["status"], "success");
    refused(
        &alice.post_empty(&format!("/v1/tasks/{done}/cancel")).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    refused(
        &alice.post_empty(&format!("/v1/tasks/{done}/retry")).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    let long = alice.ingest("Long", &document(600_000, "conflict")).await;
    alice
        .wait_for(&long, "running", |r| r["status"] == "running")
        .await;
    refused(
        &alice.post_empty(&format!("/v1/tasks/{long}/retry")).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    // Cancelling it is allowed, and it ends cancelled; then a second cancel is a conflict and a
    // retry is allowed.
    let (status, body) = alice.post_empty(&format!("/v1/tasks/{long}/cancel")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let record = alice.wait_done(&long).await;
    assert_eq!(record["status"], "cancelled", "{record:#}");
    let (_, found) = alice.get("/v1/search?q=conflict").await;
    assert_eq!(
        found["results"],
        json!([]),
        "a cancelled document is not indexed"
    );
    refused(
        &alice.post_empty(&format!("/v1/tasks/{long}/cancel")).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    let (status, body) = alice.post_empty(&format!("/v1/tasks/{long}/retry")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // 413: a body over the limit (1 MiB by default).
    let huge =
        json!({"name": "ingest_document", "args": {"title": "t", "content": "a ".repeat(600_000)}});
    let (status, body) = alice.post("/v1/tasks", &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");

    // 422: args that do not fit the task, and unknown tasks.
    for args in [
        json!({"title": "t"}),
        json!({"title": 7, "content": "c"}),
        json!({"title": "t", "content": "c", "owner": "mallory"}),
        json!("a string"),
        json!(null),
    ] {
        let answer = alice
            .post(
                "/v1/tasks",
                &json!({"name": "ingest_document", "args": args}),
            )
            .await;
        refused(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_args");
    }
    let answer = alice
        .post(
            "/v1/tasks",
            &json!({"name": "persist_conversation", "args": {"session_id": "s", "messages": [{"role": "user"}]}}),
        )
        .await;
    refused(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_args");
    let answer = alice
        .post("/v1/tasks", &json!({"name": "no_such_task", "args": {}}))
        .await;
    refused(&answer, StatusCode::UNPROCESSABLE_ENTITY, "unknown_task");

    // 400: malformed JSON, a body of the wrong shape, bad fields and queries.
    for raw in [
        "{",
        "not json",
        "",
        "{\"name\": \"ingest_document\",",
        "{\"name\": \"ingest_document\", \"args\": }",
    ] {
        let answer = alice
            .send(
                alice
                    .request(Method::POST, "/v1/tasks")
                    .header("content-type", "application/json")
                    .body(raw),
            )
            .await;
        refused(&answer, StatusCode::BAD_REQUEST, "invalid_json");
    }
    for body in [
        json!({"args": {}}),
        json!([]),
        json!({"name": "ingest_document", "args": {}, "surprise": 1}),
        json!({"name": 5, "args": {}}),
    ] {
        let answer = alice.post("/v1/tasks", &body).await;
        refused(&answer, StatusCode::BAD_REQUEST, "invalid_body");
    }
    let args = json!({"title": "t", "content": "c"});
    for extra in [
        json!({"delay_s": -1}),
        json!({"timeout_s": 0}),
        json!({"max_attempts": 0}),
        json!({"key": ""}),
    ] {
        let mut body = json!({"name": "ingest_document", "args": args});
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        refused(
            &alice.post("/v1/tasks", &body).await,
            StatusCode::BAD_REQUEST,
            "invalid_body",
        );
    }
    for query in [
        "/v1/tasks?status=bogus",
        "/v1/tasks?limit=0",
        "/v1/tasks?limit=ten",
        "/v1/tasks?cursor=nope",
        "/v1/search",
        "/v1/search?q=",
    ] {
        let (status, body) = alice.get(query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body["error"]["code"].is_string(), "{query}: {body}");
    }
    // 415: not JSON.
    let (status, body) = alice
        .send(
            alice
                .request(Method::POST, "/v1/tasks")
                .header("content-type", "text/plain")
                .body("{}"),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");

    // After all of that, the server still works.
    let id = alice.ingest("Still here", "The server survived.").await;
    assert_eq!(alice.wait_done(&id).await["status"], "success");
    assert_no_server_errors(&alice).await;
    let logs = server.stderr();
    assert!(!logs.contains("panicked"), "{logs}");
}

/// Asserts that the server never answered 5xx, by its own metrics.
async fn assert_no_server_errors(api: &Api) {
    let (status, metrics) = api.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = metrics.as_str().expect("Prometheus text");
    assert!(text.contains("errand_http_requests_total"), "{text}");
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("errand_http_requests_total") && l.contains("status=\"5"))
        .collect();
    assert!(errors.is_empty(), "5xx answers: {errors:?}");
}
