//! [`Task`]: a typed unit of work, its policy, and how it fails ([`TaskError`]).

use crate::cx::TaskCx;
use crate::status::ErrorInfo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// The queue tasks run on unless their policy says otherwise.
pub const DEFAULT_QUEUE: &str = "default";

/// A typed unit of work. The struct is the task's arguments; `NAME` is its stable identity in
/// stores (rename the struct freely, never the name); the policy methods have defaults that
/// suit most work and can be overridden per task, even per instance.
///
/// ```
/// use errand_core::{Task, TaskCx, TaskError};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, schemars::JsonSchema)]
/// struct SendWelcome { email: String }
///
/// impl Task for SendWelcome {
///     const NAME: &'static str = "send_welcome";
///     type Output = ();
///
///     async fn run(self, cx: TaskCx) -> Result<(), TaskError> {
///         let user = cx.context().and_then(|c| c.user_id()).unwrap_or("anonymous");
///         tracing::info!(%user, email = %self.email, "sending");
///         Ok(())
///     }
///
///     fn max_attempts(&self) -> u32 { 5 }
/// }
/// ```
pub trait Task:
    Serialize + DeserializeOwned + schemars::JsonSchema + Send + Sync + 'static
{
    /// The stable name the task is registered and stored under.
    const NAME: &'static str;

    /// What a successful run returns; stored as the record's `result`.
    type Output: Serialize + Send + 'static;

    /// Does the work. `cx` carries the context, the cancellation token and status reporting.
    fn run(self, cx: TaskCx) -> impl Future<Output = Result<Self::Output, TaskError>> + Send;

    /// Attempts allowed in all (first run included). Default 3.
    fn max_attempts(&self) -> u32 {
        3
    }

    /// Delay before each retry. Default: exponential from 1 s to 5 min, with jitter.
    fn backoff(&self) -> Backoff {
        Backoff::default()
    }

    /// Time limit of one attempt; when it passes the attempt is cancelled and counts as a
    /// (retryable) failure. Default 5 minutes.
    fn timeout(&self) -> Duration {
        Duration::from_secs(300)
    }

    /// The queue the task runs on. Default [`DEFAULT_QUEUE`].
    fn queue(&self) -> &str {
        DEFAULT_QUEUE
    }

    /// How long the finished record is kept. Default 24 hours.
    fn ttl(&self) -> Duration {
        Duration::from_secs(24 * 3600)
    }
}

/// Delay between attempts: exponential growth from `base`, capped at `max`, with "equal"
/// jitter (the delay is uniformly drawn from its upper half) so that retries of many tasks
/// that failed together do not arrive together.
///
/// ```
/// use std::time::Duration;
/// let b = errand_core::Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1));
/// let d = b.delay(3); // third attempt failed: nominal 400 ms
/// assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400));
/// assert!(b.delay(30) <= Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: bool,
}

impl Backoff {
    /// Doubles from `base` after each failed attempt, capped at `max`, with jitter.
    pub fn exponential(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            jitter: true,
        }
    }

    /// Retries at once.
    pub fn none() -> Self {
        Self::exponential(Duration::ZERO, Duration::ZERO)
    }

    /// The same backoff without jitter (deterministic; mostly for tests).
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The delay after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let nominal = self
            .base
            .checked_mul(1u32 << exp.min(31))
            .unwrap_or(self.max)
            .min(self.max);
        if !self.jitter || nominal.is_zero() {
            return nominal;
        }
        let half = nominal / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::exponential(Duration::from_secs(1), Duration::from_secs(300))
    }
}

/// A task's policy, resolved from its [`Task`] methods for one instance.
#[derive(Debug, Clone)]
pub struct Policy {
    /// See [`Task::queue`].
    pub queue: String,
    /// See [`Task::max_attempts`].
    pub max_attempts: u32,
    /// See [`Task::timeout`].
    pub timeout: Duration,
    /// See [`Task::ttl`].
    pub ttl: Duration,
    /// See [`Task::backoff`].
    pub backoff: Backoff,
}

impl Policy {
    /// The policy of `task`.
    pub fn of<T: Task>(task: &T) -> Self {
        Self {
            queue: task.queue().to_string(),
            max_attempts: task.max_attempts().max(1),
            timeout: task.timeout(),
            ttl: task.ttl(),
            backoff: task.backoff(),
        }
    }
}

/// Why a task failed: a message, a machine-readable kind, structured details, and whether
/// another attempt could succeed.
///
/// Any `std::error::Error` converts into a *retryable* `TaskError` with `?`; use
/// [`TaskError::fatal`] for failures that retrying cannot fix.
///
/// ```
/// use errand_core::TaskError;
/// let e = TaskError::fatal("document is empty").with_kind("empty_document")
///     .with_details(serde_json::json!({"length": 0}));
/// assert!(!e.is_retryable());
/// let io: TaskError = std::io::Error::other("disk on fire").into();
/// assert!(io.is_retryable());
/// ```
#[derive(Debug, Clone)]
pub struct TaskError {
    message: String,
    kind: String,
    details: Option<serde_json::Value>,
    retryable: bool,
    retry_in: Option<Duration>,
    stop: Option<SelfStop>,
}

/// An attempt that ended without an outcome of its own: a remote worker handed it back, or
/// stopped it on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SelfStop {
    /// Hand the task back without spending the attempt.
    Release,
    /// The attempt stopped as cancelled.
    Cancelled,
}

impl TaskError {
    /// A failure another attempt may fix (kind `error`).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: "error".into(),
            details: None,
            retryable: true,
            retry_in: None,
            stop: None,
        }
    }

    /// A failure retrying cannot fix (kind `error`): the task fails at once.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            ..Self::retryable(message)
        }
    }

    /// Sets the machine-readable kind.
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Attaches structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Retries after `delay` instead of the task's backoff (when the failure is retryable and
    /// attempts remain).
    pub fn with_retry_in(mut self, delay: Duration) -> Self {
        self.retry_in = Some(delay);
        self
    }

    /// The delay asked for with [`TaskError::with_retry_in`].
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry_in
    }

    /// An attempt to hand back without spending it.
    pub(crate) fn released(message: impl Into<String>) -> Self {
        Self {
            stop: Some(SelfStop::Release),
            ..Self::retryable(message)
        }
    }

    /// An attempt that stopped as cancelled.
    pub(crate) fn cancelled(message: impl Into<String>) -> Self {
        Self {
            stop: Some(SelfStop::Cancelled),
            ..Self::fatal(message)
        }
    }

    pub(crate) fn self_stop(&self) -> Option<SelfStop> {
        self.stop
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The details.
    pub fn details(&self) -> Option<&serde_json::Value> {
        self.details.as_ref()
    }

    /// Whether another attempt could succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The error as it appears in a status record.
    pub fn into_info(self) -> ErrorInfo {
        ErrorInfo {
            message: self.message,
            kind: self.kind,
            details: self.details,
            retryable: self.retryable,
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for TaskError {
    fn from(err: E) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        let kind = std::any::type_name::<E>()
            .rsplit("::")
            .next()
            .unwrap_or("error")
            .to_string();
        Self {
            kind,
            ..Self::retryable(message)
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50))
            .without_jitter();
        let got: Vec<u128> = (1..=5).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(got, [10, 20, 40, 50, 50]);
        assert_eq!(Backoff::none().delay(7), Duration::ZERO);
        assert_eq!(
            Backoff::default().without_jitter().delay(u32::MAX),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn jitter_stays_in_upper_half() {
        let b = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10));
        for _ in 0..200 {
            let d = b.delay(2);
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200));
        }
    }

    #[test]
    fn error_conversion_keeps_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e: TaskError = Outer(std::io::Error::other("inner")).into();
        assert_eq!(e.message(), "outer: inner");
        assert_eq!(e.kind(), "Outer");
        assert!(e.is_retryable());
    }
}
