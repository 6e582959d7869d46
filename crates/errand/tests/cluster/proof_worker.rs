//! The proof worker: this test binary, re-executed ([`spawn_proof_worker`]), running an
//! [`errand_core::Worker`] of the proofs' own task, [`Record`], on the store of its
//! [`WorkerSpec`].

use crate::cluster::binary::Backend;
use crate::cluster::proc::{Proc, after};
use crate::cluster::runs::{RunEnd, RunLine, RunLog};
use errand_core::{
    Context, Registry, SealKey, Secret, Task, TaskCx, TaskError, Worker, WorkerConfig, WorkerStats,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// Holds a proof worker's [`WorkerSpec`] as JSON: this test binary, started with it, runs a
/// worker instead of tests.
pub const WORKER_ENV: &str = "ERRAND_PROOF_WORKER";

/// The queue of [`Record`] tasks, the one queue the proof workers claim from. Not `default`:
/// an API that learns of the task as a remote task type (submissions over HTTP) must not put
/// it on the Rust workers' queue.
pub const PROOF_QUEUE: &str = "proofs";

/// What a proof worker prints once its worker runs.
const READY: &str = "proof worker running";

/// What a proof worker prints before its stats JSON, after a graceful shutdown.
const STATS: &str = "proof worker stats ";

/// The task of the proofs: sleeps `sleep_ms` (stopping early if its token fires), then
/// appends one [`RunLine`] to the worker's [`RunLog`].
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Record {
    /// How long the run takes.
    pub sleep_ms: u64,
    /// The user the test submitted it for. The task never acts on it: it only writes it
    /// down beside the user its context says, so the log checks itself.
    pub submitted_for: String,
    /// The SHA-256 (hex) of the credential the submitter's context holds: a run checks the
    /// credential it could unseal against it without the secret itself in the arguments.
    pub credential_digest: String,
}

impl Record {
    /// A run of `sleep_ms` for `user`, to submit with [`Record::context`].
    pub fn new(user: &str, sleep_ms: u64) -> Self {
        Self {
            sleep_ms,
            submitted_for: user.to_string(),
            credential_digest: digest(&credential_of(user)),
        }
    }

    /// The context the test submits a [`Record`] for `user` with: the user, and a credential
    /// that only this user's runs may see.
    pub fn context(user: &str) -> Context {
        Context::builder()
            .user_id(user)
            .tenant("proofs")
            .credential(Secret::new(credential_of(user)), None)
            .build()
    }

    /// The body of `POST /v1/tasks` submitting a run of `sleep_ms` for the holder of `token`,
    /// `user` (the API seals the token as the credential).
    pub fn submission(user: &str, token: &str, sleep_ms: u64) -> Value {
        json!({
            "name": Self::NAME,
            "args": Self {
                sleep_ms,
                submitted_for: user.to_string(),
                credential_digest: digest(token),
            },
            "max_attempts": 10,
        })
    }

    /// The remote task type an API is told of (`PUT /v1/worker/task-types`) so that it takes
    /// [`Record`] submissions over HTTP, onto [`PROOF_QUEUE`].
    pub fn task_type() -> Value {
        json!({"types": [{
            "name": Self::NAME,
            "queue": PROOF_QUEUE,
            "args_schema": schemars::schema_for!(Record),
            "max_attempts": 10,
            "timeout_s": 60,
        }]})
    }
}

fn credential_of(user: &str) -> String {
    format!("token-of-{user}")
}

fn digest(secret: &str) -> String {
    format!("{:x}", Sha256::digest(secret.as_bytes()))
}

impl Task for Record {
    const NAME: &'static str = "proof_record";
    type Output = u32;

    async fn run(self, cx: TaskCx) -> Result<u32, TaskError> {
        let log = cx.resource::<RunLog>()?;
        let context_user = Context::current().and_then(|c| c.user_id().map(str::to_string));
        let credential_ok = cx
            .context()
            .and_then(|c| c.credential().ok())
            .is_some_and(|s| digest(s.expose()) == self.credential_digest);
        let end = tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(self.sleep_ms)) => RunEnd::Done,
            () = cx.cancelled() => RunEnd::Interrupted,
        };
        let line = RunLine {
            task: cx.id(),
            submitted_for: self.submitted_for,
            context_user,
            cx_user: cx.user_id().map(str::to_string),
            credential_ok,
            attempt: cx.attempt(),
            pid: std::process::id(),
            end,
            at_ms: chrono::Utc::now().timestamp_millis(),
        };
        log.append(&line)
            .map_err(|e| TaskError::fatal(format!("cannot write the results log: {e}")))?;
        match end {
            RunEnd::Done => Ok(cx.attempt()),
            RunEnd::Interrupted => {
                Err(TaskError::retryable("interrupted").with_kind("interrupted"))
            }
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn queue(&self) -> &str {
        PROOF_QUEUE
    }
}

/// What a proof worker runs with, passed as JSON in [`WORKER_ENV`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// The store.
    pub backend: Backend,
    /// The seal key (base64) the test's client (or API) seals credentials with.
    pub seal_key: String,
    /// Tasks at once.
    pub concurrency: usize,
    /// Tasks claimed ahead of the running ones.
    #[serde(default)]
    pub prefetch: usize,
    /// Lease, in ms: short, so a killed worker's tasks are reclaimed quickly.
    pub lease_ms: u64,
    /// Drain timeout at SIGTERM, in ms.
    pub drain_ms: u64,
    /// The results log.
    pub log: PathBuf,
}

impl WorkerSpec {
    /// A spec with a 2 s lease, a 10 s drain and no prefetch.
    pub fn new(backend: &Backend, key: &SealKey, concurrency: usize, log: &Path) -> Self {
        Self {
            backend: backend.clone(),
            seal_key: key.to_base64(),
            concurrency,
            prefetch: 0,
            lease_ms: 2000,
            drain_ms: 10_000,
            log: log.to_path_buf(),
        }
    }
}

/// Starts this test binary as a proof worker and waits until its worker runs.
pub async fn spawn_proof_worker(name: &str, spec: &WorkerSpec, dir: &Path) -> Proc {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    command
        .args([
            "--exact",
            "proof_worker_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            WORKER_ENV,
            serde_json::to_string(spec).expect("spec to JSON"),
        )
        .env("RUST_LOG", "warn,errand_core=info");
    let mut proc = Proc::spawn(name, command, dir);
    proc.wait_for_line(READY, Duration::from_secs(30)).await;
    proc
}

/// The stats a proof worker printed at its graceful shutdown.
pub fn printed_stats(proc: &Proc) -> Option<WorkerStatsLine> {
    proc.stdout().iter().find_map(|l| {
        after(l, STATS).map(|s| serde_json::from_str(&s[STATS.len()..]).expect("stats JSON"))
    })
}

/// [`WorkerStats`] as a proof worker printed them.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkerStatsLine {
    /// `completed` or `timeout`.
    pub status: String,
    /// Attempts claimed.
    pub claimed: u64,
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts that failed for good.
    pub failed: u64,
    /// Attempts scheduled for retry.
    pub retried: u64,
    /// Attempts handed back at shutdown.
    pub released: u64,
    /// Attempts abandoned after a lost lease.
    pub lost: u64,
    /// Tasks running when shutdown began.
    pub running_at_shutdown: u64,
}

/// In a proof worker process (when [`WORKER_ENV`] is set): runs the worker until SIGTERM,
/// drains it, and prints its stats. Otherwise returns at once.
pub fn run_proof_worker_if_asked() {
    let Ok(spec) = std::env::var(WORKER_ENV) else {
        return;
    };
    let spec: WorkerSpec =
        serde_json::from_str(&spec).expect("a WorkerSpec in ERRAND_PROOF_WORKER");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let stats = runtime.block_on(proof_worker(spec));
    println!(
        "{STATS}{}",
        serde_json::to_string(&stats).expect("stats to JSON")
    );
}

async fn proof_worker(spec: WorkerSpec) -> WorkerStats {
    // Never outlive the test: a worker whose parent is gone exits.
    let parent = std::os::unix::process::parent_id();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(3);
            }
        }
    });
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("listen for SIGTERM");
    let store = spec.backend.open().await;
    let key = SealKey::from_base64(&spec.seal_key).expect("the seal key");
    let mut registry = Registry::new();
    registry.register::<Record>().expect("register Record");
    let lease = Duration::from_millis(spec.lease_ms);
    let log = RunLog::open(&spec.log).expect("open the results log");
    let worker = Worker::new(store, Arc::new(registry), key)
        .config(WorkerConfig {
            concurrency: spec.concurrency,
            prefetch: spec.prefetch,
            queues: vec![PROOF_QUEUE.to_string()],
            claim_batch: spec.concurrency + spec.prefetch,
            lease,
            reap_interval: lease / 2,
            ..WorkerConfig::default()
        })
        .resource(Arc::new(log))
        .start();
    println!("{READY} {}", std::process::id());
    terminate.recv().await;
    worker.shutdown(Duration::from_millis(spec.drain_ms)).await
}
