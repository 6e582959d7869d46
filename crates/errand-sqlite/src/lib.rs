//! # errand-sqlite
//!
//! errand's default store: embedded, durable, in one SQLite file. [`SqliteStore`] implements
//! [`errand_core::Store`] with exactly the semantics of the reference `MemoryStore` (leases and
//! fencing, idempotency keys, delays and retries, cancellation, owner-isolated listings,
//! watch events, TTL expiry) and passes core's conformance suite.
//!
//! How it is built:
//! - **WAL mode**, `synchronous=NORMAL` by default ([`Synchronous`]), and a busy timeout so
//!   several processes can share the file.
//! - **One writer thread** owns the read-write connection and commits every queued write in
//!   one transaction (batching as effectum does); a **pool of read-only connections** serves
//!   reads. SQLite never runs on the tokio runtime's threads.
//! - **Indexed claim path:** waiting, running and finished tasks each live in a partial index
//!   of their own, so a claim costs O(log n) however long the backlog or the history.
//! - **Versioned migrations** under `sql/migrations/`, and every operation's SQL in a file
//!   named for it under `sql/`.
//!
//! ```
//! use errand_core::{NewTask, Store};
//! use errand_sqlite::{SqliteConfig, SqliteStore};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("data/errand.db"), SqliteConfig::default())?;
//! let args = serde_json::value::to_raw_value(&serde_json::json!({"n": 1}))?;
//! let done = store.enqueue(vec![NewTask::new("count", args)]).await?;
//! let record = store.get(done[0].id).await?.expect("stored");
//! assert_eq!(record.name, "count");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod codec;
mod config;
mod database;
mod error;
mod migrations;
mod ops;
mod readers;
mod signals;
mod sql;
mod store;
mod writer;

pub use config::{SqliteConfig, Synchronous};
pub use error::SqliteError;
pub use store::SqliteStore;
pub use writer::WriterStats;
