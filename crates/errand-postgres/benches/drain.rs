//! `cargo bench -p errand-postgres --bench drain`: core's store benchmark
//! (`errand_core::bench::run`: enqueue in batches, drain no-op tasks with a `Worker`,
//! enqueue-to-start latency) on the Postgres store, several rounds on one database, so each
//! round drains beside the finished records of the rounds before: the drain rate should stay
//! flat as they accumulate (finished tasks leave the hot table). Prints one JSON object per
//! round; asserts nothing.
//!
//! Settings (environment): `ERRAND_BENCH_POSTGRES` (the server, default
//! `postgres://postgres@127.0.0.1:5432`; a database `errand_bench_<random>` is created on it
//! and dropped afterwards), `ERRAND_BENCH_JOBS` (tasks per round, default 20000),
//! `ERRAND_BENCH_ROUNDS` (default 3), `ERRAND_BENCH_CONCURRENCY` (default 64).

use errand_core::bench::{BenchOptions, run};
use errand_postgres::{PostgresConfig, PostgresStore};
use sqlx_core::connection::Connection;
use sqlx_core::executor::Executor;
use sqlx_core::raw_sql::raw_sql;
use sqlx_postgres::PgConnection;
use std::sync::Arc;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn setting(name: &str, default: usize) -> Result<usize, Error> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v.parse()?),
        _ => Ok(default),
    }
}

async fn admin(server: &str, statement: &str) -> Result<(), Error> {
    let mut conn = PgConnection::connect(&format!("{server}/postgres")).await?;
    conn.execute(raw_sql(statement)).await?;
    Ok(())
}

async fn rounds(url: &str) -> Result<(), Error> {
    let opts = BenchOptions {
        jobs: setting("ERRAND_BENCH_JOBS", 20_000)?,
        concurrency: setting("ERRAND_BENCH_CONCURRENCY", 64)?,
        ..BenchOptions::default()
    };
    let config = PostgresConfig {
        max_connections: 16,
        ..PostgresConfig::default()
    };
    let store = PostgresStore::connect(url, config).await?;
    for round in 0..setting("ERRAND_BENCH_ROUNDS", 3)? {
        let finished_before = round * (opts.jobs + opts.latency_tasks);
        let report = run(Arc::new(store.clone()), "postgres", &opts).await?;
        let mut line = serde_json::to_value(&report)?;
        line["round"] = round.into();
        line["finished_before"] = finished_before.into();
        println!("{line}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let server = std::env::var("ERRAND_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("errand_bench_{:016x}", rand::random::<u64>());
    admin(&server, &format!("CREATE DATABASE {name}")).await?;
    let result = rounds(&format!("{server}/{name}")).await;
    admin(&server, &format!("DROP DATABASE {name} WITH (FORCE)")).await?;
    result
}
