//! # errand-sqlite
//!
//! errand's default store: embedded, durable, in one SQLite file. [`SqliteStore`] implements
//! [`errand_core::Store`] with the semantics of the reference `MemoryStore` (leases and
//! fencing, idempotency keys, delays and retries, cancellation, owner-isolated listings,
//! watch events, TTL expiry), as far as core's conformance suite checks them, which it
//! passes. Where it differs, it says so below: durability, and several processes sharing a
//! file (whose signals stay within each process). Times are stored to the microsecond.
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
//! What to expect in operation:
//! - **Durability:** with the default `synchronous=NORMAL`, every acknowledged write survives a
//!   crash of the process; a power cut can lose the last commits but never corrupts the file.
//!   [`Synchronous::Full`] makes commits survive power cuts too, at some throughput.
//! - **Several processes** may share the file. Each has its own writer; SQLite serialises
//!   their transactions. Wake-ups, watch events and cancellation signals stay within a process:
//!   workers elsewhere find new work at their poll interval and learn of a cancellation at
//!   their next heartbeat.
//! - **Expiry:** finished records are hidden once their TTL passes and deleted by
//!   [`Store::purge_expired`](errand_core::Store::purge_expired), which every
//!   [`Worker`](errand_core::Worker) runs in the background.
//! - **Opening blocks:** [`SqliteStore::open`] is synchronous and may wait up to the busy
//!   timeout while another process holds the file; async callers use `spawn_blocking`.
//! - **Watching** waits for the writer's current batch, so a record read after
//!   [`Store::watch`](errand_core::Store::watch) returns shows every change the watch will not
//!   announce.
//! - **Failures** never panic: a locked, unwritable or damaged file gives a [`SqliteError`]
//!   at open, or a [`StoreError`](errand_core::StoreError) naming the file and the cause
//!   (`Unavailable` for locks and I/O failures) during operation. A write the database
//!   refuses is `Invalid`, with a message free of paths and SQL (the details are logged).
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
mod ending;
mod error;
mod history;
mod listing;
mod migrations;
mod ops;
pub mod private;
mod readers;
mod signals;
mod sql;
mod store;
mod tally;
mod writer;

pub use config::{SqliteConfig, Synchronous};
pub use error::SqliteError;
pub use store::SqliteStore;
pub use writer::WriterStats;
