//! Helpers shared by the integration tests.
// Each test file uses some of these helpers, not all.
#![allow(dead_code)]

use errand_core::{ClaimRequest, Claimed, Clock, Context, NewTask, SealKey, Secret, Store};
use errand_sqlite::{SqliteConfig, SqliteStore};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The lease the tests claim with.
pub const LEASE: Duration = Duration::from_secs(30);

/// Opens the store at `path` on `clock`.
pub fn open(path: &Path, clock: Arc<dyn Clock>) -> SqliteStore {
    let config = SqliteConfig {
        clock,
        ..SqliteConfig::default()
    };
    SqliteStore::open(path, config).expect("store opens")
}

/// A context for `user` with a credential.
pub fn ctx(user: &str) -> Context {
    Context::builder()
        .user_id(user)
        .tenant("acme")
        .request_id(format!("req-{user}"))
        .credential(Secret::new(format!("token-of-{user}")), None)
        .build()
}

/// A task submitted by `user`.
pub fn task_for(user: &str, key: &SealKey) -> NewTask {
    let args = serde_json::value::to_raw_value(&serde_json::json!({ "user": user }))
        .expect("JSON value serializes");
    NewTask::new("test", args)
        .with_context(&ctx(user), &key.clone().into())
        .expect("context seals")
}

/// Claims up to `limit` tasks from the default queue.
pub async fn claim(store: &dyn Store, limit: usize) -> Vec<Claimed> {
    store
        .claim(&ClaimRequest {
            queues: vec!["default".into()],
            limit,
            lease: LEASE,
            worker_id: "test".into(),
        })
        .await
        .expect("claim")
}

/// Claims up to ten tasks, returning the store's answer as is.
pub async fn claim_result(store: &dyn Store) -> Result<Vec<Claimed>, errand_core::StoreError> {
    store
        .claim(&ClaimRequest {
            queues: vec!["default".into()],
            limit: 10,
            lease: LEASE,
            worker_id: "test".into(),
        })
        .await
}
