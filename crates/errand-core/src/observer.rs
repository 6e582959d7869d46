//! [`AttemptObserver`]: what a [`Worker`](crate::Worker) tells metrics about each attempt.

use std::time::Duration;

/// How an attempt ended, as metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// It succeeded.
    Success,
    /// It failed and will be attempted again.
    Retrying,
    /// It failed for good (its context could not be opened, it was not registered, its
    /// arguments did not fit, or its last attempt failed).
    Failed,
    /// It stopped on a cancellation request.
    Cancelled,
    /// It was handed back unfinished at shutdown.
    Released,
    /// Its lease was lost to a newer claim.
    Lost,
}

impl AttemptOutcome {
    /// Every outcome.
    pub const ALL: [AttemptOutcome; 6] = [
        AttemptOutcome::Success,
        AttemptOutcome::Retrying,
        AttemptOutcome::Failed,
        AttemptOutcome::Cancelled,
        AttemptOutcome::Released,
        AttemptOutcome::Lost,
    ];

    /// The snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Success => "success",
            AttemptOutcome::Retrying => "retrying",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::Released => "released",
            AttemptOutcome::Lost => "lost",
        }
    }
}

/// Sees every attempt a worker runs. The calls are made on the worker's hot path, once per
/// attempt each: keep them cheap (a histogram observation, not I/O).
///
/// ```
/// use errand_core::{AttemptObserver, AttemptOutcome};
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
///
/// #[derive(Default)]
/// struct Count(AtomicU64);
/// impl AttemptObserver for Count {
///     fn started(&self, _task: &str, _queue_wait: Option<Duration>) {}
///     fn ended(&self, _task: &str, outcome: AttemptOutcome, _took: Duration) {
///         if outcome == AttemptOutcome::Success { self.0.fetch_add(1, Ordering::Relaxed); }
///     }
/// }
/// ```
pub trait AttemptObserver: Send + Sync + 'static {
    /// An attempt of `task` was claimed and starts, `queue_wait` after it became due (when
    /// the store knows).
    fn started(&self, task: &str, queue_wait: Option<Duration>);
    /// An attempt of `task` ended as `outcome`, `took` after it started.
    fn ended(&self, task: &str, outcome: AttemptOutcome, took: Duration);
}
