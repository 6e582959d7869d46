//! [`AppState`]: what every handler shares (the store, the registry, the seal keys, the
//! configuration, the token verifier, the metrics, the shutdown signal and the OpenAPI document), and the lookups
//! they all make.

use crate::caller::Caller;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::streams::StreamLimits;
use crate::token::Verifier;
use crate::validators::Validators;
use axum::body::Bytes;
use errand_core::remote::types::TaskTypes;
use errand_core::{Registry, RemoteWorkers, SealKeyRing, Store, StoreError, TaskId, TaskRecord};
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

/// What every handler shares.
pub(crate) struct AppState {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub seal_keys: SealKeyRing,
    pub config: ServerConfig,
    /// Checks bearer tokens against the configured keys.
    pub verifier: Verifier,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server shuts down: open event streams end.
    pub shutdown: CancellationToken,
    /// The OpenAPI document (JSON) served at `/openapi.json` while no remote task type is
    /// registered.
    pub openapi: Bytes,
    /// The document without tasks, to which the registered remote task types are added.
    pub routes_document: serde_json::Value,
    /// The caps on open event streams.
    pub streams: Arc<StreamLimits>,
    /// The remote-worker runtime, when this server runs remote workers.
    pub remote: OnceLock<Arc<RemoteWorkers>>,
    /// The task types remote workers registered.
    pub task_types: TaskTypes,
    /// Their compiled argument schemas.
    pub validators: Validators,
}

impl AppState {
    /// Counts and logs a store error, and turns it into the API's answer (503 when the store
    /// is unreachable).
    pub fn store_error(&self, operation: &'static str, error: StoreError) -> ApiError {
        self.metrics.store_error(operation, &error);
        if error.is_unavailable() {
            tracing::warn!(operation, %error, "task store unavailable");
        }
        error.into()
    }

    /// Task `id`'s record if the caller may see it; 404 otherwise, whether the task does not
    /// exist or belongs to someone else.
    pub async fn visible_record(
        &self,
        caller: &Caller,
        id: TaskId,
    ) -> Result<TaskRecord, ApiError> {
        self.visible(caller, id)
            .await?
            .ok_or_else(ApiError::not_found)
    }

    /// Task `id`'s record if the caller may see it; `None` whether the task does not exist or
    /// belongs to someone else.
    pub async fn visible(
        &self,
        caller: &Caller,
        id: TaskId,
    ) -> Result<Option<TaskRecord>, ApiError> {
        match self.store.get(id).await {
            Ok(record) => Ok(record.filter(|r| caller.may_access(&r.owner))),
            Err(e) => Err(self.store_error("get", e)),
        }
    }
}
