//! A service that uses errand as a library: its own task, its own route that submits it on
//! behalf of the authenticated caller, errand's status API beside it, and a Worker of its own
//! tasks — in one binary, or split into API and worker processes over Redis.
//!
//! ```sh
//! # One process, SQLite under ./example-data:
//! ERRAND_JWT_SECRET=$(head -c 48 /dev/urandom | base64) cargo run -p errand --example service
//! # Many processes on one Redis: API-only processes and worker-only processes.
//! ERRAND_REDIS_URL=redis://127.0.0.1:6379 EXAMPLE_ROLE=api    cargo run -p errand --example service
//! ERRAND_REDIS_URL=redis://127.0.0.1:6379 EXAMPLE_ROLE=worker cargo run -p errand --example service
//! ```
//!
//! Every process needs the same `ERRAND_JWT_SECRET` (API) and `ERRAND_SEAL_KEY` (all: the
//! caller's token is sealed into the task under it). Then:
//!
//! ```sh
//! TOKEN=$(cargo run -q -p errand -- token --user alice)   # with ERRAND_JWT_SECRET set
//! curl -s -X POST localhost:3000/orders -H "authorization: Bearer $TOKEN" \
//!      -H 'content-type: application/json' -d '{"order_id": 42, "amount_cents": 1999}'
//! # → {"task": {"id": ..., "status_url": "/v1/tasks/...", ...}}; follow it with errand's API.
//! ```

use axum::routing::post;
use errand::server::{ApiError, Caller, Json, Server, ServerConfig};
use errand::{Client, Registry, SealKey, Store, Task, TaskCx, TaskError, Worker};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The service's own background work: send an invoice for an order, for the user who placed it.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct SendInvoice {
    order_id: u64,
    amount_cents: u64,
}

impl Task for SendInvoice {
    const NAME: &'static str = "send_invoice";
    type Output = String;

    async fn run(self, cx: TaskCx) -> Result<String, TaskError> {
        // The user is the one who placed the order: captured when the request submitted the
        // task, restored here, in whichever process runs it.
        let user = cx
            .user_id()
            .ok_or_else(|| TaskError::fatal("an invoice needs a customer").with_kind("no_user"))?
            .to_string();
        cx.plan_steps(["render", "deliver"]);
        let pdf = cx
            .step("render", async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(format!("invoice-{}.pdf", self.order_id))
            })
            .await?;
        cx.step("deliver", async {
            // The caller's credential, if the task needs to act as them downstream.
            let _token = cx.context().and_then(|c| c.credential().ok());
            tracing::info!(%pdf, amount_cents = self.amount_cents, "invoice delivered");
            Ok(())
        })
        .await?;
        Ok(format!("{pdf} sent to {user}"))
    }

    fn max_attempts(&self) -> u32 {
        5
    }
}

#[derive(Deserialize)]
struct NewOrder {
    order_id: u64,
    amount_cents: u64,
}

/// The service's own route: takes an order and hands the invoice off to errand, as the caller.
async fn place_order(
    axum::extract::State(client): axum::extract::State<Client>,
    caller: Caller,
    Json(order): Json<NewOrder>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let task = SendInvoice {
        order_id: order.order_id,
        amount_cents: order.amount_cents,
    };
    // The handler runs inside the caller's context, so `submit` captures it; the key makes a
    // double-clicked order one invoice.
    let enqueued = client
        .submit(task)
        .key(format!("invoice-{}", order.order_id))
        .await
        .map_err(|e| match e {
            errand::SubmitError::Store(s) => ApiError::from(s),
            other => {
                tracing::error!(error = %other, "cannot submit the invoice");
                ApiError::internal()
            }
        })?;
    let id = enqueued.id;
    Ok(Json(serde_json::json!({
        "user": caller.user_id(),
        "task": {
            "id": id,
            "status": enqueued.status,
            "deduplicated": enqueued.deduplicated,
            "status_url": format!("/v1/tasks/{id}"),
            "events_url": format!("/v1/tasks/{id}/events"),
        }
    })))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let role = env("EXAMPLE_ROLE").unwrap_or_else(|| "both".into());
    let store: Arc<dyn Store> = match env("ERRAND_REDIS_URL") {
        Some(url) => Arc::new(
            errand::redis::RedisStore::connect(
                &url,
                errand::redis::RedisConfig::default().prefix("example"),
            )
            .await?,
        ),
        None => Arc::new(errand::sqlite::SqliteStore::open(
            "./example-data/tasks.sqlite",
            errand::sqlite::SqliteConfig::default(),
        )?),
    };
    let seal_key = match env("ERRAND_SEAL_KEY") {
        Some(k) => SealKey::from_base64(&k)?,
        None if role == "both" => SealKey::generate(),
        None => return Err("set ERRAND_SEAL_KEY (the same in every process)".into()),
    };
    let mut registry = Registry::new();
    registry.register::<SendInvoice>()?;
    let registry = Arc::new(registry);

    let worker = (role != "api").then(|| {
        Worker::new(store.clone(), registry.clone(), seal_key.clone())
            .concurrency(16)
            .start()
    });

    if role != "worker" {
        let secret = env("ERRAND_JWT_SECRET").ok_or("set ERRAND_JWT_SECRET (at least 32 bytes)")?;
        let config = ServerConfig {
            jwt_secrets: vec![secret.into_bytes()],
            ..Default::default()
        };
        let client = Client::new(store.clone(), seal_key.clone());
        let own_routes = axum::Router::new()
            .route("/orders", post(place_order))
            .with_state(client);
        let server = Server::new(store, registry, seal_key, config)?.routes(own_routes);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
        server
            .serve(listener, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
    } else {
        let _ = tokio::signal::ctrl_c().await;
    }
    if let Some(worker) = worker {
        worker.shutdown(Duration::from_secs(30)).await;
    }
    Ok(())
}
