//! The harness of the integration tests: errand's router on a real listener on 127.0.0.1, a
//! real HTTP client, a real Worker running small test tasks on a store (a `MemoryStore` by
//! default), tokens for any user, and an SSE reader.
#![allow(dead_code)] // Each test binary uses a different part of the harness.

use async_trait::async_trait;
use errand_core::{
    CancelOutcome, ClaimRequest, Claimed, CompleteResult, Completion, Enqueued, EventStream, Lease,
    LeaseState, ListQuery, MemoryStore, NewTask, Owner, OwnerFilter, Page, QueueCounts, QueueDepth,
    Reaped, Registry, RetryOutcome, SealKey, StateCounts, StatusUpdate, Store, StoreError, Task,
    TaskCx, TaskError, TaskId, TaskRecord, WorkSignal, Worker, WorkerConfig, WorkerHandle,
};
use errand_server::{Server, ServerConfig};
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

pub const SECRET: &[u8] = b"integration-test-secret-of-32-bytes!";

/// How long any wait in these tests may take before it counts as a failure.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Holds `hold` tasks (and `pipeline` tasks at their `wait_at` step) until the test opens it.
#[derive(Debug)]
pub struct Gate(Semaphore);

impl Default for Gate {
    fn default() -> Self {
        Self(Semaphore::new(0))
    }
}

impl Gate {
    /// Lets `n` waiting tasks through.
    pub fn open(&self, n: usize) {
        self.0.add_permits(n);
    }

    async fn pass(&self, cx: &TaskCx) -> Result<(), TaskError> {
        tokio::select! {
            permit = self.0.acquire() => {
                permit.map_err(|_| TaskError::fatal("gate closed"))?.forget();
                Ok(())
            }
            () = cx.cancelled() => Err(TaskError::retryable("cancelled")),
        }
    }
}

/// Runs its steps in order with progress after each; waits at `wait_at`, fails at `fail_at`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub steps: Vec<String>,
    #[serde(default)]
    pub fail_at: Option<String>,
    #[serde(default)]
    pub wait_at: Option<String>,
}

impl Task for Pipeline {
    const NAME: &'static str = "pipeline";
    type Output = Value;

    async fn run(self, cx: TaskCx) -> Result<Value, TaskError> {
        let gate = cx.resource::<Gate>()?;
        cx.plan_steps(self.steps.iter().cloned());
        let total = self.steps.len() as u64;
        for (i, step) in self.steps.iter().enumerate() {
            cx.step(step, async {
                if self.wait_at.as_deref() == Some(step) {
                    gate.pass(&cx).await?;
                }
                if self.fail_at.as_deref() == Some(step) {
                    return Err(TaskError::fatal(format!("step {step} failed on purpose"))
                        .with_kind("bad_input")
                        .with_details(json!({"step": step, "index": i})));
                }
                Ok(())
            })
            .await?;
            cx.progress(i as u64 + 1, total, Some(format!("{step} done")));
        }
        Ok(json!({ "steps": total }))
    }

    fn max_attempts(&self) -> u32 {
        1
    }
}

/// Reports what the task saw of its context; the credential only as a SHA-256.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WhoAmI {}

impl Task for WhoAmI {
    const NAME: &'static str = "whoami";
    type Output = Value;

    async fn run(self, cx: TaskCx) -> Result<Value, TaskError> {
        let Some(ctx) = cx.context() else {
            return Ok(Value::Null);
        };
        Ok(json!({
            "user_id": ctx.user_id(),
            "tenant": ctx.tenant(),
            "roles": ctx.roles(),
            "request_id": ctx.request_id(),
            "correlation_id": ctx.correlation_id(),
            "traceparent": ctx.traceparent(),
            "headers": ctx.headers(),
            "credential_sha256": ctx.credential().ok().map(|s| sha256(s.expose())),
        }))
    }
}

/// Waits at the gate (or until cancelled).
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Hold {}

impl Task for Hold {
    const NAME: &'static str = "hold";
    type Output = ();

    async fn run(self, cx: TaskCx) -> Result<(), TaskError> {
        cx.resource::<Gate>()?.pass(&cx).await
    }

    fn max_attempts(&self) -> u32 {
        1
    }
}

/// Strictly typed arguments, for the 422 tests.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Strict {
    pub count: u32,
    pub label: String,
}

impl Task for Strict {
    const NAME: &'static str = "strict";
    type Output = u32;

    async fn run(self, _cx: TaskCx) -> Result<u32, TaskError> {
        Ok(self.count)
    }
}

pub fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register::<Pipeline>()
        .and_then(|r| r.register::<WhoAmI>())
        .and_then(|r| r.register::<Hold>())
        .and_then(|r| r.register::<Strict>())
        .expect("register test tasks");
    registry
}

pub fn config() -> ServerConfig {
    ServerConfig {
        jwt_secrets: vec![SECRET.to_vec()],
        header_allow_list: errand_core::HeaderAllowList::new([
            "x-client",
            "authorization",
            "cookie",
            "set-cookie",
        ]),
        ..Default::default()
    }
}

/// A running server and what it runs on.
pub struct Harness {
    pub base: String,
    pub http: reqwest::Client,
    pub config: ServerConfig,
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub key: SealKey,
    pub gate: Arc<Gate>,
    /// The server's attempt histograms, fed by [`Harness::worker`].
    observer: Arc<dyn errand_core::AttemptObserver>,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<std::io::Result<()>>>,
}

/// How to build a harness.
pub struct Options {
    pub store: Arc<dyn Store>,
    pub config: ServerConfig,
    pub routes: Option<axum::Router>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            store: Arc::new(MemoryStore::new()),
            config: config(),
            routes: None,
        }
    }
}

impl Harness {
    /// A server on a MemoryStore with the default test configuration.
    pub async fn start() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Self {
        let registry = Arc::new(registry());
        let key = SealKey::generate();
        let mut server = Server::new(
            Arc::clone(&options.store),
            Arc::clone(&registry),
            key.clone(),
            options.config.clone(),
        )
        .expect("valid config");
        if let Some(routes) = options.routes {
            server = server.routes(routes);
        }
        let remote = errand_core::RemoteWorkers::start(
            Arc::clone(&options.store),
            key.clone(),
            errand_core::RemoteConfig {
                cancel_grace: Duration::from_millis(500),
                ..Default::default()
            },
        );
        server = server.remote_workers(remote);
        let observer = server.attempt_observer();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(DEADLINE)
                .build()
                .expect("client"),
            config: options.config,
            store: options.store,
            registry,
            key,
            gate: Arc::new(Gate::default()),
            observer,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// A worker on the harness's store, with fast status reports.
    pub fn worker(&self) -> WorkerHandle {
        Worker::new(
            Arc::clone(&self.store),
            Arc::clone(&self.registry),
            self.key.clone(),
        )
        .config(WorkerConfig {
            report_interval: Duration::from_millis(5),
            poll_interval: Duration::from_millis(50),
            publish_interval: Duration::from_millis(50),
            ..Default::default()
        })
        .resource(Arc::clone(&self.gate))
        .observer(Arc::clone(&self.observer))
        .start()
    }

    pub fn token(&self, user: &str, tenant: Option<&str>, admin: bool) -> String {
        self.config
            .mint_token(user, tenant, admin, Duration::from_secs(3600))
            .expect("mint")
    }

    /// A worker's token (the `worker` role).
    pub fn worker_token(&self, name: &str) -> String {
        self.config
            .mint_worker_token(name, Duration::from_secs(3600))
            .expect("mint")
    }

    /// POSTs (or PUTs) `body` as JSON with `token`.
    pub async fn call(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        self.send(
            self.http
                .request(method, self.url(path))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(self.url(path)).bearer_auth(token))
            .await
    }

    pub async fn post(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.send(self.http.post(self.url(path)).bearer_auth(token))
            .await
    }

    pub async fn submit(&self, token: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            self.http
                .post(self.url("/v1/tasks"))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    /// Submits and returns the new task's id, asserting 202.
    pub async fn submit_ok(&self, token: &str, body: Value) -> String {
        let (status, json) = self.submit(token, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{json}");
        json["id"].as_str().expect("id").to_string()
    }

    /// Polls the task until `done` holds for its record.
    pub async fn wait_for(&self, token: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let started = tokio::time::Instant::now();
        loop {
            let (status, record) = self.get(token, &format!("/v1/tasks/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{record}");
            if done(&record) {
                return record;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "task never reached the expected state: {record}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn wait_status(&self, token: &str, id: &str, status: &str) -> Value {
        self.wait_for(token, id, |r| r["status"] == status).await
    }

    /// Opens the task's event stream.
    pub async fn events(&self, token: &str, id: &str) -> Result<SseReader, (StatusCode, Value)> {
        let response = self
            .http
            .get(self.url(&format!("/v1/tasks/{id}/events")))
            .bearer_auth(token)
            .send()
            .await
            .expect("events request");
        if response.status() != StatusCode::OK {
            let status = response.status();
            let json = response.json().await.unwrap_or(Value::Null);
            return Err((status, json));
        }
        Ok(SseReader {
            response,
            buffer: String::new(),
            comments: 0,
        })
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            tokio::time::timeout(DEADLINE, served)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server io");
        }
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
}

/// Reads a Server-Sent Events response, event by event.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
    /// Comment lines (keep-alives) seen so far.
    pub comments: usize,
}

impl SseReader {
    /// The next event, or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let data = serde_json::from_str(&data).expect("event data is JSON");
                return Some(SseEvent { event, data });
            }
            let chunk = tokio::time::timeout(DEADLINE, self.response.chunk())
                .await
                .expect("event stream stalled")
                .expect("event stream read")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }

    /// Every remaining event, until the stream ends.
    pub async fn rest(&mut self) -> Vec<SseEvent> {
        let mut all = Vec::new();
        while let Some(e) = self.next().await {
            all.push(e);
        }
        all
    }
}

/// The ids of a listing page's items, in order.
pub fn page_ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

/// The statuses of a sequence of records, consecutive repeats folded.
pub fn status_changes(records: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in records {
        let s = r["status"].as_str().expect("status").to_string();
        if out.last() != Some(&s) {
            out.push(s);
        }
    }
    out
}

/// Asserts `json` is errand's error shape with `code`.
#[track_caller]
pub fn assert_error(status: StatusCode, json: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{json}");
    assert_eq!(json["error"]["code"], code, "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{json}"
    );
}

/// A MemoryStore with switches for the tests: `down` makes every call fail with
/// `StoreError::Unavailable`; `blind_watch` makes `watch` streams that never yield;
/// `cancel_on_watch` cancels a task inside the next `watch` call, before subscribing;
/// `rewind_times` gives every record returned (by `get` and by watches) an `updated_at`
/// earlier than the record returned before it, as clocks of different hosts can. `watches`
/// counts `watch` calls; `broken` makes `healthy` fail, and `warnings` is what the store says
/// about its settings.
#[derive(Clone, Default)]
pub struct TestStore {
    pub inner: MemoryStore,
    pub down: Arc<AtomicBool>,
    pub blind_watch: Arc<AtomicBool>,
    pub cancel_on_watch: Arc<Mutex<Option<TaskId>>>,
    pub rewind_times: Arc<AtomicBool>,
    rewound: Arc<AtomicI64>,
    pub watches: Arc<AtomicUsize>,
    /// `healthy` fails (a store part inside the process died).
    pub broken: Arc<AtomicBool>,
    /// What `warnings` answers.
    pub warnings: Arc<Mutex<Vec<String>>>,
}

impl TestStore {
    /// `record`, with an `updated_at` a second before the previous rewound record's when
    /// `rewind_times` is on.
    fn rewind(&self, mut record: TaskRecord) -> TaskRecord {
        if self.rewind_times.load(Ordering::SeqCst) {
            let n = self.rewound.fetch_add(1, Ordering::SeqCst);
            let far = chrono::DateTime::from_timestamp(4_102_444_800, 0).expect("year 2100");
            record.updated_at = far - chrono::Duration::seconds(n);
        }
        record
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable(
                "connection refused (test switch)".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for TestStore {
    async fn enqueue(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, StoreError> {
        self.check()?;
        self.inner.enqueue(tasks).await
    }
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        self.check()?;
        self.inner.claim(request).await
    }
    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        self.check()?;
        self.inner.heartbeat(leases, extend).await
    }
    async fn report(
        &self,
        updates: Vec<(Lease, StatusUpdate)>,
    ) -> Result<Vec<LeaseState>, StoreError> {
        self.check()?;
        self.inner.report(updates).await
    }
    async fn complete(
        &self,
        completions: Vec<Completion>,
    ) -> Result<Vec<CompleteResult>, StoreError> {
        self.check()?;
        self.inner.complete(completions).await
    }
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.check()?;
        Ok(self.inner.get(id).await?.map(|r| self.rewind(r)))
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.check()?;
        self.inner.list(query).await
    }
    async fn cancel(&self, id: TaskId, by: &Owner) -> Result<CancelOutcome, StoreError> {
        self.check()?;
        self.inner.cancel(id, by).await
    }
    async fn retry(&self, id: TaskId, by: &Owner) -> Result<RetryOutcome, StoreError> {
        self.check()?;
        self.inner.retry(id, by).await
    }
    async fn watch(&self, id: TaskId) -> Result<EventStream, StoreError> {
        self.check()?;
        self.watches.fetch_add(1, Ordering::SeqCst);
        let cancel = self
            .cancel_on_watch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = cancel {
            self.inner
                .cancel(task, &Owner::new("operator", None))
                .await?;
        }
        if self.blind_watch.load(Ordering::SeqCst) {
            return Ok(futures::stream::pending().boxed());
        }
        let store = self.clone();
        Ok(self
            .inner
            .watch(id)
            .await?
            .map(move |r| store.rewind(r))
            .boxed())
    }
    async fn cancellations(&self) -> Result<BoxStream<'static, TaskId>, StoreError> {
        self.check()?;
        self.inner.cancellations().await
    }
    async fn work_signal(&self, queues: &[String]) -> Result<Box<dyn WorkSignal>, StoreError> {
        self.check()?;
        self.inner.work_signal(queues).await
    }
    async fn reap(&self) -> Result<Reaped, StoreError> {
        self.check()?;
        self.inner.reap().await
    }
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.purge_expired().await
    }
    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        self.check()?;
        self.inner.depth().await
    }
    async fn counts(&self, owner: &OwnerFilter) -> Result<StateCounts, StoreError> {
        self.check()?;
        self.inner.counts(owner).await
    }
    async fn queues(&self) -> Result<Vec<QueueCounts>, StoreError> {
        self.check()?;
        self.inner.queues().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.check()
    }
    async fn healthy(&self) -> Result<(), StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "the writer thread stopped (test switch)".into(),
            ));
        }
        self.inner.healthy().await
    }
    async fn warnings(&self) -> Result<Vec<String>, StoreError> {
        self.check()?;
        Ok(self
            .warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }
    async fn get_meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.inner.get_meta(name).await
    }
    async fn swap_meta(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        self.inner.swap_meta(name, expected, value).await
    }
}
