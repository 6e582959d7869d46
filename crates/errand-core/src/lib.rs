//! # errand-core
//!
//! The foundation of errand: background work that never forgets who it is for.
//!
//! - [`Context`]: who and why (user, tenant, roles, request and correlation ids, traceparent,
//!   allow-listed headers, a sealed credential), captured by value at submission and restored
//!   around every execution.
//! - [`Task`]: a typed unit of work with a stable name and a policy; [`Registry`] maps names
//!   to handlers; [`TaskCx`] is what a running task sees.
//! - [`Store`]: durable records with leases and fencing; [`MemoryStore`] implements it in
//!   memory and is the reference for the SQLite and Redis stores.
//! - [`Client`] submits tasks; [`Worker`] claims and runs them.
//! - [`Manager`]: tracked in-process background tasks, not durable.
//!
//! The core knows nothing of HTTP, SQL or Redis.
#![warn(missing_docs)]

pub mod activity;
mod attempt_log;
mod client;
mod clock;
mod context;
mod cx;
pub mod deployment;
pub mod events;
mod history;
mod id;
mod lease;
mod listing;
mod manager;
mod memory;
mod observer;
pub mod otel;
mod registry;
pub mod remote;
mod resources;
mod seal;
mod sealed;
mod status;
mod store;
mod task;
mod worker;
mod xchacha;

#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "bench")]
pub mod cpu_meter;
#[cfg(feature = "bench")]
pub mod list_bench;

pub use attempt_log::{ATTEMPT_LOG_LIMIT, AttemptEnd, AttemptEnding, push_attempt};
pub use client::{Client, Submit, SubmitError};
pub use clock::{Clock, ManualClock, SystemClock, TokioClock};
pub use context::{
    Context, ContextBuilder, ContextSummary, CredentialError, HeaderAllowList, NEVER_COPIED_HEADERS,
};
pub use cx::TaskCx;
pub use history::{Action, ActionKind, ActionOutcome, HISTORY_LIMIT, push_action};
pub use id::{ParseTaskIdError, TaskId};
pub use lease::{
    LEASE_EXPIRED, Lease, LeaseState, LeaseToken, ParseLeaseTokenError, lease_expired_error,
};
pub use manager::{
    Manager, ManagerConfig, ManagerCounters, ShutdownStats, ShutdownStatus, SpawnBuilder,
    SpawnError, TaskEnd, TaskHandle, TaskInfo, TaskResult,
};
pub use memory::MemoryStore;
pub use observer::{AttemptObserver, AttemptOutcome};
pub use registry::{PrepareError, Prepared, Registry, RegistryError, TaskType};
pub use remote::{RemoteConfig, RemoteError, RemoteWorkers};
pub use resources::Resources;
pub use seal::{SealError, SealKey, SealKeyRing, Secret};
pub use sealed::{CONTEXT_INTEGRITY, SEAL_KEY_UNKNOWN, SealBinding, SealedContext, UnsealError};
pub use status::{
    ErrorInfo, Owner, ParseStateError, Progress, StatusUpdate, Step, StepStatus, TaskRecord,
    TaskState,
};
pub use store::{
    CancelOutcome, ClaimRequest, Claimed, CompleteResult, Completion, Enqueued, EventStream,
    ListQuery, MAX_DURATION, NewTask, Outcome, OwnerFilter, Page, QueueCounts, QueueDepth, Reaped,
    RetryOutcome, StateCounts, Store, StoreError, WorkSignal, complete_then_claim, scoped_key,
};
pub use task::{Backoff, DEFAULT_QUEUE, Policy, Task, TaskError};
pub use worker::{Worker, WorkerConfig, WorkerHandle, WorkerStats, WorkerStatus};

/// Re-exported so task argument types can derive `JsonSchema` without a direct dependency.
pub use schemars;
