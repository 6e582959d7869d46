//! The store a proof runs on ([`Backend`]) and the `errand` binary's `serve`, `worker` and
//! `token` commands on it.

use crate::cluster::proc::{Proc, run_ok};
use errand_core::{SealKey, Store};
use errand_postgres::{PostgresConfig, PostgresStore};
use errand_redis::{RedisConfig, RedisStore};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// The store of one proof's deployment: every process of the proof (the test's own client,
/// `errand serve`, `errand worker`, the proof workers) opens this one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Backend {
    /// A Redis, under a key prefix of the test's.
    Redis {
        /// `redis://…`.
        url: String,
        /// The key prefix.
        prefix: String,
    },
    /// A Redis Cluster (`url`: its seed nodes, comma-separated), under a key prefix of the
    /// test's.
    RedisCluster {
        /// `redis://…,redis://…`.
        url: String,
        /// The key prefix.
        prefix: String,
    },
    /// A PostgreSQL database, in a schema of the test's.
    Postgres {
        /// `postgres://…/<database>`.
        url: String,
        /// The schema.
        schema: String,
    },
}

impl Backend {
    /// The flags of `errand serve` and `errand worker` that select this store.
    pub fn flags(&self) -> Vec<String> {
        let flags: &[&str] = match self {
            Backend::Redis { url, prefix } => &[
                "--store",
                "redis",
                "--redis-url",
                url,
                "--redis-prefix",
                prefix,
            ],
            Backend::RedisCluster { url, prefix } => &[
                "--store",
                "redis",
                "--redis-cluster",
                "--redis-url",
                url,
                "--redis-prefix",
                prefix,
            ],
            Backend::Postgres { url, schema } => &[
                "--store",
                "postgres",
                "--postgres-url",
                url,
                "--postgres-schema",
                schema,
            ],
        };
        flags.iter().map(|f| f.to_string()).collect()
    }

    /// Opens the store; panics if it cannot be reached. A PostgreSQL store keeps a small pool
    /// (a proof runs many processes on a server of 100 connections).
    pub async fn open(&self) -> Arc<dyn Store> {
        match self {
            Backend::Redis { url, prefix } => Arc::new(
                RedisStore::connect(url, RedisConfig::default().prefix(prefix))
                    .await
                    .expect("connect to Redis"),
            ),
            Backend::RedisCluster { url, prefix } => Arc::new(
                RedisStore::connect(url, RedisConfig::default().prefix(prefix).cluster(true))
                    .await
                    .expect("connect to the Redis Cluster"),
            ),
            Backend::Postgres { url, schema } => {
                let config = PostgresConfig {
                    schema: schema.clone(),
                    max_connections: 4,
                    ..PostgresConfig::default()
                };
                Arc::new(
                    PostgresStore::connect(url, config)
                        .await
                        .expect("connect to PostgreSQL"),
                )
            }
        }
    }
}

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

/// Starts `errand serve --workers 0` (the API only) on `backend` on a free port and waits
/// until it listens. With `seal` it seals with that key (`ERRAND_SEAL_KEY`), so that proof
/// workers can open what it seals; otherwise with the data directory's.
pub async fn serve(
    name: &str,
    backend: &Backend,
    seal: Option<&SealKey>,
    dir: &Path,
    data_dir: &Path,
) -> Api {
    let mut command = errand(data_dir);
    command
        .arg("serve")
        .args(backend.flags())
        .args(["--workers", "0", "--addr", "127.0.0.1:0"]);
    if let Some(key) = seal {
        command.env("ERRAND_SEAL_KEY", key.to_base64());
    }
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

/// Starts `errand worker` on `backend` and waits until it runs. With `seal` it opens what
/// that key sealed (`ERRAND_SEAL_KEY`); otherwise it uses the data directory's key.
pub async fn errand_worker(
    name: &str,
    backend: &Backend,
    seal: Option<&SealKey>,
    dir: &Path,
    data_dir: &Path,
    concurrency: usize,
) -> Proc {
    let mut command = errand(data_dir);
    command.arg("worker").args(backend.flags()).args([
        "--concurrency",
        &concurrency.to_string(),
        "--lease",
        "2s",
        "--drain-timeout",
        "10s",
    ]);
    if let Some(key) = seal {
        command.env("ERRAND_SEAL_KEY", key.to_base64());
    }
    let mut proc = Proc::spawn(name, command, dir);
    proc.wait_for_line("errand worker ", Duration::from_secs(30))
        .await;
    proc
}

/// A bearer token for `user` from `errand token`.
pub fn token(data_dir: &Path, user: &str) -> String {
    mint(data_dir, &["--user", user])
}

/// A worker's bearer token (the worker protocol's routes) from `errand token --worker`.
pub fn worker_token(data_dir: &Path, name: &str) -> String {
    mint(data_dir, &["--worker", name])
}

fn mint(data_dir: &Path, args: &[&str]) -> String {
    let mut command = errand(data_dir);
    command.arg("token").args(args);
    let out = run_ok(command, "errand token");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("a token line")
        .trim()
        .to_string()
}
