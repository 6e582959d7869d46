//! The harness of the scale-out proofs: real processes on real Redis.
//!
//! - [`Proc`]: a child process whose stdout lines are kept and whose stderr goes to a file;
//!   it is killed when dropped, so no child outlives its test, even one that panics.
//! - The `errand` binary's `serve`, `worker` and `token` commands ([`serve`], [`errand_worker`],
//!   [`token`]).
//! - A proof worker: this test binary re-executed ([`spawn_proof_worker`]) to run an
//!   [`errand_core::Worker`] of the proofs' own task, [`Record`], which sleeps and then appends
//!   one line per run (task id, the user the run saw, attempt, pid) to a shared results log.
//! - [`TestRedis`]: a Redis of a test's own (append-only file, fsync always) that can be
//!   killed with -9 and started again on the same port and directory.
//! - [`PrefixGuard`]: deletes a test's keys from the shared Redis when the test ends.
//! - Polling with deadlines ([`wait_until`]) and an SSE reader ([`read_events`]).

use errand_core::{
    Context, Registry, SealKey, Secret, Task, TaskCx, TaskError, TaskId, Worker, WorkerConfig,
    WorkerStats,
};
use errand_redis::{RedisConfig, RedisStore};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shared Redis of the machine (and of CI).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Set to `1` to run the proofs at their large size (by hand).
pub const LARGE_ENV: &str = "ERRAND_PROOF_LARGE";

/// Holds a proof worker's [`WorkerSpec`] as JSON: this test binary, started with it, runs a
/// worker instead of tests.
pub const WORKER_ENV: &str = "ERRAND_PROOF_WORKER";

/// What a proof worker prints once its worker runs.
const READY: &str = "proof worker running";

/// What a proof worker prints before its stats JSON, after a graceful shutdown.
const STATS: &str = "proof worker stats ";

/// Whether the large size was asked for.
pub fn large() -> bool {
    std::env::var(LARGE_ENV).is_ok_and(|v| v == "1")
}

/// `ci` normally, `large` when [`LARGE_ENV`] is set.
pub fn sized<T>(ci: T, large_size: T) -> T {
    if large() { large_size } else { ci }
}

/// A Redis key prefix no other test or run uses.
pub fn unique_prefix(test: &str) -> String {
    format!(
        "proof-{test}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Polls `check` every 50 ms until it gives a value; panics with `what` after `within`.
pub async fn wait_until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process: stdout lines are collected, stderr goes to `<dir>/<name>.log`. Killed
/// (SIGKILL) and reaped when dropped.
pub struct Proc {
    name: String,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    log: PathBuf,
}

impl Proc {
    /// Starts `command` as `name`, logging its stderr under `dir`.
    pub fn spawn(name: &str, mut command: Command, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let stderr = File::create(&log).expect("create the child's log file");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let pipe = child.stdout.take().expect("stdout is piped");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = stdout.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        Proc {
            name: name.to_string(),
            child,
            stdout,
            reader: Some(reader),
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stdout lines so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The stderr log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the stderr log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for a stdout line holding `marker` and returns it from the marker on (a test
    /// harness may print before it on the same line); panics if the process exits or
    /// `within` passes first.
    pub async fn wait_for_line(&mut self, marker: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.stdout().iter().find_map(|l| after(l, marker)) {
                return line.to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before printing {marker:?}; stdout {:?}; log:\n{}",
                    self.name,
                    self.stdout(),
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print {marker:?} within {within:?}; log:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join_reader();
    }

    /// Sends SIGTERM (a graceful shutdown request).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits for the process to exit and for its stdout to be read to the end.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}; log:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.join_reader();
        status
    }

    fn join_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill9();
        }
    }
}

/// `line` from `marker` on, if it holds it.
fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|at| &line[at..])
}

/// Whether a process with this id exists (zombies included).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

// ---------------------------------------------------------------------------------------
// The errand binary.

/// `errand <args> --data-dir <data_dir>` with the environment cleared of errand settings.
fn errand(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_errand"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ERRAND_") {
            command.env_remove(key);
        }
    }
    command
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "info");
    command
}

/// A running `errand serve` and its base URL.
pub struct Api {
    /// The process.
    pub proc: Proc,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Api {
    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Starts `errand serve --store redis --workers 0` (the API only) on a free port and waits
/// until it listens.
pub async fn serve(name: &str, redis_url: &str, prefix: &str, dir: &Path, data_dir: &Path) -> Api {
    let mut command = errand(data_dir);
    command.args([
        "serve",
        "--store",
        "redis",
        "--redis-url",
        redis_url,
        "--redis-prefix",
        prefix,
        "--workers",
        "0",
        "--addr",
        "127.0.0.1:0",
    ]);
    let mut proc = Proc::spawn(name, command, dir);
    let line = proc
        .wait_for_line("errand listening on ", Duration::from_secs(30))
        .await;
    let base = line
        .trim_start_matches("errand listening on ")
        .trim()
        .to_string();
    Api { proc, base }
}

/// Starts `errand worker` on Redis and waits until it runs.
pub async fn errand_worker(
    name: &str,
    redis_url: &str,
    prefix: &str,
    dir: &Path,
    data_dir: &Path,
    concurrency: usize,
) -> Proc {
    let mut command = errand(data_dir);
    command.args([
        "worker",
        "--redis-url",
        redis_url,
        "--redis-prefix",
        prefix,
        "--concurrency",
        &concurrency.to_string(),
        "--lease",
        "2s",
        "--drain-timeout",
        "10s",
    ]);
    let mut proc = Proc::spawn(name, command, dir);
    proc.wait_for_line("errand worker ", Duration::from_secs(30))
        .await;
    proc
}

/// A bearer token for `user` from `errand token`.
pub fn token(data_dir: &Path, user: &str) -> String {
    let out = errand(data_dir)
        .args(["token", "--user", user])
        .output()
        .expect("run errand token");
    assert!(
        out.status.success(),
        "errand token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("a token line")
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// The proof worker: this test binary, re-executed, running the proofs' own task.

/// The task of the proofs: sleeps `sleep_ms` (stopping early if its token fires), then
/// appends one [`RunLine`] to the worker's [`RunLog`].
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Record {
    /// How long the run takes.
    pub sleep_ms: u64,
    /// The user the test submitted it for. The task never acts on it: it only writes it
    /// down beside the user its context says, so the log checks itself.
    pub submitted_for: String,
}

impl Record {
    /// The context the test submits a [`Record`] for `user` with: the user, and a credential
    /// that only this user's runs may see.
    pub fn context(user: &str) -> Context {
        Context::builder()
            .user_id(user)
            .tenant("proofs")
            .credential(Secret::new(credential_of(user)), None)
            .build()
    }
}

fn credential_of(user: &str) -> String {
    format!("token-of-{user}")
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEnd {
    /// It slept its full time.
    Done,
    /// Its cancellation token fired first (shutdown past the drain, lost lease, cancel).
    Interrupted,
}

/// One run of a [`Record`] task, as it appended it to the results log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunLine {
    /// The task.
    pub task: TaskId,
    /// The user the test submitted it for.
    pub submitted_for: String,
    /// The user of `Context::current()` inside the run.
    pub context_user: Option<String>,
    /// The user of `cx.user_id()`.
    pub cx_user: Option<String>,
    /// Whether the credential the run could unseal is the submitter's.
    pub credential_ok: bool,
    /// The attempt number.
    pub attempt: u32,
    /// The process that ran it.
    pub pid: u32,
    /// How it ended.
    pub end: RunEnd,
    /// When it ended (Unix ms).
    pub at_ms: i64,
}

impl RunLine {
    /// Whether the run saw anyone but its submitter.
    pub fn saw_another_user(&self) -> bool {
        self.context_user.as_deref() != Some(&self.submitted_for)
            || self.cx_user.as_deref() != Some(&self.submitted_for)
            || !self.credential_ok
    }
}

/// The results log: opened with `O_APPEND`, one `write` per line, so lines of concurrent
/// processes never interleave.
pub struct RunLog(File);

impl RunLog {
    /// Opens (creates) the log at `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(Self)
    }

    fn append(&self, line: &RunLine) -> std::io::Result<()> {
        let mut buf = serde_json::to_vec(line)?;
        buf.push(b'\n');
        let written = (&self.0).write(&buf)?;
        if written != buf.len() {
            return Err(std::io::Error::other(format!(
                "short write to the results log: {written} of {} bytes",
                buf.len()
            )));
        }
        Ok(())
    }
}

/// Every line of the results log at `path`; panics on a line that does not parse (a torn or
/// interleaved write).
pub fn read_runs(path: &Path) -> Vec<RunLine> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read the results log {}: {e}", path.display()),
    };
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("torn line in the results log ({e}): {line:?}"))
        })
        .collect()
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
            .is_some_and(|s| s.expose() == credential_of(&self.submitted_for));
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
}

/// What a proof worker runs with, passed as JSON in [`WORKER_ENV`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// The Redis.
    pub redis_url: String,
    /// The key prefix.
    pub prefix: String,
    /// The seal key (base64) the test's client seals credentials with.
    pub seal_key: String,
    /// Tasks at once.
    pub concurrency: usize,
    /// Lease, in ms: short, so a killed worker's tasks are reclaimed quickly.
    pub lease_ms: u64,
    /// Drain timeout at SIGTERM, in ms.
    pub drain_ms: u64,
    /// The results log.
    pub log: PathBuf,
}

impl WorkerSpec {
    /// A spec with a 2 s lease and a 10 s drain.
    pub fn new(
        redis_url: &str,
        prefix: &str,
        key: &SealKey,
        concurrency: usize,
        log: &Path,
    ) -> Self {
        Self {
            redis_url: redis_url.to_string(),
            prefix: prefix.to_string(),
            seal_key: key.to_base64(),
            concurrency,
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
    let store = RedisStore::connect(&spec.redis_url, RedisConfig::default().prefix(&spec.prefix))
        .await
        .expect("a Redis store");
    let key = SealKey::from_base64(&spec.seal_key).expect("the seal key");
    let mut registry = Registry::new();
    registry.register::<Record>().expect("register Record");
    let lease = Duration::from_millis(spec.lease_ms);
    let log = RunLog::open(&spec.log).expect("open the results log");
    let worker = Worker::new(Arc::new(store), Arc::new(registry), key)
        .config(WorkerConfig {
            concurrency: spec.concurrency,
            claim_batch: spec.concurrency,
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

// ---------------------------------------------------------------------------------------
// Redis.

/// Deletes a prefix's keys from a Redis when dropped (even when the test panicked).
pub struct PrefixGuard {
    url: String,
    prefix: String,
}

impl PrefixGuard {
    /// Guards `prefix` on the Redis at `url`.
    pub fn new(url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_string(),
            prefix: prefix.to_string(),
        }
    }
}

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        // A runtime of its own, on a thread of its own: Drop may run inside the test's runtime.
        let cleared = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let store = RedisStore::connect(&url, RedisConfig::default().prefix(prefix))
                    .await
                    .ok()?;
                store.clear().await.ok()
            })
        })
        .join();
        if !matches!(cleared, Ok(Some(_))) {
            eprintln!("could not clear the Redis prefix {}", self.prefix);
        }
    }
}

/// A Redis of a test's own: append-only file with fsync on every write, no snapshots, on a
/// free port, under a directory of the test's. Killed when dropped.
pub struct TestRedis {
    port: u16,
    dir: PathBuf,
    proc: Option<Proc>,
    starts: u32,
}

impl TestRedis {
    /// Starts one under `dir` and waits until it answers.
    pub async fn start(dir: &Path) -> TestRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = TestRedis {
            port,
            dir: dir.to_path_buf(),
            proc: None,
            starts: 0,
        };
        redis.restart().await;
        redis
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it with SIGKILL: no chance to write anything more.
    pub fn kill9(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill9();
        }
    }

    /// Starts it (again) on the same port and directory, and waits until it has loaded its
    /// append-only file and answers.
    pub async fn restart(&mut self) {
        self.kill9();
        self.starts += 1;
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
            ]);
        let proc = Proc::spawn(&format!("redis-{}", self.starts), command, &self.dir);
        self.proc = Some(proc);
        let port = self.port;
        wait_until(
            "the test Redis to answer PING",
            Duration::from_secs(30),
            || async move { ping(port).then_some(()) },
        )
        .await;
    }
}

/// Whether the Redis on `port` answers `PING` with `PONG` (not `LOADING`).
fn ping(port: u16) -> bool {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    if conn.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(conn.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

// ---------------------------------------------------------------------------------------
// HTTP.

/// Reads a task's Server-Sent Events until a final state, the stream's end, or `within`;
/// returns the `status` events' records.
pub async fn read_events(response: reqwest::Response, within: Duration) -> Vec<Value> {
    let mut records = Vec::new();
    let mut body = response.bytes_stream();
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(e))) => panic!("the event stream failed: {e}"),
            Ok(None) | Err(_) => return records,
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = Some(name.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if event.as_deref() == Some("status") {
                let record: Value = serde_json::from_str(&data).expect("an event's record");
                let last = matches!(
                    record["status"].as_str(),
                    Some("success" | "failed" | "cancelled")
                );
                records.push(record);
                if last {
                    return records;
                }
            }
        }
    }
}
