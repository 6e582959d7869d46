//! Redis: [`TestRedis`], a Redis of a test's own that can be killed with -9 and started again,
//! and [`PrefixGuard`], which clears a test's keys from the shared one.

use crate::cluster::proc::Proc;
use crate::cluster::{clean_up, wait_until};
use errand_redis::{RedisConfig, RedisStore};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The shared Redis of the machine (and of CI).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

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
        let cleared = clean_up(|| async move {
            let store = RedisStore::connect(&url, RedisConfig::default().prefix(prefix))
                .await
                .ok()?;
            store.clear().await.ok()
        });
        if !cleared {
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
