//! Tasks and helpers shared by the core's integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use errand_core::*;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod faulty_store;

/// How long a test waits for what it expects before it fails.
pub const LONG: Duration = Duration::from_secs(30);

/// The identity a task saw, recorded per attempt by tasks that get a [`Journal`] resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub task: TaskId,
    pub attempt: u32,
    pub current_user: Option<String>,
    pub cx_user: Option<String>,
    pub request_id: Option<String>,
}

/// Where tasks write what they saw.
#[derive(Default)]
pub struct Journal(pub Mutex<Vec<Seen>>);

impl Journal {
    pub fn record(&self, cx: &TaskCx) {
        let current = Context::current();
        self.0.lock().expect("journal lock").push(Seen {
            task: cx.id(),
            attempt: cx.attempt(),
            current_user: current.as_ref().and_then(|c| c.user_id().map(String::from)),
            cx_user: cx.user_id().map(String::from),
            request_id: current
                .as_ref()
                .and_then(|c| c.request_id().map(String::from)),
        });
    }

    pub fn entries(&self) -> Vec<Seen> {
        self.0.lock().expect("journal lock").clone()
    }

    pub fn of(&self, id: TaskId) -> Vec<Seen> {
        self.entries()
            .into_iter()
            .filter(|s| s.task == id)
            .collect()
    }
}

/// Records what it sees, optionally sleeps, returns the user it saw.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Observe {
    pub sleep_ms: u64,
}

impl Task for Observe {
    const NAME: &'static str = "observe";
    type Output = Option<String>;
    async fn run(self, cx: TaskCx) -> Result<Option<String>, TaskError> {
        cx.resource::<Journal>()?.record(&cx);
        tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        Ok(Context::current().and_then(|c| c.user_id().map(String::from)))
    }
}

/// Fails (retryably) on its first `fail_times` attempts, then succeeds.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Flaky {
    pub fail_times: u32,
}

impl Task for Flaky {
    const NAME: &'static str = "flaky";
    type Output = u32;
    async fn run(self, cx: TaskCx) -> Result<u32, TaskError> {
        cx.resource::<Journal>()?.record(&cx);
        if cx.attempt() <= self.fail_times {
            return Err(TaskError::retryable(format!(
                "attempt {} fails",
                cx.attempt()
            )));
        }
        Ok(cx.attempt())
    }
    fn max_attempts(&self) -> u32 {
        5
    }
    fn backoff(&self) -> Backoff {
        Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50))
    }
}

/// Sleeps; when `cooperative`, stops early once its token fires.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Sleepy {
    pub ms: u64,
    pub cooperative: bool,
}

impl Task for Sleepy {
    const NAME: &'static str = "sleepy";
    type Output = &'static str;
    async fn run(self, cx: TaskCx) -> Result<&'static str, TaskError> {
        if let Ok(j) = cx.resource::<Journal>() {
            j.record(&cx);
        }
        let sleep = tokio::time::sleep(Duration::from_millis(self.ms));
        if self.cooperative {
            tokio::select! {
                _ = sleep => Ok("slept"),
                _ = cx.cancelled() => Err(TaskError::retryable("stopped early")),
            }
        } else {
            sleep.await;
            Ok("slept")
        }
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

/// Opened by a test to let every [`Held`] task of its test binary finish.
pub static HELD_OPEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Runs until [`HELD_OPEN`] is set (looking every 10 ms), deaf to cancellation: a task that is
/// certainly still running when a test acts, however loaded the machine.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Held {
    pub n: u32,
}

impl Task for Held {
    const NAME: &'static str = "held";
    type Output = &'static str;
    async fn run(self, cx: TaskCx) -> Result<&'static str, TaskError> {
        if let Ok(j) = cx.resource::<Journal>() {
            j.record(&cx);
        }
        while !HELD_OPEN.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok("released")
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

/// Spins inside one poll until its token fires, then fails at once: the token fires *while the
/// task is being polled*, from another thread, and the task returns in that same poll.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct SpinUntilCancelled;

impl Task for SpinUntilCancelled {
    const NAME: &'static str = "spin_until_cancelled";
    type Output = ();
    async fn run(self, cx: TaskCx) -> Result<(), TaskError> {
        cx.resource::<Journal>()?.record(&cx);
        while !cx.is_cancelled() {
            std::thread::sleep(Duration::from_millis(1));
        }
        Err(TaskError::retryable("stopped: my token fired"))
    }
}

/// A policy that panics (an empty `items` indexes out of bounds): a bug in task code that runs
/// outside the task's `run`.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct BadPolicy {
    pub items: Vec<u64>,
}

impl Task for BadPolicy {
    const NAME: &'static str = "bad_policy";
    type Output = ();
    async fn run(self, _cx: TaskCx) -> Result<(), TaskError> {
        Ok(())
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.items[0])
    }
}

/// Two steps; the first sleeps `ms` without watching its token.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct SlowStep {
    pub ms: u64,
}

impl Task for SlowStep {
    const NAME: &'static str = "slow_step";
    type Output = ();
    async fn run(self, cx: TaskCx) -> Result<(), TaskError> {
        cx.plan_steps(["a", "b"]);
        cx.step("a", async {
            tokio::time::sleep(Duration::from_millis(self.ms)).await;
            Ok(())
        })
        .await?;
        cx.step("b", async { Ok(()) }).await
    }
}

/// Panics on its first attempt.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct PanicOnce;

impl Task for PanicOnce {
    const NAME: &'static str = "panic_once";
    type Output = u32;
    async fn run(self, cx: TaskCx) -> Result<u32, TaskError> {
        if cx.attempt() == 1 {
            panic!("boom on attempt one");
        }
        Ok(cx.attempt())
    }
    fn backoff(&self) -> Backoff {
        Backoff::none()
    }
}

/// A four-step pipeline that fails at `fail_at`, if given.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Pipeline {
    pub fail_at: Option<String>,
}

impl Task for Pipeline {
    const NAME: &'static str = "pipeline";
    type Output = usize;
    async fn run(self, cx: TaskCx) -> Result<usize, TaskError> {
        let steps = ["chunk", "embed", "index", "freshness"];
        cx.plan_steps(steps);
        for (i, name) in steps.iter().enumerate() {
            let fail = self.fail_at.as_deref() == Some(name);
            cx.step(name, async {
                cx.progress(i as u64 + 1, steps.len() as u64, Some(name.to_string()));
                if fail {
                    Err(TaskError::fatal(format!("{name} failed: bad input"))
                        .with_kind("bad_input")
                        .with_details(serde_json::json!({"step": name})))
                } else {
                    Ok(())
                }
            })
            .await?;
        }
        Ok(steps.len())
    }
}

/// Reports progress `n` times, 1 ms apart.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Chatty {
    pub n: u64,
}

impl Task for Chatty {
    const NAME: &'static str = "chatty";
    type Output = ();
    async fn run(self, cx: TaskCx) -> Result<(), TaskError> {
        for i in 1..=self.n {
            cx.progress(i, self.n, None);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }
}

/// Returns the credential it was handed, or why there is none.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct UseCredential;

impl Task for UseCredential {
    const NAME: &'static str = "use_credential";
    type Output = String;
    async fn run(self, cx: TaskCx) -> Result<String, TaskError> {
        cx.resource::<Journal>()?.record(&cx);
        let ctx = cx.context().ok_or_else(|| TaskError::fatal("no context"))?;
        Ok(match ctx.credential() {
            Ok(secret) => format!("credential:{}", secret.expose().len()),
            Err(e) => format!("refused:{e}"),
        })
    }
}

pub fn registry() -> Arc<Registry> {
    let mut r = Registry::new();
    r.register::<Observe>()
        .and_then(|r| r.register::<Flaky>())
        .and_then(|r| r.register::<Sleepy>())
        .and_then(|r| r.register::<Held>())
        .and_then(|r| r.register::<PanicOnce>())
        .and_then(|r| r.register::<Pipeline>())
        .and_then(|r| r.register::<Chatty>())
        .and_then(|r| r.register::<UseCredential>())
        .and_then(|r| r.register::<SpinUntilCancelled>())
        .and_then(|r| r.register::<BadPolicy>())
        .and_then(|r| r.register::<SlowStep>())
        .expect("unique names");
    Arc::new(r)
}

pub fn user(name: &str) -> Context {
    Context::builder()
        .user_id(name)
        .tenant("acme")
        .request_id(format!("req-{name}"))
        .correlation_id(format!("corr-{name}"))
        .build()
}

/// Polls until the task is in a final state (or panics after `limit`).
pub async fn finished(store: &Arc<dyn Store>, id: TaskId, limit: Duration) -> TaskRecord {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let r = store.get(id).await.expect("get").expect("record exists");
        if r.status.is_terminal() {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {id} still {:?} after {limit:?}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls until `f` holds for the task's record.
pub async fn until(
    store: &Arc<dyn Store>,
    id: TaskId,
    limit: Duration,
    f: impl Fn(&TaskRecord) -> bool,
) -> TaskRecord {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let r = store.get(id).await.expect("get").expect("record exists");
        if f(&r) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached for {id}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A worker config for tests: quick reports and reaps.
pub fn config(concurrency: usize) -> WorkerConfig {
    WorkerConfig {
        concurrency,
        claim_batch: concurrency,
        report_interval: Duration::from_millis(20),
        cancel_grace: Duration::from_millis(200),
        ..WorkerConfig::default()
    }
}

/// A store with a client and a journal, and workers on demand.
pub struct Setup {
    pub store: Arc<dyn Store>,
    pub key: SealKey,
    pub client: Client,
    pub journal: Arc<Journal>,
}

pub fn setup(store: Arc<dyn Store>) -> Setup {
    let key = SealKey::generate();
    Setup {
        client: Client::new(store.clone(), key.clone()),
        store,
        key,
        journal: Arc::new(Journal::default()),
    }
}

impl Setup {
    pub fn worker(&self, config: WorkerConfig) -> WorkerHandle {
        Worker::new(self.store.clone(), registry(), self.key.clone())
            .config(config)
            .resource(self.journal.clone())
            .start()
    }
}
