//! The harness of the scale-out proofs: real processes on a real Redis or PostgreSQL.
//!
//! - [`Proc`] (`proc.rs`): a child process whose stdout lines are kept and whose stderr goes
//!   to a file; it is killed when dropped, so no child outlives its test, even one that panics.
//! - [`Backend`] (`binary.rs`): the store of a proof's deployment, and the `errand` binary's
//!   `serve`, `worker` and `token` commands on it ([`serve`], [`errand_worker`], [`token`]).
//! - A proof worker (`proof_worker.rs`): this test binary re-executed
//!   ([`spawn_proof_worker`]) to run an [`errand_core::Worker`] of the proofs' own task,
//!   [`Record`], which sleeps and then appends one line per run (task id, the user the run
//!   saw, attempt, pid) to a shared results log, read back by [`tally`] (`runs.rs`).
//! - Submissions through the library's client or over the HTTP API ([`Submitter`]) and an
//!   SSE reader ([`read_events`]) (`http.rs`).
//! - Redis (`redis.rs`): [`TestRedis`], a Redis of a test's own (append-only file, fsync
//!   always) that can be killed with -9 and started again, and [`PrefixGuard`], which deletes
//!   a test's keys from the shared Redis when the test ends.
//! - PostgreSQL (`postgres.rs`): [`TestPostgres`], a server of a test's own that can be stopped
//!   in immediate mode and started again, and [`SchemaGuard`], a schema of a test's own on the
//!   shared server, dropped when the test ends.
//! - The scenarios that run on either store: workers killed with -9 ([`crash_scenario`]), the
//!   store's server restarted ([`restart_scenario`]), a worker drained by SIGTERM
//!   ([`drain_scenario`]).
//! - Polling with deadlines ([`wait_until`]).
#![allow(dead_code, unused_imports)] // Each proof binary uses a different part of the harness.

mod binary;
mod crash;
mod drain;
mod http;
mod postgres;
mod proc;
mod proof_worker;
mod redis;
// The Redis Cluster of errand-redis's tests (3 primaries, 3 replicas on free loopback ports);
// not every helper of it is used here.
#[allow(dead_code)]
#[path = "../../../errand-redis/tests/common/cluster.rs"]
mod redis_cluster;
mod restart;
mod runs;

pub use binary::*;
pub use crash::*;
pub use drain::*;
pub use http::*;
pub use postgres::*;
pub use proc::*;
pub use proof_worker::*;
pub use redis::*;
pub use redis_cluster::TestCluster;
pub use restart::*;
pub use runs::*;

use std::future::Future;
use std::time::{Duration, Instant};

/// Set to `1` to run the proofs at their large size (by hand).
pub const LARGE_ENV: &str = "ERRAND_PROOF_LARGE";

/// Whether the large size was asked for.
pub fn large() -> bool {
    std::env::var(LARGE_ENV).is_ok_and(|v| v == "1")
}

/// `ci` normally, `large` when [`LARGE_ENV`] is set.
pub fn sized<T>(ci: T, large_size: T) -> T {
    if large() { large_size } else { ci }
}

/// A name (a Redis key prefix, a PostgreSQL schema) no other test or run uses: lower case
/// letters, digits and `_`.
pub fn unique_name(test: &str) -> String {
    format!(
        "proof_{test}_{}_{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Runs `cleanup` to its end on a runtime of its own, on a thread of its own (a guard's `Drop`
/// may run inside the test's runtime, or after it), and says whether it gave a value.
pub fn clean_up<T, Fut>(cleanup: impl FnOnce() -> Fut + Send + 'static) -> bool
where
    Fut: Future<Output = Option<T>>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()
            .and_then(|runtime| runtime.block_on(cleanup()))
            .is_some()
    })
    .join()
    .unwrap_or(false)
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
