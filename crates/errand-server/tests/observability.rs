//! What the server tells about each request and keeps to itself: request and correlation ids,
//! the caller's context as tasks see it, the credential (sealed, never shown), the request
//! log, the metrics, and the OpenAPI document against real answers.

mod common;

use common::{Harness, sha256};
use errand_core::{ClaimRequest, TaskId};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Everything logged in this test binary, as JSON lines.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

fn logs() -> &'static Capture {
    static LOGS: OnceLock<Capture> = OnceLock::new();
    LOGS.get_or_init(|| {
        let capture = Capture::default();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(capture.clone())
            .try_init()
            .expect("the only subscriber of this test binary");
        capture
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_correlation_ids_are_taken_or_made_and_always_echoed() {
    logs();
    let h = Harness::start().await;
    let token = h.token("alice", None, false);

    let response = h
        .http
        .get(h.url("/v1/tasks"))
        .bearer_auth(&token)
        .header("x-request-id", "req-123")
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-request-id"], "req-123");
    assert_eq!(response.headers()["x-correlation-id"], "req-123");

    let response = h
        .http
        .get(h.url("/v1/tasks"))
        .bearer_auth(&token)
        .header("x-request-id", "req-124")
        .header("x-correlation-id", "order-9")
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-request-id"], "req-124");
    assert_eq!(response.headers()["x-correlation-id"], "order-9");

    // Generated (UUIDv7) when absent or unusable, on errors and unauthenticated routes too.
    for (path, with_token, bad_id) in [
        ("/v1/tasks", true, None),
        ("/v1/tasks", false, None),
        ("/v1/tasks/not-an-id", true, Some("has spaces in it")),
        ("/v1/tasks", true, Some(&*"x".repeat(129))),
        ("/nowhere", false, None),
        ("/healthz", false, None),
    ] {
        let mut request = h.http.get(h.url(path));
        if with_token {
            request = request.bearer_auth(&token);
        }
        if let Some(bad) = bad_id {
            request = request.header("x-request-id", bad);
        }
        let response = request.send().await.expect("request");
        let id = response.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_string();
        let uuid = uuid::Uuid::parse_str(&id).expect("a generated request id is a UUID");
        assert_eq!(uuid.get_version_num(), 7, "{path}");
        assert_eq!(response.headers()["x-correlation-id"], id.as_str());
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_see_the_callers_context_with_the_token_as_credential() {
    logs();
    let h = Harness::start().await;
    let token = h.token("alice", Some("acme"), true);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = h
        .http
        .post(h.url("/v1/tasks"))
        .bearer_auth(&token)
        .header("x-request-id", "req-ctx")
        .header("traceparent", traceparent)
        .header("x-client", "web-7")
        .header("x-not-listed", "nope")
        .header("cookie", "session=s3cr3t")
        .json(&json!({"name": "whoami", "args": {}}))
        .send()
        .await
        .expect("submit");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (_, record) = h.get(&token, &format!("/v1/tasks/{id}")).await;
    assert_eq!(record["request_id"], "req-ctx");
    assert_eq!(record["correlation_id"], "req-ctx");

    let worker = h.worker();
    let done = h.wait_status(&token, &id, "success").await;
    let seen = &done["result"];
    assert_eq!(seen["user_id"], "alice");
    assert_eq!(seen["tenant"], "acme");
    assert_eq!(seen["roles"], json!(["admin"]));
    assert_eq!(seen["request_id"], "req-ctx");
    assert_eq!(seen["correlation_id"], "req-ctx");
    assert_eq!(seen["traceparent"], traceparent);
    // Allow-listed headers only; Authorization and Cookie never, although the list names them.
    assert_eq!(seen["headers"], json!({"x-client": "web-7"}));
    // The bearer token itself is the credential the task gets.
    assert_eq!(seen["credential_sha256"], sha256(&token));
    worker.shutdown(common::DEADLINE).await;
    h.stop().await;
}

#[tokio::test]
async fn the_credential_is_sealed_and_expires_with_the_token() {
    logs();
    let h = Harness::start().await;
    let token = h
        .config
        .mint_token("alice", None, false, Duration::from_secs(90))
        .expect("mint");
    let exp = {
        use base64::Engine as _;
        let claims = token.split('.').nth(1).expect("claims");
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .expect("b64");
        serde_json::from_slice::<Value>(&claims).expect("json")["exp"]
            .as_i64()
            .expect("exp")
    };
    let id = h
        .submit_ok(&token, json!({"name": "hold", "args": {}}))
        .await;
    let claimed = h
        .store
        .claim(&ClaimRequest {
            queues: vec!["default".into()],
            limit: 1,
            lease: Duration::from_secs(30),
            worker_id: "test".into(),
        })
        .await
        .expect("claim");
    assert_eq!(claimed[0].lease.id.to_string(), id);
    let sealed = claimed[0].context.as_ref().expect("the task has a context");
    assert!(!sealed.as_str().contains(&token));
    assert!(!sealed.as_str().contains("alice"));
    let opened = sealed
        .open(&h.key.clone().into(), claimed[0].seal_binding())
        .expect("opens with the server's key");
    let expires_at = opened.credential_expires_at().expect("expiry");
    assert_eq!(expires_at.timestamp(), exp);
    assert_eq!(opened.credential().expect("credential").expose(), token);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_appears_in_no_response_and_no_log_and_requests_are_logged() {
    logs();
    let h = Harness::start().await;
    let token = h.token("logged-user", None, false);
    let signature = token.rsplit('.').next().expect("signature").to_string();
    let worker = h.worker();
    let mut bodies = Vec::new();

    let (status, json) = h
        .submit(&token, json!({"name": "whoami", "args": {}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = json["id"].as_str().expect("id").to_string();
    bodies.push(json.to_string());
    h.wait_status(&token, &id, "success").await;
    for path in [
        format!("/v1/tasks/{id}"),
        "/v1/tasks".into(),
        "/v1/task-types".into(),
    ] {
        bodies.push(h.get(&token, &path).await.1.to_string());
    }
    let mut events = h.events(&token, &id).await.expect("stream");
    bodies.extend(events.rest().await.into_iter().map(|e| e.data.to_string()));
    for action in ["cancel", "retry"] {
        bodies.push(
            h.post(&token, &format!("/v1/tasks/{id}/{action}"))
                .await
                .1
                .to_string(),
        );
    }
    bodies.push(
        h.submit(&token, json!({"name": "strict", "args": {"count": "x"}}))
            .await
            .1
            .to_string(),
    );
    // A refused token is not echoed either.
    let tampered = format!("{token}x");
    bodies.push(h.get(&tampered, "/v1/tasks").await.1.to_string());
    for body in &bodies {
        assert!(
            !body.contains(&signature),
            "the token leaked into a response: {body}"
        );
    }
    worker.shutdown(common::DEADLINE).await;
    h.stop().await;

    let logs = log_text();
    assert!(!logs.contains(&signature), "the token leaked into the logs");
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "request" && l["fields"]["user_id"] == "logged-user")
        .collect();
    let submit = lines
        .iter()
        .find(|l| l["fields"]["route"] == "/v1/tasks" && l["fields"]["method"] == "POST")
        .expect("the submission is logged");
    assert_eq!(submit["fields"]["status"], 202);
    assert!(submit["fields"]["latency_ms"].is_number());
    assert!(submit["fields"]["request_id"].is_string());
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["route"] == "/v1/tasks/{id}" && l["fields"]["status"] == 200)
    );
    assert!(lines.iter().any(|l| l["fields"]["route"] == "/v1/tasks/{id}/retry" && l["fields"]["status"] == 409));
    // Lines logged inside a request carry its ids and user through the span.
    let submitted = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| {
            l["fields"]["message"] == "task submitted" && l["fields"]["task_id"] == id.as_str()
        })
        .expect("the submission is logged inside the request");
    assert_eq!(submitted["span"]["user_id"], "logged-user");
    assert_eq!(
        submitted["span"]["request_id"],
        submit["fields"]["request_id"]
    );
}

#[tokio::test]
async fn metrics_count_requests_submissions_depth_and_refusals() {
    logs();
    let h = Harness::start().await;
    let token = h.token("alice", None, false);
    let worker = h.worker();
    let ran = h
        .submit_ok(&token, json!({"name": "whoami", "args": {}}))
        .await;
    h.wait_status(&token, &ran, "success").await;
    worker.shutdown(Duration::from_secs(5)).await;
    h.submit_ok(&token, json!({"name": "hold", "args": {}, "key": "k"}))
        .await;
    let (status, _) = h
        .submit(&token, json!({"name": "hold", "args": {}, "key": "k"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    h.get("garbage", "/v1/tasks").await;
    h.get(&token, &format!("/v1/tasks/{}", TaskId::new())).await;
    let response = h.http.get(h.url("/metrics")).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.expect("text");
    for expected in [
        "errand_http_requests_total{method=\"POST\",route=\"/v1/tasks\",status=\"202\"} 2",
        "errand_http_requests_total{method=\"POST\",route=\"/v1/tasks\",status=\"200\"} 1",
        "errand_http_requests_total{method=\"GET\",route=\"/v1/tasks/{id}\",status=\"404\"} 1",
        "errand_http_requests_total{method=\"GET\",route=\"/v1/tasks\",status=\"401\"} 1",
        "errand_tasks_submitted_total{task=\"hold\"} 1",
        "errand_tasks_deduplicated_total{task=\"hold\"} 1",
        "errand_auth_failures_total{reason=\"malformed_token\"} 1",
        "errand_store_tasks{state=\"waiting\"} 1",
        "errand_store_tasks{state=\"running\"} 0",
        "errand_store_up 1",
        "errand_task_duration_seconds_count{task=\"whoami\",outcome=\"success\"} 1",
        "errand_task_queue_wait_seconds_count{task=\"whoami\"} 1",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    // Every sample line is `name{labels} value` with a numeric value.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().expect("value");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    h.stop().await;
}

/// Checks `value` against the subset of JSON Schema the OpenAPI document uses.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let target = doc
            .pointer(r.trim_start_matches('#'))
            .ok_or(format!("bad ref {r}"))?;
        return validate(doc, target, value, at);
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{at}: bad type keyword")),
        };
        let ok = types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => false,
        });
        if !ok {
            return Err(format!("{at}: {value} is not of type {types:?}"));
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {options:?}"));
    }
    if schema["format"] == "date-time"
        && let Some(s) = value.as_str()
    {
        chrono::DateTime::parse_from_rfc3339(s).map_err(|e| format!("{at}: {s}: {e}"))?;
    }
    if schema["format"] == "uuid"
        && let Some(s) = value.as_str()
    {
        uuid::Uuid::parse_str(s).map_err(|e| format!("{at}: {s}: {e}"))?;
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                return Err(format!("{at}: missing required {name}"));
            }
        }
        let properties = schema["properties"].as_object();
        for (name, v) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(s) => validate(doc, s, v, &format!("{at}.{name}"))?,
                None if schema["additionalProperties"] == false => {
                    return Err(format!("{at}: {name} is not in the schema"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, v) in values.iter().enumerate() {
            validate(doc, items, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_covers_every_route_and_matches_real_answers() {
    logs();
    let h = Harness::start().await;
    let token = h.token("alice", Some("acme"), false);
    let response = h
        .http
        .get(h.url("/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");

    // Exactly the router's routes.
    let routes = [
        ("post", "/v1/tasks"),
        ("get", "/v1/tasks"),
        ("get", "/v1/tasks/counts"),
        ("get", "/v1/tasks/{id}"),
        ("get", "/v1/tasks/{id}/events"),
        ("post", "/v1/tasks/{id}/cancel"),
        ("post", "/v1/tasks/{id}/retry"),
        ("post", "/v1/tasks/bulk"),
        ("get", "/v1/task-types"),
        ("put", "/v1/worker/task-types"),
        ("post", "/v1/worker/claim"),
        ("post", "/v1/worker/heartbeat"),
        ("post", "/v1/worker/complete"),
        ("get", "/v1/me"),
        ("get", "/v1/admin/workers"),
        ("get", "/v1/admin/queues"),
        ("get", "/v1/admin/activity"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
    ];
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = routes
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);
    for (method, path) in routes {
        let path = path.replace("{id}", &TaskId::new().to_string());
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let response = h
            .http
            .request(method.clone(), h.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        let body = response.text().await.expect("text");
        assert!(
            !body.contains("no route for"),
            "{method} {path} is not routed"
        );
    }

    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let check = |name: &str, value: &Value| {
        if let Err(e) = validate(&doc, &schema(name), value, name) {
            panic!("{name} does not match the document: {e}\n{value}");
        }
    };

    // Each registered task's arguments, and a submission of it.
    for task in ["pipeline", "whoami", "hold", "strict"] {
        let args = &doc["components"]["schemas"][format!("{task}Args")];
        assert_eq!(args["type"], "object", "{task}: {args}");
        let submission = &doc["components"]["schemas"][format!("SubmitRequest.{task}")];
        assert_eq!(submission["properties"]["name"]["const"], task);
    }
    check(
        "SubmitRequest.strict",
        &json!({"name": "strict", "args": {"count": 2, "label": "x"}, "max_attempts": 3}),
    );
    assert!(
        validate(
            &doc,
            &schema("SubmitRequest.strict"),
            &json!({"name": "strict", "args": {"count": "two"}}),
            "submission"
        )
        .is_err(),
        "args are checked against the task's schema"
    );

    let worker = h.worker();
    let (status, submitted) = h
        .submit(&token, json!({"name": "pipeline", "args": {"steps": ["a", "b"], "wait_at": "b"}, "key": "spec"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    check("Submitted", &submitted);
    let id = submitted["id"].as_str().expect("id").to_string();
    let running = h
        .wait_for(&token, &id, |r| r["steps"][1]["status"] == "running")
        .await;
    check("TaskRecord", &running);
    h.gate.open(1);
    check("TaskRecord", &h.wait_status(&token, &id, "success").await);
    let failed = h
        .submit_ok(
            &token,
            json!({"name": "pipeline", "args": {"steps": ["a", "b"], "fail_at": "a"}}),
        )
        .await;
    check(
        "TaskRecord",
        &h.wait_status(&token, &failed, "failed").await,
    );
    let (_, retried) = h.post(&token, &format!("/v1/tasks/{failed}/retry")).await;
    check("TaskRecord", &retried);
    let held = h
        .submit_ok(&token, json!({"name": "hold", "args": {}}))
        .await;
    h.wait_status(&token, &held, "running").await;
    let (_, cancelling) = h.post(&token, &format!("/v1/tasks/{held}/cancel")).await;
    assert_eq!(cancelling["cancel_requested"], true);
    check("TaskRecord", &cancelling);
    let delayed = h
        .submit_ok(&token, json!({"name": "hold", "args": {}, "delay_s": 60}))
        .await;
    check(
        "TaskRecord",
        &h.get(&token, &format!("/v1/tasks/{delayed}")).await.1,
    );
    check("TaskPage", &h.get(&token, "/v1/tasks?limit=2").await.1);
    check("StateCounts", &h.get(&token, "/v1/tasks/counts").await.1);
    check("TaskTypes", &h.get(&token, "/v1/task-types").await.1);
    let mut events = h.events(&token, &id).await.expect("stream");
    for event in events.rest().await {
        check("TaskRecord", &event.data);
    }
    for (status, error) in [
        h.get(&token, "/v1/tasks/nope").await,
        h.get("bad", "/v1/tasks").await,
        h.submit(&token, json!({"name": "nope", "args": {}})).await,
        h.post(&token, &format!("/v1/tasks/{id}/cancel")).await,
    ] {
        assert!(status.is_client_error());
        check("Error", &error);
    }
    for path in ["/healthz", "/readyz"] {
        let json: Value = h
            .http
            .get(h.url(path))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        check("Health", &json);
    }
    h.gate.open(1);
    worker.shutdown(common::DEADLINE).await;
    h.stop().await;
}
