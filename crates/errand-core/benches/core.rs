//! `cargo bench -p errand-core`: the Manager's overhead against bare `tokio::spawn`, what
//! sealing and opening a task's context costs, and the in-memory store's no-op throughput. Prints one JSON object per line.
//!
//! `ERRAND_BENCH_JOBS` (default 200000) and `ERRAND_BENCH_CONCURRENCY` (default 64) size the
//! store run.

use errand_core::MemoryStore;
use errand_core::bench::{BenchOptions, manager_overhead, run, seal_cost};
use std::sync::Arc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing we need.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let manager = manager_overhead(100_000, 5).await;
        println!("{}", serde_json::to_string(&manager)?);
        println!("{}", serde_json::to_string(&seal_cost(100_000, 5))?);
        let opts = BenchOptions {
            jobs: env("ERRAND_BENCH_JOBS", 200_000),
            concurrency: env("ERRAND_BENCH_CONCURRENCY", 64),
            ..Default::default()
        };
        let report = run(Arc::new(MemoryStore::new()), "memory", &opts).await?;
        println!("{}", serde_json::to_string(&report)?);
        Ok(())
    })
}
