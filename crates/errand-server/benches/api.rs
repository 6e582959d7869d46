//! Throughput of errand's HTTP API on loopback, through the whole stack (HTTP/1.1 keep-alive,
//! authentication, context capture and sealing, the MemoryStore), printed as one JSON object.
//!
//! `cargo bench -p errand-server --bench api -- [--requests N] [--concurrency C]`
//!
//! - `healthz_per_s`: unauthenticated requests (the HTTP and middleware floor);
//! - `auth_get_per_s`: `GET /v1/task-types`, authenticated (adds token check and context);
//! - `submit_per_s`: `POST /v1/tasks` (adds validation, sealing and an enqueue), no worker;
//! - `get_per_s`: `GET /v1/tasks/{id}`;
//! - `end_to_end_per_s`: submissions of no-op tasks with a Worker running, until all succeed.

use errand_core::{MemoryStore, Registry, SealKey, Store, Task, TaskCx, TaskError, Worker};
use errand_server::{Server, ServerConfig};
use futures::StreamExt;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Noop {}

impl Task for Noop {
    const NAME: &'static str = "noop";
    type Output = ();
    async fn run(self, _cx: TaskCx) -> Result<(), TaskError> {
        Ok(())
    }
}

struct Args {
    requests: usize,
    concurrency: usize,
}

fn args() -> Args {
    let mut out = Args {
        requests: 20_000,
        concurrency: 32,
    };
    let argv: Vec<String> = std::env::args().collect();
    for pair in argv.windows(2) {
        let value = pair[1].parse().ok();
        match (pair[0].as_str(), value) {
            ("--requests", Some(n)) => out.requests = n,
            ("--concurrency", Some(n)) => out.concurrency = n,
            _ => {}
        }
    }
    out
}

/// Runs `n` requests made by `make`, `c` at a time; returns requests per second.
async fn rate<F, Fut>(n: usize, c: usize, make: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = reqwest::StatusCode>,
{
    let started = Instant::now();
    let statuses: Vec<reqwest::StatusCode> = futures::stream::iter(0..n)
        .map(make)
        .buffer_unordered(c)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let failed = statuses.iter().filter(|s| !s.is_success()).count();
    assert_eq!(failed, 0, "{failed} requests failed");
    n as f64 / elapsed
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Args {
        requests,
        concurrency,
    } = args();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut registry = Registry::new();
    registry.register::<Noop>()?;
    let registry = Arc::new(registry);
    let key = SealKey::generate();
    let config = ServerConfig {
        jwt_secrets: vec![b"benchmark-secret-benchmark-secret-32".to_vec()],
        ..Default::default()
    };
    let token = config.mint_token("bench", Some("acme"), false, Duration::from_secs(3600))?;
    let server = Server::new(
        Arc::clone(&store),
        Arc::clone(&registry),
        key.clone(),
        config,
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let body = json!({"name": "noop", "args": {}});

    let healthz_per_s = rate(requests, concurrency, |_| {
        let request = http.get(format!("{base}/healthz"));
        async move { request.send().await.map(|r| r.status()).unwrap_or_default() }
    })
    .await;
    let auth_get_per_s = rate(requests, concurrency, |_| {
        let request = http
            .get(format!("{base}/v1/task-types"))
            .bearer_auth(&token);
        async move { request.send().await.map(|r| r.status()).unwrap_or_default() }
    })
    .await;
    let submit_per_s = rate(requests, concurrency, |_| {
        let request = http
            .post(format!("{base}/v1/tasks"))
            .bearer_auth(&token)
            .json(&body);
        async move { request.send().await.map(|r| r.status()).unwrap_or_default() }
    })
    .await;
    let listed: serde_json::Value = http
        .get(format!("{base}/v1/tasks?limit=1"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let id = listed["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let get_per_s = rate(requests, concurrency, |_| {
        let request = http
            .get(format!("{base}/v1/tasks/{id}"))
            .bearer_auth(&token);
        async move { request.send().await.map(|r| r.status()).unwrap_or_default() }
    })
    .await;

    // The backlog of the submit phase runs first; then time fresh submissions to completion.
    let worker = Worker::new(Arc::clone(&store), Arc::clone(&registry), key).start();
    while worker.stats().succeeded < requests as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    rate(requests, concurrency, |_| {
        let request = http
            .post(format!("{base}/v1/tasks"))
            .bearer_auth(&token)
            .json(&body);
        async move { request.send().await.map(|r| r.status()).unwrap_or_default() }
    })
    .await;
    while worker.stats().succeeded < 2 * requests as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let end_to_end_per_s = requests as f64 / started.elapsed().as_secs_f64();
    worker.shutdown(Duration::from_secs(5)).await;
    let _ = stop.send(());
    served.await??;

    println!(
        "{}",
        json!({
            "bench": "errand-server api",
            "store": "memory",
            "requests": requests,
            "concurrency": concurrency,
            "healthz_per_s": healthz_per_s.round(),
            "auth_get_per_s": auth_get_per_s.round(),
            "submit_per_s": submit_per_s.round(),
            "get_per_s": get_per_s.round(),
            "end_to_end_per_s": end_to_end_per_s.round(),
        })
    );
    Ok(())
}
