//! Spans over OTLP/HTTP: a real `errand serve --otlp-endpoint` exporting to a receiver inside
//! the test, which decodes each `POST /v1/traces` (protobuf). A submission carrying a
//! `traceparent` is a span of the caller's trace, each attempt of its task is a child of it
//! (here attempts of a worker-protocol task that fails once, then succeeds), a retry links to
//! the attempt before, and no attribute holds the caller's token. Without an endpoint, nothing
//! is sent and the task carries the caller's own `traceparent`.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use common::{Api, DEADLINE, Serve, run};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The caller's trace context.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const TASK: &str = "traced_job";

fn caller_traceparent() -> String {
    format!("00-{TRACE_ID}-{CALLER_SPAN}-01")
}

/// What the receiver was sent: each request's resource `service.name` and its spans.
#[derive(Default)]
struct Received {
    requests: usize,
    services: Vec<String>,
    spans: Vec<Span>,
}

/// An OTLP/HTTP receiver on a free port of 127.0.0.1, until dropped.
struct Receiver {
    url: String,
    received: Arc<Mutex<Received>>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(accept))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the receiver runs");
        });
        Self {
            url,
            received,
            server,
        }
    }

    /// The spans received so far.
    fn spans(&self) -> Vec<Span> {
        self.received.lock().expect("lock").spans.clone()
    }

    /// Waits until `found` finds what it looks for in the spans received.
    async fn wait_for<T>(&self, what: &str, found: impl Fn(&[Span]) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(t) = found(&self.spans()) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} among the spans received: {:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn accept(
    State(received): State<Arc<Mutex<Received>>>,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "text/plain")],
            b"not an ExportTraceServiceRequest".to_vec(),
        );
    };
    let mut received = received.lock().expect("lock");
    received.requests += 1;
    for resource in request.resource_spans {
        if let Some(name) = resource
            .resource
            .as_ref()
            .and_then(|r| string_attribute(&r.attributes, "service.name"))
        {
            received.services.push(name);
        }
        for scope in resource.scope_spans {
            received.spans.extend(scope.spans);
        }
    }
    // An empty ExportTraceServiceResponse: everything accepted.
    (
        StatusCode::OK,
        [("content-type", "application/x-protobuf")],
        Vec::new(),
    )
}

fn value_text(kv: &KeyValue) -> Option<String> {
    Some(match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(value_text)
}

fn attr(span: &Span, key: &str) -> Option<String> {
    string_attribute(&span.attributes, key)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The worker-protocol side: a worker token of this server, and its calls.
struct Worker(Api);

impl Worker {
    async fn new(serve: &Serve) -> Self {
        let dir = serve.data_dir.to_string_lossy().into_owned();
        let out = run(
            &serve.data_dir,
            &["--data-dir", &dir, "token", "--worker", "tracer"],
            &[],
        )
        .await;
        out.expect_code(0, "errand token --worker");
        let worker = Self(serve.client(out.last_line()));
        let types = json!({"types": [{
            "name": TASK,
            "queue": "py",
            "args_schema": {"type": "object"},
            "max_attempts": 3,
            "timeout_s": 30,
            "backoff": {"base_s": 0.05, "max_s": 0.05}
        }]});
        let (status, body) = worker
            .0
            .send(
                worker
                    .0
                    .request(Method::PUT, "/v1/worker/task-types")
                    .json(&types),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "register: {body}");
        worker
    }

    /// Claims one task (waiting for it).
    async fn claim(&self) -> Value {
        let body = json!({"types": [TASK], "max": 1, "wait_s": 10, "lease_s": 30});
        let (status, answer) = self.0.post("/v1/worker/claim", &body).await;
        assert_eq!(status, StatusCode::OK, "claim: {answer}");
        answer["tasks"][0].clone()
    }

    async fn complete(&self, task: &Value, outcome: Value) {
        let mut item = json!({"task_id": task["task_id"], "lease_token": task["lease_token"]});
        if let (Some(item), Value::Object(outcome)) = (item.as_object_mut(), outcome) {
            item.extend(outcome);
        }
        let body = json!({"completions": [item]});
        let (status, answer) = self.0.post("/v1/worker/complete", &body).await;
        assert_eq!(status, StatusCode::OK, "complete: {answer}");
        assert_eq!(answer["results"][0]["accepted"], true, "{answer}");
    }
}

/// Submits the task as the holder of `token`, with the caller's `traceparent`; its id.
async fn submit_traced(serve: &Serve, token: &str) -> String {
    let alice = serve.client(token);
    let request = alice
        .request(Method::POST, "/v1/tasks")
        .header("traceparent", caller_traceparent())
        .json(&json!({"name": TASK, "args": {"n": 1}}));
    let (status, answer) = alice.send(request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    answer["id"].as_str().expect("an id").to_string()
}

/// Runs the task: a retryable failure, then a success; the two claims.
async fn fail_once_then_succeed(worker: &Worker) -> (Value, Value) {
    let first = worker.claim().await;
    let failure =
        json!({"message": "busy", "kind": "upstream", "retryable": true, "retry_in_s": 0.05});
    worker
        .complete(&first, json!({"outcome": "failure", "error": failure}))
        .await;
    let second = worker.claim().await;
    assert_eq!(second["attempt"], 2, "{second}");
    worker
        .complete(
            &second,
            json!({"outcome": "success", "result": {"ok": true}}),
        )
        .await;
    (first, second)
}

/// A task run through a server: the submitter's token, the task's id, and the two claims.
struct Traced {
    token: String,
    id: String,
    claims: [Value; 2],
}

/// Submits the task as alice (tenant acme) with the caller's `traceparent`, fails its first
/// attempt and completes its second, and waits for its success.
async fn run_traced_task(serve: &Serve) -> Traced {
    let worker = Worker::new(serve).await;
    let token = serve.token("alice", Some("acme"), false).await;
    let id = submit_traced(serve, &token).await;
    let (first, second) = fail_once_then_succeed(&worker).await;
    let record = serve.client(&token).wait_done(&id).await;
    assert_eq!(record["status"], "success", "{record:#}");
    Traced {
        token,
        id,
        claims: [first, second],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_and_each_attempt_are_spans_of_the_callers_trace() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut serve = Serve::builder(dir.path())
        .args(&["--otlp-endpoint", &receiver.url])
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        // Quiet logs do not empty the traces: spans have their own filter.
        .env("ERRAND_LOG", "warn")
        .start();
    let Traced {
        token,
        id,
        claims: [first, second],
    } = run_traced_task(&serve).await;

    let in_trace = |spans: &[Span]| -> Vec<Span> {
        spans
            .iter()
            .filter(|s| hex(&s.trace_id) == TRACE_ID)
            .cloned()
            .collect()
    };
    let submit = receiver
        .wait_for("submit span", |spans| {
            in_trace(spans)
                .into_iter()
                .find(|s| attr(s, "route").as_deref() == Some("/v1/tasks"))
        })
        .await;
    assert_eq!(hex(&submit.parent_span_id), CALLER_SPAN, "{submit:#?}");
    assert_eq!(
        attr(&submit, "errand.task_id").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(attr(&submit, "errand.task").as_deref(), Some(TASK));
    assert_eq!(attr(&submit, "enduser.id").as_deref(), Some("alice"));
    assert_eq!(attr(&submit, "errand.tenant").as_deref(), Some("acme"));

    let attempts = receiver
        .wait_for("two attempt spans", |spans| {
            let mut attempts: Vec<Span> = in_trace(spans)
                .into_iter()
                .filter(|s| attr(s, "errand.attempt").is_some())
                .collect();
            attempts.sort_by_key(|s| attr(s, "errand.attempt"));
            (attempts.len() >= 2).then_some(attempts)
        })
        .await;
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    for (n, (attempt, claim)) in attempts.iter().zip([&first, &second]).enumerate() {
        let n = (n + 1).to_string();
        assert_eq!(attr(attempt, "errand.attempt"), Some(n.clone()));
        assert_eq!(
            attempt.parent_span_id, submit.span_id,
            "attempt {n}: a child of the submission"
        );
        assert_eq!(
            attr(attempt, "errand.task_id").as_deref(),
            Some(id.as_str())
        );
        assert_eq!(attr(attempt, "errand.task").as_deref(), Some(TASK));
        assert_eq!(attr(attempt, "enduser.id").as_deref(), Some("alice"));
        assert_eq!(attr(attempt, "errand.tenant").as_deref(), Some("acme"));
        // The remote worker was handed the attempt span as its parent.
        let handed = claim["context"]["traceparent"]
            .as_str()
            .expect("a traceparent");
        assert_eq!(
            handed,
            format!("00-{TRACE_ID}-{}-01", hex(&attempt.span_id)),
            "attempt {n}'s claim"
        );
    }
    let links = &attempts[1].links;
    assert_eq!(
        links.len(),
        1,
        "the retry links to the first attempt: {links:#?}"
    );
    assert_eq!(links[0].span_id, attempts[0].span_id);
    assert_eq!(hex(&links[0].trace_id), TRACE_ID);
    assert!(attempts[0].links.is_empty());

    serve.terminate();
    let received = receiver.received.lock().expect("lock");
    assert!(
        received.services.iter().all(|s| s == "errand"),
        "{:?}",
        received.services
    );
    // No attribute anywhere (spans, their events and links) holds the bearer token.
    for span in &received.spans {
        let attributes = span
            .attributes
            .iter()
            .chain(span.events.iter().flat_map(|e| &e.attributes))
            .chain(span.links.iter().flat_map(|l| &l.attributes));
        for kv in attributes {
            let text = value_text(kv).unwrap_or_default();
            assert!(
                !text.contains(&token),
                "the token is in the attribute {} of span {}",
                kv.key,
                span.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The SDK's own variable for a traces URL is no endpoint for errand: only the flag,
    // OTEL_EXPORTER_OTLP_ENDPOINT or the config file turn export on.
    let traces = format!("{}/v1/traces", receiver.url);
    let mut serve = Serve::builder(dir.path())
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces)
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .start();
    let Traced { claims, .. } = run_traced_task(&serve).await;
    for claim in claims {
        assert_eq!(
            claim["context"]["traceparent"],
            caller_traceparent(),
            "the caller's own traceparent"
        );
    }
    // Anything batched would be sent at exit.
    serve.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received.lock().expect("lock").requests, 0);
}
