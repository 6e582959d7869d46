//! [`RedisStoreError`] (what [`RedisStore::connect`](crate::RedisStore::connect) can refuse)
//! and how Redis failures become [`StoreError`]s.

use errand_core::StoreError;
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Why a [`RedisStore`](crate::RedisStore) could not be built. Redis being down is not one of
/// them: the store starts anyway and its calls answer [`StoreError::Unavailable`] until Redis
/// is back.
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// The key prefix cannot be used.
    #[error(
        "invalid key prefix {0:?}: it must be non-empty and must not contain ':', '{{' or '}}'"
    )]
    InvalidPrefix(String),
    /// The connection could not be set up (for instance an unsupported option in the URL).
    #[error("cannot set up the Redis connection: {0}")]
    Setup(String),
}

/// Whether an error means Redis cannot serve right now (as opposed to a bad request or a bug).
fn is_unavailable(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_refusal()
        || err.is_connection_dropped()
        || err.is_timeout()
        || err.is_unrecoverable_error()
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
            )
        )
        || err.code() == Some("BUSY")
}

/// Turns a Redis failure into a store error naming the server (never the URL, which may hold a
/// password).
pub(crate) fn store_error(server: &str, err: RedisError) -> StoreError {
    if is_unavailable(&err) {
        StoreError::Unavailable(format!("Redis at {server} cannot be reached: {err}"))
    } else {
        StoreError::Backend(format!("Redis at {server} answered with an error: {err}"))
    }
}

/// The error for a call that got no answer in time.
pub(crate) fn timed_out(server: &str, waited: std::time::Duration) -> StoreError {
    StoreError::Unavailable(format!(
        "Redis at {server} did not answer within {} ms",
        waited.as_millis()
    ))
}

/// The error for writes that fewer replicas than required confirmed in time.
pub(crate) fn not_confirmed(server: &str, confirmed: i64, wanted: usize, ms: u64) -> StoreError {
    StoreError::Unavailable(format!(
        "Redis at {server} applied the write but only {confirmed} of the {wanted} replicas required confirmed it within {ms} ms: it may be lost if the node fails over now"
    ))
}

/// The error for an answer errand cannot read (a script and this code disagree).
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}
