//! Core's store conformance suite against a `poll_only` `PostgresStore` (never LISTENs, keeps
//! no prepared statements: the PgBouncer transaction pooling setting), each case on a
//! database of its own.

mod common;

use common::TempDb;
use errand_core::conformance::Guarded;
use errand_postgres::{PostgresConfig, PostgresStore};
use std::time::Duration;

errand_core::store_conformance!(|clock| async move {
    let db = TempDb::new().await;
    let config = PostgresConfig {
        clock,
        poll_only: true,
        poll_interval: Duration::from_millis(200),
        ..PostgresConfig::default()
    };
    let store = PostgresStore::connect(&db.url, config)
        .await
        .expect("store opens");
    Guarded::new(store, db)
});
