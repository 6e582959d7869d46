//! The harness of the `errand` binary's integration tests: real `errand serve` processes on
//! free ports of 127.0.0.1, each with its own data directory; a small HTTP client speaking to
//! them as one user; and the CLI's other commands run as processes.
//!
//! Every process is killed when its handle drops, so a failing test leaves nothing behind, and
//! a failing test prints the server's logs.
#![allow(dead_code)] // Each test binary uses a different part of the harness.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any wait of these tests may take before it counts as a failure.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often polls look again.
const POLL: Duration = Duration::from_millis(20);

/// The final states of a task.
pub const TERMINAL: [&str; 3] = ["success", "failed", "cancelled"];

/// The `errand` binary, with an environment of its own: no `ERRAND_*` or `OTEL_*` variable or
/// `RUST_LOG` of the caller leaks in, and it runs in `cwd` (so no stray `./errand.toml` is read).
pub fn errand(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_errand"));
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("ERRAND_") || text.starts_with("OTEL_") || text == "RUST_LOG" {
            cmd.env_remove(&name);
        }
    }
    cmd.current_dir(cwd).stdin(Stdio::null());
    cmd
}

/// What a finished command printed, and how it exited.
#[derive(Debug)]
pub struct Finished {
    /// The exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl Finished {
    /// The last non-empty line of stdout.
    pub fn last_line(&self) -> &str {
        self.stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
    }

    /// Panics, showing both streams, unless the command exited with `code`.
    pub fn expect_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{what}: unexpected exit status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `cmd` to the end, killing it if it takes longer than [`DEADLINE`].
pub async fn finish(cmd: Command) -> Finished {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn errand");
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("the command finishes within the deadline")
        .expect("wait for errand");
    Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `errand ARGS...` in `cwd` with the extra environment `env`.
pub async fn run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Finished {
    let mut cmd = errand(cwd);
    cmd.args(args).envs(env.iter().copied());
    finish(cmd).await
}

/// Lines a child printed, shared with the thread reading them.
type Lines = Arc<Mutex<String>>;

/// Reads `stream` line by line into `into` (on a thread of its own) until it closes; each line
/// also goes to `seen`, if given.
fn capture(stream: impl Read + Send + 'static, into: Lines, seen: Option<mpsc::Sender<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut all) = into.lock() {
                all.push_str(&line);
                all.push('\n');
            }
            if let Some(seen) = &seen {
                let _ = seen.send(line);
            }
        }
    });
}

/// How to start `errand serve` (or `errand worker`).
pub struct ServeBuilder {
    command: &'static str,
    data_dir: PathBuf,
    cwd: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl ServeBuilder {
    /// Runs `errand worker` instead: no API, ready once it prints that it runs.
    pub fn worker(mut self) -> Self {
        self.command = "worker";
        self
    }

    /// Adds command-line arguments after `serve`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Runs the server in `cwd` instead of its data directory.
    pub fn cwd(mut self, cwd: &Path) -> Self {
        self.cwd = cwd.to_path_buf();
        self
    }

    /// Starts the process and waits for its "listening" line (a worker's "running" line).
    /// Unless the arguments or the environment give an address, a server listens on a free
    /// port of 127.0.0.1.
    pub fn start(self) -> Serve {
        let mut cmd = errand(&self.cwd);
        cmd.arg("--data-dir").arg(&self.data_dir).arg(self.command);
        let addr_given = self.args.iter().any(|a| a == "--addr")
            || self.env.iter().any(|(k, _)| k == "ERRAND_ADDR");
        if self.command == "serve" && !addr_given {
            cmd.args(["--addr", "127.0.0.1:0"]);
        }
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn errand");
        let (stdout, stderr) = (Lines::default(), Lines::default());
        let (seen, lines) = mpsc::channel();
        capture(
            child.stdout.take().expect("piped stdout"),
            stdout.clone(),
            Some(seen),
        );
        capture(
            child.stderr.take().expect("piped stderr"),
            stderr.clone(),
            None,
        );
        let mut serve = Serve {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            base: String::new(),
            data_dir: self.data_dir,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("errand listening on http://") {
                        serve.addr = url.trim().parse().expect("the listening line's address");
                        serve.base = format!("http://{}", serve.addr);
                        return serve;
                    }
                    if self.command == "worker" && line.starts_with("errand worker ") {
                        return serve;
                    }
                }
                Err(_) => panic!(
                    "errand {} did not say it is ready (exit: {:?})\n--- stderr ---\n{}",
                    self.command,
                    serve.child.try_wait().ok().flatten(),
                    serve.stderr()
                ),
            }
        }
    }
}

/// A running `errand serve` (or `errand worker`), killed when dropped.
pub struct Serve {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://ADDR`.
    pub base: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    stdout: Lines,
    stderr: Lines,
}

impl Serve {
    /// `errand serve` on `data_dir`, run in that directory.
    pub fn builder(data_dir: &Path) -> ServeBuilder {
        ServeBuilder {
            command: "serve",
            data_dir: data_dir.to_path_buf(),
            cwd: data_dir.to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// `errand serve ARGS` on `data_dir`, on a free port.
    pub fn start(data_dir: &Path, args: &[&str]) -> Serve {
        Self::builder(data_dir).args(args).start()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed on stderr so far (its logs).
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Mints a token with `errand token` on this server's data directory.
    pub async fn token(&self, user: &str, tenant: Option<&str>, admin: bool) -> String {
        let dir = self.data_dir.to_string_lossy().into_owned();
        let mut args = vec!["--data-dir", dir.as_str(), "token", "--user", user];
        if let Some(t) = tenant {
            args.extend(["--tenant", t]);
        }
        if admin {
            args.push("--admin");
        }
        let out = run(&self.data_dir, &args, &[]).await;
        out.expect_code(0, "errand token");
        out.last_line().to_string()
    }

    /// A client of this server as the holder of `token`.
    pub fn client(&self, token: &str) -> Api {
        Api::new(&self.base, Some(token.to_string()))
    }

    /// A client of this server with no token.
    pub fn anonymous(&self) -> Api {
        Api::new(&self.base, None)
    }

    /// A client of this server as `user` (token minted with `errand token`).
    pub async fn user(&self, user: &str, tenant: Option<&str>) -> Api {
        self.client(&self.token(user, tenant, false).await)
    }

    /// A client of this server as an admin.
    pub async fn admin(&self, user: &str) -> Api {
        self.client(&self.token(user, None, true).await)
    }

    /// The server's HS256 secret, as `errand serve` generated it.
    pub fn jwt_secret(&self) -> Vec<u8> {
        std::fs::read_to_string(self.data_dir.join("jwt.secret"))
            .expect("the generated jwt.secret")
            .trim()
            .as_bytes()
            .to_vec()
    }

    /// Kills the process with SIGKILL (no shutdown at all) and waits for it.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL errand serve");
        self.child.wait().expect("reap errand serve");
    }

    /// Sends SIGTERM and waits (up to [`DEADLINE`]) for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM")
    }

    /// Sends the signal `name` (`TERM`, `INT`...) and waits (up to [`DEADLINE`]) for the
    /// process to exit.
    pub fn signal(&mut self, name: &str) -> ExitStatus {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{name} failed");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll errand serve") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "errand did not exit after SIG{name}\n--- stderr ---\n{}",
                self.stderr()
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- errand ({}) stderr ---\n{}--- end ---",
                self.base,
                self.stderr()
            );
        }
    }
}

/// A client of one server, as one user (or nobody).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    /// `http://ADDR`.
    pub base: String,
    token: Option<String>,
}

impl Api {
    /// A client of `base`, sending `token` as a bearer token.
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(DEADLINE)
                .build()
                .expect("HTTP client"),
            base: base.to_string(),
            token,
        }
    }

    /// The same server with another bearer token.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// The same user at another address (the same data directory served again).
    pub fn with_base(&self, base: &str) -> Self {
        Self {
            base: base.to_string(),
            ..self.clone()
        }
    }

    /// A request to `path`, with the bearer token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends `request`; the status and the body as JSON (a non-JSON body as a string).
    pub async fn send(&self, request: RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(Method::GET, path)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    /// `POST path` with no body.
    pub async fn post_empty(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(Method::POST, path)).await
    }

    /// Submits `name` with `args` (plus the optional fields in `extra`), expecting 202; the
    /// answer.
    pub async fn submit_with(&self, name: &str, args: Value, extra: Value) -> Value {
        let mut body = json!({ "name": name, "args": args });
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        let (status, answer) = self.post("/v1/tasks", &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "submit {name}: {answer}");
        answer
    }

    /// Submits `name` with `args`, expecting 202; the new task's id.
    pub async fn submit(&self, name: &str, args: Value) -> String {
        let answer = self.submit_with(name, args, json!({})).await;
        answer["id"].as_str().expect("an id").to_string()
    }

    /// Submits a document; the task's id.
    pub async fn ingest(&self, title: &str, content: &str) -> String {
        self.submit(
            "ingest_document",
            json!({ "title": title, "content": content }),
        )
        .await
    }

    /// Submits conversation messages; the task's id.
    pub async fn persist(&self, session_id: &str, messages: &[(&str, &str)]) -> String {
        let messages: Vec<Value> = messages
            .iter()
            .map(|(role, content)| json!({ "role": role, "content": content }))
            .collect();
        self.submit(
            "persist_conversation",
            json!({ "session_id": session_id, "messages": messages }),
        )
        .await
    }

    /// The task's record, expecting 200.
    pub async fn record(&self, id: &str) -> Value {
        let (status, record) = self.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!(status, StatusCode::OK, "GET task {id}: {record}");
        record
    }

    /// Polls the task's record until `done` holds for it (or the deadline passes).
    pub async fn wait_for(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let record = self.record(id).await;
            if done(&record) {
                return record;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} never became {what}: {record:#}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls the task's record until it is in a final state.
    pub async fn wait_done(&self, id: &str) -> Value {
        self.wait_for(id, "final", is_terminal).await
    }

    /// The records of `GET /v1/tasks/{id}/events`, until a final one (or the stream ends).
    pub async fn events(&self, id: &str) -> Vec<Value> {
        let response = self
            .request(Method::GET, &format!("/v1/tasks/{id}/events"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status(), StatusCode::OK, "events of {id}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let mut bytes = response.bytes_stream();
        let mut buf = String::new();
        let mut records = Vec::new();
        let read = async {
            while let Some(chunk) = bytes.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk.expect("the stream reads")));
                while let Some(end) = buf.find("\n\n") {
                    let event: String = buf.drain(..end + 2).collect();
                    let data: Vec<&str> = event
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(|d| d.strip_prefix(' ').unwrap_or(d))
                        .collect();
                    if data.is_empty() {
                        continue; // a keep-alive
                    }
                    assert!(
                        event.lines().any(|l| l == "event: status"),
                        "each event is a `status` event: {event}"
                    );
                    let record: Value =
                        serde_json::from_str(&data.join("\n")).expect("an event is a JSON record");
                    let done = is_terminal(&record);
                    records.push(record);
                    if done {
                        return;
                    }
                }
            }
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .expect("the event stream reaches a final state within the deadline");
        records
    }
}

/// Whether the record is in a final state.
pub fn is_terminal(record: &Value) -> bool {
    TERMINAL.contains(&record["status"].as_str().unwrap_or_default())
}

/// The record's steps as `(name, status)` pairs.
pub fn steps(record: &Value) -> Vec<(String, String)> {
    record["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap_or_default().to_string(),
                        s["status"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A document of about `bytes` bytes: paragraphs of sentences, so it makes many chunks.
pub fn document(bytes: usize, marker: &str) -> String {
    let paragraph = format!(
        "The {marker} ledger records each shipment that left the northern harbour. \
         Clerks counted crates of tea, copper wire and sailcloth before the tide turned. "
    )
    .repeat(4);
    let mut text = String::with_capacity(bytes + paragraph.len());
    while text.len() < bytes {
        text.push_str(&paragraph);
        text.push_str("\n\n");
    }
    text
}

/// An HS256 token signed with `secret` over exactly these header and claims.
pub fn sign(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(input.as_bytes());
    format!("{input}.{}", B64URL.encode(mac.finalize().into_bytes()))
}

/// Seconds since the epoch.
pub fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}
