//! errand: background work for tokio/axum services that never forgets who it is for.
//!
//! This facade re-exports the core ([`Context`], [`Task`], [`Client`], [`Worker`],
//! [`Manager`], [`Store`] and the in-memory store) and the other crates as modules:
//! [`sqlite`] (the embedded default store), [`redis`] (the distributed store), [`postgres`]
//! (the store on the service's own PostgreSQL, with enqueue in its transactions), [`server`]
//! (the HTTP API). [`reference`] is the reference pipeline `errand serve` runs, and an example
//! of a service's tasks.
pub use errand_core::*;

/// The embedded, durable SQLite store (`errand-sqlite`).
pub use errand_sqlite as sqlite;

/// The distributed Redis store (`errand-redis`).
pub use errand_redis as redis;

/// The PostgreSQL store, with enqueue inside the caller's transaction (`errand-postgres`).
pub use errand_postgres as postgres;

/// The HTTP API (`errand-server`).
pub use errand_server as server;

pub mod reference;

/// The README's Rust example, compiled and run as a doctest.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
