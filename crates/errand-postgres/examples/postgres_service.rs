//! A service that writes an order and enqueues its invoice in the same transaction: the
//! invoice task exists if and only if the order does.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run -p errand-postgres --example postgres_service
//! curl -X POST localhost:3000/orders -H 'x-user: alice' -H 'content-type: application/json' \
//!     -d '{"total_cents": 1200}'
//! ```

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use errand_core::{Client, Context, Registry, SealKey, Task, TaskCx, TaskError, Worker};
use errand_postgres::{PostgresConfig, PostgresStore, SubmitInTx};
use sqlx_core::executor::Executor;
use sqlx_core::query::query;
use sqlx_core::raw_sql::raw_sql;
use sqlx_postgres::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// Sends the invoice of one order.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct SendInvoice {
    order_id: String,
}

impl Task for SendInvoice {
    const NAME: &'static str = "send_invoice";
    type Output = String;

    async fn run(self, cx: TaskCx) -> Result<String, TaskError> {
        // The task runs as the user who placed the order.
        let user = cx.user_id().unwrap_or("nobody");
        tracing::info!(order = %self.order_id, %user, "invoice sent");
        Ok(format!(
            "invoice for order {} sent to {user}",
            self.order_id
        ))
    }
}

#[derive(Clone)]
struct App {
    db: PgPool,
    errand: Client,
}

#[derive(serde::Deserialize)]
struct NewOrder {
    total_cents: i64,
}

#[derive(serde::Serialize)]
struct Placed {
    order_id: String,
    invoice_task: String,
}

/// The order row and its invoice task, in one transaction.
async fn place_order(
    State(app): State<App>,
    headers: HeaderMap,
    Json(order): Json<NewOrder>,
) -> Result<Json<Placed>, (StatusCode, String)> {
    let fail = |e: &dyn std::fmt::Display| (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    // A real service takes the user from its authentication layer.
    let user = headers
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .ok_or((StatusCode::UNAUTHORIZED, "no x-user header".into()))?;
    let ctx = Context::builder().user_id(user).build();
    let order_id = uuid::Uuid::now_v7();

    let mut tx = app.db.begin().await.map_err(|e| fail(&e))?;
    query("INSERT INTO orders (id, user_id, total_cents) VALUES ($1, $2, $3)")
        .bind(order_id)
        .bind(user)
        .bind(order.total_cents)
        .execute(&mut *tx)
        .await
        .map_err(|e| fail(&e))?;
    let invoice = app
        .errand
        .submit(SendInvoice {
            order_id: order_id.to_string(),
        })
        .context(ctx)
        .key(format!("invoice-{order_id}"))
        .in_tx(&mut tx)
        .await
        .map_err(|e| fail(&e))?;
    // Workers are woken by this commit; had it failed, neither the order nor the task would
    // exist.
    tx.commit().await.map_err(|e| fail(&e))?;

    Ok(Json(Placed {
        order_id: order_id.to_string(),
        invoice_task: invoice.id.to_string(),
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = PgPool::connect(&url).await?;
    db.execute(raw_sql(
        "CREATE TABLE IF NOT EXISTS orders (
             id uuid PRIMARY KEY, user_id text NOT NULL, total_cents bigint NOT NULL)",
    ))
    .await?;

    // errand's tables live in their own schema of the same database, on the same pool.
    let store = PostgresStore::with_pool(db.clone(), PostgresConfig::default()).await?;
    // A real service loads its deployment's key (see `errand_core::SealKeyRing`).
    let key = SealKey::generate();
    let mut registry = Registry::new();
    registry.register::<SendInvoice>()?;
    let worker = Worker::new(Arc::new(store.clone()), Arc::new(registry), key.clone()).start();

    let app = App {
        db,
        errand: Client::new(Arc::new(store), key),
    };
    let router = Router::new()
        .route("/orders", post(place_order))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    worker.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
