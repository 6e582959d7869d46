//! Helpers shared by the integration tests: each test gets a database of its own on the
//! machine's Postgres (`ERRAND_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432`),
//! dropped when its [`TempDb`] goes.
// Each test file uses some of these helpers, not all.
#![allow(dead_code)]

use errand_core::{Clock, ManualClock};
use errand_postgres::{PostgresConfig, PostgresStore};
use sqlx_core::connection::Connection;
use sqlx_core::executor::Executor;
use sqlx_core::raw_sql::raw_sql;
use sqlx_postgres::{PgConnection, PgPool};
use std::sync::Arc;

/// The server the tests run on.
pub fn server() -> String {
    std::env::var("ERRAND_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A database created for one test, dropped (best effort) when this goes.
pub struct TempDb {
    /// Its URL.
    pub url: String,
    name: String,
}

impl TempDb {
    /// Creates `errand_t_<random>`.
    pub async fn new() -> Self {
        let name = format!("errand_t_{:032x}", rand::random::<u128>());
        let mut admin = PgConnection::connect(&format!("{}/postgres", server()))
            .await
            .expect("the test server answers");
        admin
            .execute(raw_sql(&format!("CREATE DATABASE {name}")))
            .await
            .expect("create the test database");
        Self {
            url: format!("{}/{name}", server()),
            name,
        }
    }

    /// A pool on the database.
    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url).await.expect("pool connects")
    }

    /// A store on the database with `clock`.
    pub async fn store(&self, clock: Arc<dyn Clock>) -> PostgresStore {
        let config = PostgresConfig {
            clock,
            ..PostgresConfig::default()
        };
        PostgresStore::connect(&self.url, config)
            .await
            .expect("store opens")
    }

    /// A store on the database with a manual clock.
    pub async fn manual_store(&self) -> (PostgresStore, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        (self.store(clock.clone()).await, clock)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Dropping needs a runtime of its own: this may run inside or outside one.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&format!("{}/postgres", server()))
                    .await
                    .ok()?;
                admin
                    .execute(raw_sql(&format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .await
                    .ok()
            })
        });
        let _ = dropped.join();
    }
}

/// A task that does nothing.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Ping;

impl errand_core::Task for Ping {
    const NAME: &'static str = "ping";
    type Output = ();
    async fn run(self, _cx: errand_core::TaskCx) -> Result<(), errand_core::TaskError> {
        Ok(())
    }
}

/// A claim of up to `limit` tasks of the default queue with a 30 s lease.
pub fn claim_request(limit: usize) -> errand_core::ClaimRequest {
    errand_core::ClaimRequest {
        queues: vec!["default".into()],
        limit,
        lease: std::time::Duration::from_secs(30),
        worker_id: "test".into(),
    }
}
