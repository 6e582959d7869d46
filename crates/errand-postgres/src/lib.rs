//! errand's durable task store on Postgres.
#![warn(missing_docs)]

mod actions;
mod config;
mod enqueue;
mod error;
mod finish;
mod leases;
mod migrations;
mod read;
mod record;
mod signals;
mod sql;
mod store;
mod tx;

pub use config::PostgresConfig;
pub use error::PostgresError;
pub use store::PostgresStore;
pub use tx::SubmitInTx;
