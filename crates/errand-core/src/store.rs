//! [`Store`]: the durable side of errand. Every backend (memory, SQLite, Redis) implements this
//! trait and passes the same conformance suite (`errand_core::conformance`).
//!
//! The trait is batch-shaped on the hot path (enqueue, claim, heartbeat, report, complete take
//! many items at once) because round trips, not CPU, decide a store's throughput.
//!
//! Delivery is at-least-once. A claim takes a *lease* identified by a [`Lease`]: the task id and
//! a random [`LeaseToken`] issued by that claim (see [`crate::lease`]). Heartbeats, reports and
//! completions carry the lease, and a store rejects them once the task has been claimed again
//! (the lease lapsed and another worker took over), so a worker that lost its lease cannot
//! overwrite the newer attempt.

use crate::context::Context;
#[cfg(doc)]
use crate::history::Action;
use crate::id::TaskId;
#[cfg(doc)]
use crate::lease::LeaseToken;
use crate::lease::{Lease, LeaseState};
use crate::listing::search_hits;
pub use crate::listing::{QueueCounts, StateCounts};
use crate::seal::{SealError, SealKeyRing};
use crate::sealed::{SealBinding, SealedContext};
use crate::status::{ErrorInfo, Owner, StatusUpdate, TaskRecord, TaskState};
use crate::task::{DEFAULT_QUEUE, Policy};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde_json::value::RawValue;
use std::time::Duration;

/// What can go wrong talking to a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached right now (connection refused, timed out, database
    /// locked). Callers should answer 503 and try again later.
    #[error("the task store is unavailable: {0}")]
    Unavailable(String),
    /// Data in the store could not be read back.
    #[error("the task store holds data errand cannot read: {0}")]
    Corrupt(String),
    /// The request cannot be stored (for instance a field is too large for the backend).
    #[error("invalid request to the task store: {0}")]
    Invalid(String),
    /// Any other backend failure.
    #[error("task store error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether the error means "try again later" (HTTP 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A task to be stored, as built by [`Client`](crate::Client) or by hand.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Its id (UUIDv7, chosen by the submitter so batches need no round trip for ids).
    pub id: TaskId,
    /// The registered task name.
    pub name: String,
    /// The queue it runs on.
    pub queue: String,
    /// The task's arguments as JSON.
    pub args: Box<RawValue>,
    /// The submitter's context, sealed; `None` for a task without context.
    pub context: Option<SealedContext>,
    /// Who owns it (copied from the context).
    pub owner: Owner,
    /// The context's correlation id.
    pub correlation_id: Option<String>,
    /// The context's request id.
    pub request_id: Option<String>,
    /// The trace id of the context's `traceparent`, stored in the clear for display
    /// ([`TaskRecord::trace_id`]).
    pub trace_id: Option<String>,
    /// Idempotency key: while a task with the same owner and key is live (not finished),
    /// enqueueing returns that task instead of a new one. Keys are always scoped to the owner;
    /// a sharded store (Redis) also scopes them to the task's queue.
    pub key: Option<String>,
    /// Do not run before this delay has passed.
    pub delay: Option<Duration>,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// How long the finished record is kept.
    pub ttl: Duration,
}

impl NewTask {
    /// A task with default policy and no context.
    pub fn new(name: impl Into<String>, args: Box<RawValue>) -> Self {
        Self {
            id: TaskId::new(),
            name: name.into(),
            queue: DEFAULT_QUEUE.into(),
            args,
            context: None,
            owner: Owner::default(),
            correlation_id: None,
            request_id: None,
            trace_id: None,
            key: None,
            delay: None,
            max_attempts: 3,
            timeout: Duration::from_secs(300),
            ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// Applies a task's policy (queue, attempts, timeout, TTL).
    pub fn with_policy(mut self, policy: &Policy) -> Self {
        self.queue.clone_from(&policy.queue);
        self.max_attempts = policy.max_attempts;
        self.timeout = policy.timeout.min(MAX_DURATION);
        self.ttl = policy.ttl.min(MAX_DURATION);
        self
    }

    /// Attaches `ctx`, sealed under `ring` and bound to this task's id, name and arguments,
    /// and takes the owner and ids from it. Call it once the id, name and arguments are final:
    /// changing them afterwards makes the context fail its integrity check.
    pub fn with_context(mut self, ctx: &Context, ring: &SealKeyRing) -> Result<Self, SealError> {
        let binding = SealBinding::new(self.id, &self.name, self.args.get());
        self.context = Some(ctx.seal(ring, binding)?);
        self.owner = Owner {
            user_id: ctx.user_id().map(str::to_string),
            tenant: ctx.tenant().map(str::to_string),
        };
        self.correlation_id = ctx.correlation_id().map(str::to_string);
        self.request_id = ctx.request_id().map(str::to_string);
        self.trace_id = ctx.trace_id().map(str::to_string);
        Ok(self)
    }

    /// The idempotency key scoped to the owner, so two users' equal keys never collide; `None`
    /// without a key. Stores index this value.
    pub fn scoped_key(&self) -> Option<String> {
        self.key.as_deref().map(|k| scoped_key(&self.owner, k))
    }
}

/// An idempotency key scoped to its owner: what stores index, so two users' equal keys never
/// collide.
///
/// The scope is encoded as a JSON array, so no choice of tenant, user and key can be read as
/// another's: `None` and `""` differ, and separators inside ids cannot shift the parts.
///
/// ```
/// use errand_core::{Owner, scoped_key};
/// let a = scoped_key(&Owner::new("x", None), "y\u{1f}k");
/// let b = scoped_key(&Owner::new("x\u{1f}y", None), "k");
/// assert_ne!(a, b);
/// assert_ne!(scoped_key(&Owner::new("u", None), "k"), scoped_key(&Owner::new("u", Some(String::new())), "k"));
/// ```
pub fn scoped_key(owner: &Owner, key: &str) -> String {
    serde_json::json!([owner.tenant, owner.user_id, key]).to_string()
}

/// [`Store::complete_and_claim`]'s default, for a store that writes some batches atomically and
/// the others this way: [`Store::complete`], then [`Store::claim`]. A claim that fails after the
/// completions were written claims nothing (the error is logged), since the completions'
/// answers must not be lost.
pub async fn complete_then_claim<S: Store + ?Sized>(
    store: &S,
    completions: Vec<Completion>,
    claim: &ClaimRequest,
) -> Result<(Vec<CompleteResult>, Vec<Claimed>), StoreError> {
    let results = store.complete(completions).await?;
    let claimed = match store.claim(claim).await {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!(error = %e, "claiming after writing completions failed");
            Vec::new()
        }
    };
    Ok((results, claimed))
}

/// The longest delay, timeout or TTL errand stores (100 years): longer ones are clamped, so
/// "forever" written as `Duration::MAX` stays representable in every store.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The result of enqueueing one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The task's id: the new one, or the live task's with the same key.
    pub id: TaskId,
    /// Its state now.
    pub status: TaskState,
    /// Whether the key matched a live task, so nothing new was stored.
    pub deduplicated: bool,
}

/// What a worker asks for when it claims.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// Queues to take from.
    pub queues: Vec<String>,
    /// At most this many tasks.
    pub limit: usize,
    /// The lease each claimed task gets; renew it with [`Store::heartbeat`].
    pub lease: Duration,
    /// The claiming worker, for diagnostics.
    pub worker_id: String,
}

/// A task handed to a worker.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Its lease.
    pub lease: Lease,
    /// The registered task name.
    pub name: String,
    /// Its queue.
    pub queue: String,
    /// Its arguments.
    pub args: Box<RawValue>,
    /// Its sealed context.
    pub context: Option<SealedContext>,
    /// Its owner as the store records it: the worker checks it against the opened context.
    pub owner: Owner,
    /// Its correlation id.
    pub correlation_id: Option<String>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Time limit of this attempt.
    pub timeout: Duration,
    /// When this attempt became due (its submission, the end of its delay, or its retry
    /// time), if the store knows: the start of its wait in the queue.
    pub due_at: Option<DateTime<Utc>>,
}

impl Claimed {
    /// What its sealed context is bound to: its id, name and arguments as stored.
    pub fn seal_binding(&self) -> SealBinding<'_> {
        SealBinding::new(self.lease.id, &self.name, self.args.get())
    }
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It succeeded with this result.
    Success(Box<RawValue>),
    /// It failed and will be attempted again after `delay` (state `retrying`).
    Retry {
        /// The failure.
        error: ErrorInfo,
        /// Backoff before the next attempt.
        delay: Duration,
    },
    /// It failed for good.
    Failed(ErrorInfo),
    /// It stopped because cancellation was requested.
    Cancelled,
    /// The worker shut down before it finished: back to `pending` without spending the
    /// attempt.
    Released,
}

/// One attempt's end, as reported by its worker.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The lease it ran under.
    pub lease: Lease,
    /// How it ended.
    pub outcome: Outcome,
    /// Its last progress and steps.
    pub report: StatusUpdate,
}

/// Whether a completion was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompleteResult {
    /// Applied.
    Applied,
    /// Rejected: the lease was lost (another attempt owns the task, or it finished).
    Stale,
}

/// The result of [`Store::cancel`].
#[derive(Debug, Clone)]
pub enum CancelOutcome {
    /// It was waiting and is now `cancelled`.
    Cancelled(Box<TaskRecord>),
    /// It is running; its worker's token fires and the record ends `cancelled`.
    Requested(Box<TaskRecord>),
    /// Its state does not allow cancelling (it finished).
    Conflict(TaskState),
    /// No such task.
    NotFound,
}

/// The result of [`Store::retry`].
#[derive(Debug, Clone)]
pub enum RetryOutcome {
    /// It failed or was cancelled, and is `pending` again with a fresh set of attempts and its
    /// original context.
    Requeued(Box<TaskRecord>),
    /// Its state does not allow a retry (it is live, or succeeded).
    Conflict(TaskState),
    /// No such task.
    NotFound,
}

/// Whose tasks a listing shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerFilter {
    /// Only this owner's (user and tenant must both match).
    Owner(Owner),
    /// Everyone's (admins).
    Any,
}

impl OwnerFilter {
    /// Whether `owner` passes the filter.
    pub fn admits(&self, owner: &Owner) -> bool {
        match self {
            OwnerFilter::Owner(o) => o == owner,
            OwnerFilter::Any => true,
        }
    }
}

/// A listing request: newest first, paged by cursor. The filters combine (every one given
/// must match); [`ListQuery::matches`] is their definition, which every store answers from
/// its indexes (see each store's `list`).
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Whose tasks.
    pub owner: OwnerFilter,
    /// Only this state.
    pub status: Option<TaskState>,
    /// Only this task name.
    pub name: Option<String>,
    /// Only tasks of this queue.
    pub queue: Option<String>,
    /// Only tasks created at or after this time. Creation time is read from the task's id
    /// (a UUIDv7, milliseconds), so the range is an id range; it is the record's
    /// `created_at` up to the clock skew between submitter and store.
    pub created_after: Option<DateTime<Utc>>,
    /// Only tasks created before this time (same clock as `created_after`).
    pub created_before: Option<DateTime<Utc>>,
    /// Only the task whose id is this, or tasks whose correlation id or request id is this
    /// (exact matches).
    pub search: Option<String>,
    /// Page size (stores cap it at 1000).
    pub limit: usize,
    /// Continue after this id (the previous page's `next_cursor`).
    pub cursor: Option<TaskId>,
}

impl ListQuery {
    /// The first page of `owner`'s tasks, 50 at a time, without filters.
    pub fn owner(owner: OwnerFilter) -> Self {
        Self {
            owner,
            status: None,
            name: None,
            queue: None,
            created_after: None,
            created_before: None,
            search: None,
            limit: 50,
            cursor: None,
        }
    }

    /// Whether `record` matches every filter (owner, status, name, queue, creation range,
    /// search) and lies past the cursor. Expiry is the store's to check.
    pub fn matches(&self, record: &TaskRecord) -> bool {
        let (lower, upper) = self.id_range();
        self.owner.admits(&record.owner)
            && self.status.is_none_or(|s| s == record.status)
            && self.name.as_ref().is_none_or(|n| *n == record.name)
            && self.queue.as_ref().is_none_or(|q| *q == record.queue)
            && lower.is_none_or(|l| record.id >= l)
            && upper.is_none_or(|u| record.id < u)
            && self
                .search
                .as_deref()
                .is_none_or(|q| search_hits(q, record))
    }

    /// The page size, capped.
    pub fn capped_limit(&self) -> usize {
        self.limit.clamp(1, 1000)
    }
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page {
    /// Records, newest first.
    pub items: Vec<TaskRecord>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<TaskId>,
}

/// How much work a store holds, across all queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    /// Tasks waiting to run (pending, scheduled or retrying).
    pub waiting: u64,
    /// Tasks running (leased).
    pub running: u64,
}

/// What a reaper pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Tasks whose lease lapsed and that went back to `pending` for another attempt.
    pub requeued: u64,
    /// Tasks whose lease lapsed with no attempts left: `failed`.
    pub failed: u64,
    /// Tasks whose lease lapsed after cancellation was requested: `cancelled`.
    pub cancelled: u64,
}

/// A stream of a task's records, one per status change.
pub type EventStream = BoxStream<'static, TaskRecord>;

/// Wakes a worker when work may be claimable.
#[async_trait]
pub trait WorkSignal: Send {
    /// Returns when new work may be claimable (including work that arrived since the previous
    /// call, so no wake-up is lost), when a scheduled task falls due, or after `max`.
    async fn wait(&mut self, max: Duration);
}

/// The durable side of errand. See the module docs for the lease and fencing rules.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores new tasks; for each, the new id, or the live task with the same owner and key.
    async fn enqueue(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, StoreError>;

    /// Claims up to `limit` due tasks from the queues, oldest first within a queue (across
    /// several queues, a sharded store orders best-effort), each with a new lease and its
    /// attempt counter raised by one.
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>, StoreError>;

    /// Renews leases by `extend` from now; one state per lease, in order.
    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<LeaseState>, StoreError>;

    /// Merges progress and steps reported by running tasks; one state per item, in order. A
    /// lost lease's report is dropped.
    async fn report(
        &self,
        updates: Vec<(Lease, StatusUpdate)>,
    ) -> Result<Vec<LeaseState>, StoreError>;

    /// Ends attempts; one result per completion, in order. A completion whose lease was lost
    /// is [`CompleteResult::Stale`] and changes nothing. A `Retry` or `Released` of a task
    /// whose cancellation was requested ends it `cancelled`.
    async fn complete(
        &self,
        completions: Vec<Completion>,
    ) -> Result<Vec<CompleteResult>, StoreError>;

    /// Whether [`Store::complete_and_claim`] writes both in one atomic step (a database
    /// transaction, a script) for a worker's usual batch, so that a worker in its steady state
    /// spends one round trip per batch instead of two. Workers use it only when this says so.
    /// Default `false`.
    fn claims_with_completions(&self) -> bool {
        false
    }

    /// Ends attempts as [`Store::complete`] does, then claims as [`Store::claim`] does, and
    /// returns both answers. On an error nothing was claimed, and any completion written is
    /// answered [`CompleteResult::Stale`] when written again (so the caller may retry them
    /// with [`Store::complete`]); a store for which [`Store::claims_with_completions`] is true
    /// says which batches it writes atomically (neither happened on an error). The default
    /// calls the two in turn; a claim that fails after the completions were written claims
    /// nothing (the error is logged), since the completions' answers must not be lost.
    async fn complete_and_claim(
        &self,
        completions: Vec<Completion>,
        claim: &ClaimRequest,
    ) -> Result<(Vec<CompleteResult>, Vec<Claimed>), StoreError> {
        complete_then_claim(self, completions, claim).await
    }

    /// One task's record; `None` if unknown or expired.
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError>;

    /// Records matching the query, newest first.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// Cancels a task on behalf of `by`: a waiting one at once, a running one by signalling
    /// its worker. A cancel that changes the task appends an [`Action`] naming `by` to its
    /// history in the same atomic write (see [`crate::history`]); a conflict or an unknown
    /// task records nothing. `by` is not checked against the task's owner: callers decide who
    /// may act.
    async fn cancel(&self, id: TaskId, by: &Owner) -> Result<CancelOutcome, StoreError>;

    /// Requeues a failed or cancelled task on behalf of `by`, with its original context and a
    /// fresh set of attempts, appending an [`Action`] naming `by` to its history in the same
    /// atomic write; a conflict or an unknown task records nothing.
    async fn retry(&self, id: TaskId, by: &Owner) -> Result<RetryOutcome, StoreError>;

    /// The task's record after each change, from now on: a record read after `watch` returns
    /// reflects every change the stream will not deliver (so "watch, then read" misses
    /// nothing). The stream may skip changes a slow reader could not keep up with, but its last
    /// item is always the latest state it saw.
    async fn watch(&self, id: TaskId) -> Result<EventStream, StoreError>;

    /// Ids of running tasks whose cancellation was requested, as it happens (workers listen).
    async fn cancellations(&self) -> Result<BoxStream<'static, TaskId>, StoreError>;

    /// A signal that wakes a worker when tasks on `queues` may be claimable.
    async fn work_signal(&self, queues: &[String]) -> Result<Box<dyn WorkSignal>, StoreError>;

    /// Hands tasks whose lease lapsed back for another attempt (or ends them). Safe to run
    /// from any number of workers at once.
    async fn reap(&self) -> Result<Reaped, StoreError>;

    /// Deletes finished records past their expiry; returns how many.
    async fn purge_expired(&self) -> Result<u64, StoreError>;

    /// How many tasks wait and run (for metrics and benchmarks).
    async fn depth(&self) -> Result<QueueDepth, StoreError>;

    /// How many of `owner`'s tasks (everyone's for [`OwnerFilter::Any`]) are in each state,
    /// from counters every transition keeps (enqueue, claim, complete, cancel, retry, reap,
    /// purge), so it costs the same at a million tasks as at ten. Exact under concurrency:
    /// after the writes that returned, it equals counting a full listing. Finished records
    /// past their expiry count until [`Store::purge_expired`] deletes them.
    async fn counts(&self, owner: &OwnerFilter) -> Result<StateCounts, StoreError>;

    /// Per queue that holds or held tasks: how many wait, run and failed (from the same
    /// counters as [`Store::counts`]), sorted by queue name.
    async fn queues(&self) -> Result<Vec<QueueCounts>, StoreError>;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whether this process can still write through this store, whatever the state of the
    /// store's server: an error means a part of the store inside this process died (SQLite's
    /// writer thread) and will not come back, so the process should be restarted. Unlike
    /// [`Store::ping`], a remote store that cannot be reached right now is healthy.
    async fn healthy(&self) -> Result<(), StoreError>;

    /// Settings of the store that put tasks at risk, as sentences for operators (for Redis: an
    /// eviction policy other than `noeviction`, persistence turned off); empty when none.
    async fn warnings(&self) -> Result<Vec<String>, StoreError>;

    /// One fact every process of the deployment must agree on (see [`crate::deployment`]),
    /// `None` when nothing is recorded under `name`.
    async fn get_meta(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// Records `value` under `name` if what is recorded is `expected` (`None`: nothing);
    /// returns whether it did. Atomic: of two processes swapping from the same `expected`,
    /// one wins.
    async fn swap_meta(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError>;
}
