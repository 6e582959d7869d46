//! Helpers shared by the Redis store's tests: unique key prefixes, a store that deletes its
//! keys when dropped, a private `redis-server` that a test can kill and restart, a Redis
//! Cluster of the test's own (`cluster`), and a proxy that reads (and can interrupt) what a
//! store sends.

#![allow(dead_code)] // each test file uses a different part of this module

pub mod cluster;
pub mod proxy;

use errand_core::Clock;
use errand_core::conformance::Guarded;
use errand_redis::{RedisConfig, RedisStore};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shared Redis of the test machine.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("errand-test-{}", uuid::Uuid::new_v4().simple())
}

/// Deletes every key under `prefix` (a prefix from [`unique_prefix`]) on the shared Redis.
pub fn delete_keys(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
        return;
    };
    let pattern = format!("{{{prefix}:*");
    let mut keys: Vec<String> = match redis::cmd("KEYS").arg(&pattern).query(&mut conn) {
        Ok(keys) => keys,
        Err(_) => return,
    };
    keys.push(format!("{{{prefix}}}:queues"));
    keys.push(format!("{{{prefix}}}:meta"));
    if !keys.is_empty() {
        let _: Result<u64, _> = redis::cmd("UNLINK").arg(&keys).query(&mut conn);
    }
}

/// A store on the shared Redis under a unique prefix, reading time from `clock`.
pub async fn store_on(prefix: &str, clock: Arc<dyn Clock>) -> RedisStore {
    RedisStore::connect(
        REDIS_URL,
        RedisConfig::default().prefix(prefix).clock(clock),
    )
    .await
    .expect("store connects")
}

/// Deletes its prefix's keys on the shared Redis when dropped, even when the test panicked.
pub struct KeyCleaner(String);

impl KeyCleaner {
    /// Cleans `prefix` up when dropped.
    pub fn new(prefix: &str) -> Self {
        Self(prefix.to_string())
    }
}

/// Polls until the task is in a final state (panics after 10 s).
pub async fn finished(
    store: &dyn errand_core::Store,
    id: errand_core::TaskId,
) -> errand_core::TaskRecord {
    for _ in 0..1_000 {
        let r = store.get(id).await.expect("get").expect("the task exists");
        if r.status.is_terminal() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("task {id} did not finish within 10 s");
}

impl Drop for KeyCleaner {
    fn drop(&mut self) {
        delete_keys(REDIS_URL, &self.0);
    }
}

/// A [`RedisStore`] under a unique prefix that deletes its keys when the last handle to it is
/// dropped.
pub type CleanStore = Guarded<RedisStore, KeyCleaner>;

/// A fresh store under a unique prefix, reading time from `clock`.
pub async fn clean_store(clock: Arc<dyn Clock>) -> CleanStore {
    let prefix = unique_prefix();
    let store = store_on(&prefix, clock).await;
    Guarded::new(store, KeyCleaner(prefix))
}

/// A `redis-server` of the test's own, on a free loopback port, keeping nothing on disk.
/// Killed when dropped.
pub struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one and waits until it answers.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir =
            std::env::temp_dir().join(format!("errand-redis-test-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut redis = Self {
            port,
            dir,
            child: None,
        };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): clients see their connections drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (is it installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
