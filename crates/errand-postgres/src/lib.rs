//! errand's durable task store on Postgres: [`PostgresStore`], an [`errand_core::Store`] on
//! the service's own database, and [`SubmitInTx::in_tx`], which enqueues a task inside the
//! service's own transaction.
//!
//! # Enqueue with the data it belongs to
//!
//! A task enqueued with [`SubmitInTx::in_tx`] is written by the caller's transaction: it
//! exists if and only if that transaction commits, so an order and its invoice task are
//! stored together or not at all, and no worker sees the task before the commit (its wake-up
//! is a `NOTIFY` sent by the commit).
//!
//! ```no_run
//! use errand_core::{Client, Context, SealKey, Task, TaskCx, TaskError};
//! use errand_postgres::{PostgresConfig, PostgresStore, SubmitInTx};
//! use std::sync::Arc;
//!
//! #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! struct SendInvoice { order_id: i64 }
//! impl Task for SendInvoice {
//!     const NAME: &'static str = "send_invoice";
//!     type Output = ();
//!     async fn run(self, _cx: TaskCx) -> Result<(), TaskError> { Ok(()) }
//! }
//!
//! # async fn place_order() -> anyhow::Result<()> {
//! let db = sqlx_postgres::PgPool::connect("postgres://app@db/app").await?;
//! let store = PostgresStore::with_pool(db.clone(), PostgresConfig::default()).await?;
//! let client = Client::new(Arc::new(store), SealKey::generate());
//!
//! let mut tx = db.begin().await?;
//! sqlx_core::query::query("INSERT INTO orders (id) VALUES (42)").execute(&mut *tx).await?;
//! let ctx = Context::builder().user_id("alice").build();
//! client
//!     .submit(SendInvoice { order_id: 42 })
//!     .context(ctx)
//!     .key("invoice-42")
//!     .in_tx(&mut tx)
//!     .await?;
//! tx.commit().await?; // the order and its task, or neither
//! # Ok(()) }
//! ```
//!
//! # Delivery guarantees
//!
//! - **At least once.** A claim locks the oldest due tasks with `FOR UPDATE SKIP LOCKED`
//!   (concurrent claims never take the same task nor wait on each other) and gives each a
//!   lease: a deadline and a random 128-bit token. A task whose lease lapses (its worker
//!   died) is handed out again by [`errand_core::Store::reap`], with a new token. Claims
//!   commit without waiting for their WAL flush: one lost in a crash of the server is a lease
//!   that lapsed at once (the task waits again and is claimed anew; its first worker is fenced
//!   out). Enqueues, completions, cancels and retries wait for theirs.
//! - **Fencing.** Heartbeats, reports and completions carry the lease and change a task only
//!   while its token is the current one, so a worker that lost its lease cannot overwrite the
//!   newer attempt; a completion is applied once.
//! - **Atomic transitions.** Every change of a task, its per-state counters and its history
//!   entry are one transaction; finished tasks move out of the hot table in the transaction
//!   that finishes them, so claims walk live tasks only.
//! - **Idempotency keys** are a unique index over live tasks (scoped to the owner): while a
//!   task with the key is live, enqueueing it again returns that task, across processes and
//!   transactions.
//! - **Wake-ups** are `LISTEN`/`NOTIFY` (one notification per batch; status changes only for
//!   tasks somebody watches, so unwatched claims and completions send none), with a poll every
//!   [`PostgresConfig::poll_interval`] as the fallback for a lost notification, a reconnect,
//!   or a scheduled task falling due. With [`PostgresConfig::poll_only`] (PgBouncer in
//!   transaction pooling mode) the store never listens: other processes' work, changes and
//!   cancellations are found by polling (a running task's cancellation then reaches its
//!   worker with its next heartbeat).
//! - **Unavailability.** A server that cannot be reached makes every operation fail with
//!   [`errand_core::StoreError::Unavailable`] (the API answers 503); the store works again
//!   when the server is back.
//!
//! # Layout
//!
//! Tables live in their own schema ([`PostgresConfig::schema`], default `errand`), created and
//! upgraded on open from the versioned scripts in `sql/migrations/`; every statement is a file
//! of `sql/` named for its operation.
#![warn(missing_docs)]

mod actions;
mod config;
mod cycle;
mod enqueue;
mod error;
mod finish;
mod housekeeping;
mod leases;
mod migrations;
mod read;
mod record;
mod signals;
mod sql;
mod store;
mod tx;
mod warnings;
mod watching;

pub use config::PostgresConfig;
pub use error::PostgresError;
pub use store::PostgresStore;
pub use tx::SubmitInTx;
