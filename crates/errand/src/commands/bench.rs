//! `errand bench`: the shared no-op benchmark on a chosen store; one JSON object as the last
//! line of stdout, with the same keys as the peers' benchmarks.

use crate::settings::{Settings, StoreArgs, StoreChoice, StoreKind};
use crate::stores;
use anyhow::Context as _;
use errand_core::bench::{BenchOptions, run as run_bench};
use errand_core::cpu_meter::{CpuMeter, LocalProcesses};
use errand_core::{Store, WorkerConfig};
use std::sync::Arc;
use std::time::Duration;

/// Measures enqueue, drain and enqueue-to-start latency on a fresh store.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Tasks to enqueue and drain.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Worker concurrency.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Tasks the worker claims ahead of the running ones (as `errand worker --prefetch`).
    #[arg(long, default_value_t = 0)]
    pub prefetch: usize,
    /// Tasks per enqueue batch.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Offered rate of the latency phase, tasks per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Tasks submitted in the latency phase.
    #[arg(long, default_value_t = 3000)]
    pub latency_tasks: usize,
    /// Idle time before one more task measures the wake-up latency (e.g. 2m); off by default.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub idle_probe: Option<Duration>,
    /// Instead of the drain: seed `--jobs` finished tasks of one user, then time listings
    /// (each filter, the search, the first page) and counts, one JSON line per query.
    #[arg(long)]
    pub list: bool,
    /// Timed runs per query of `--list`.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    #[command(flatten)]
    pub telemetry: crate::settings::TelemetryArgs,
}

pub async fn run(settings: Settings, args: BenchArgs) -> anyhow::Result<()> {
    // A fresh store every run: a temporary SQLite file (under --data-dir if given, to measure
    // that disk), or a unique Redis prefix that is deleted afterwards.
    let scratch = match &settings.global.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            tempfile::tempdir_in(dir)?
        }
        None => tempfile::tempdir()?,
    };
    let mut choice = settings.store(&args.store, StoreKind::Sqlite)?;
    match &mut choice {
        StoreChoice::Sqlite(path) => *path = scratch.path().join("bench.sqlite"),
        StoreChoice::Redis { prefix, .. } => {
            *prefix = format!("{prefix}-bench-{}", uuid::Uuid::now_v7().simple());
        }
        StoreChoice::Postgres { schema, .. } => {
            *schema = format!("{schema}_bench_{}", uuid::Uuid::now_v7().simple());
        }
        StoreChoice::Memory => {}
    }
    let label = match &choice {
        StoreChoice::Sqlite(_) => "sqlite",
        StoreChoice::Memory => "memory",
        StoreChoice::Redis { cluster: true, .. } => "redis-cluster",
        StoreChoice::Redis { .. } => "redis",
        StoreChoice::Postgres { .. } => "postgres",
    };
    let store = stores::open(&choice).await?;
    store
        .ping()
        .await
        .with_context(|| format!("the {label} store does not answer"))?;
    let options = BenchOptions {
        jobs: args.jobs,
        concurrency: args.concurrency,
        enqueue_batch: args.batch.max(1),
        latency_rate: args.rate,
        latency_tasks: args.latency_tasks,
        idle_probe: args.idle_probe,
        worker: WorkerConfig {
            poll_interval: Duration::from_secs(1),
            prefetch: args.prefetch,
            ..WorkerConfig::default()
        },
        store_cpu: store_meter(&choice).await,
        ..BenchOptions::default()
    };
    if args.list {
        let result = list_bench(&store, label, &args).await;
        cleanup(&choice, store).await;
        return result;
    }
    eprintln!(
        "errand bench: {} jobs, concurrency {}, store {}",
        args.jobs,
        args.concurrency,
        stores::describe(&choice)
    );
    let result = run_bench(store.clone(), label, &options).await;
    cleanup(&choice, store).await;
    let report = result?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// `--list`: seeds, then prints a JSON line per timed query.
async fn list_bench(store: &Arc<dyn Store>, label: &str, args: &BenchArgs) -> anyhow::Result<()> {
    use errand_core::list_bench::{ListBenchOptions, measure, seed};
    let options = ListBenchOptions {
        tasks: args.jobs,
        runs: args.runs,
        batch: args.batch.max(1),
    };
    eprintln!(
        "errand bench --list: seeding {} finished tasks of one user",
        args.jobs
    );
    let took = seed(store, options.tasks, options.batch).await?;
    eprintln!("errand bench --list: seeded in {:.1} s", took.as_secs_f64());
    for line in measure(store, label, &options).await? {
        println!("{}", serde_json::to_string(&line)?);
    }
    Ok(())
}

/// Reads the CPU time of `choice`'s server, for the per-task CPU figures: Redis's own
/// `INFO cpu`; a PostgreSQL on this machine (loopback or a Unix socket) from its processes in
/// `/proc`. `None` for the embedded stores, whose work is the worker process's own, and for a
/// remote PostgreSQL.
async fn store_meter(choice: &StoreChoice) -> Option<Arc<dyn CpuMeter>> {
    match choice {
        StoreChoice::Redis { url, .. } => {
            match errand_redis::RedisStore::connect(url, stores::redis_config(choice)).await {
                Ok(redis) => Some(Arc::new(RedisCpu(redis))),
                Err(e) => {
                    eprintln!("errand bench: Redis's CPU time will not be reported: {e}");
                    None
                }
            }
        }
        StoreChoice::Postgres { url, .. } if is_local_postgres(url) => {
            Some(Arc::new(LocalProcesses::named("postgres")))
        }
        _ => None,
    }
}

/// Whether the PostgreSQL at `url` runs on this machine: a loopback host or a Unix socket.
fn is_local_postgres(url: &str) -> bool {
    use std::str::FromStr as _;
    let Ok(options) = sqlx_postgres::PgConnectOptions::from_str(url) else {
        return false;
    };
    let host = options.get_host();
    host.starts_with('/')
        || host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Redis's CPU time, from `INFO cpu` (summed over a cluster's primaries).
#[derive(Debug)]
struct RedisCpu(errand_redis::RedisStore);

#[async_trait::async_trait]
impl CpuMeter for RedisCpu {
    fn source(&self) -> String {
        "redis INFO cpu (primaries)".into()
    }

    async fn cpu_time(&self) -> Option<Duration> {
        self.0.server_cpu().await.ok()
    }
}

/// Deletes a benchmark's Redis keys or PostgreSQL schema (a SQLite scratch file goes with its
/// temporary directory).
async fn cleanup(choice: &StoreChoice, store: Arc<dyn Store>) {
    if let StoreChoice::Postgres { url, schema, .. } = choice {
        drop(store);
        if let Err(e) = drop_schema(url, schema).await {
            eprintln!("errand bench: could not drop the benchmark's schema {schema}: {e}");
        }
        return;
    }
    if let StoreChoice::Redis { url, prefix, .. } = choice {
        drop(store);
        match errand_redis::RedisStore::connect(url, stores::redis_config(choice)).await {
            Ok(redis) => {
                if let Err(e) = redis.clear().await {
                    eprintln!(
                        "errand bench: could not delete the benchmark's keys under {prefix}: {e}"
                    );
                }
            }
            Err(e) => {
                eprintln!("errand bench: could not delete the benchmark's keys under {prefix}: {e}")
            }
        }
    }
}

/// Drops the scratch schema `schema` of a PostgreSQL benchmark, with everything in it.
async fn drop_schema(url: &str, schema: &str) -> Result<(), sqlx_core::Error> {
    use sqlx_core::connection::Connection;
    use sqlx_core::executor::Executor;
    let mut conn = sqlx_postgres::PgConnection::connect(url).await?;
    let quoted = schema.replace('"', "\"\"");
    conn.execute(format!("DROP SCHEMA IF EXISTS \"{quoted}\" CASCADE").as_str())
        .await?;
    conn.close().await
}

#[cfg(test)]
mod tests {
    use super::is_local_postgres;

    #[test]
    fn postgres_on_loopback_or_a_socket_is_local() {
        assert!(is_local_postgres("postgres://postgres@127.0.0.1:5432/test"));
        assert!(is_local_postgres("postgres://postgres@localhost/test"));
        assert!(is_local_postgres("postgres://postgres@[::1]:5432/test"));
        assert!(is_local_postgres(
            "postgres:///test?host=/var/run/postgresql"
        ));
        assert!(!is_local_postgres(
            "postgres://postgres@db.example.com/test"
        ));
        assert!(!is_local_postgres("postgres://postgres@10.0.0.7/test"));
    }
}
