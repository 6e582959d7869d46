//! [`TaskId`]: time-ordered task identifiers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// A task's id: a UUIDv7, so ids sort by creation time (newest last).
///
/// ```
/// let a = errand_core::TaskId::new();
/// let b = errand_core::TaskId::new();
/// assert!(a < b);
/// assert_eq!(a.to_string().parse::<errand_core::TaskId>().unwrap(), a);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        value_type = String,
        format = Uuid,
        description = "A task's id: a UUIDv7, so ids sort by creation time."
    )
)]
#[serde(transparent)]
pub struct TaskId(Uuid);

impl TaskId {
    /// A new id for the current time; ids made in one process are strictly increasing.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// Wraps a UUID read back from a store.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The millisecond its UUIDv7 timestamp names: when the submitter made the id, which is
    /// its creation time up to the clock skew between submitter and store.
    ///
    /// ```
    /// let id = errand_core::TaskId::first_at_ms(1_700_000_000_123);
    /// assert_eq!(id.created_ms(), 1_700_000_000_123);
    /// ```
    pub fn created_ms(&self) -> i64 {
        let b = self.0.as_bytes();
        let mut ms = [0u8; 8];
        ms[2..].copy_from_slice(&b[..6]);
        i64::from_be_bytes(ms)
    }

    /// The smallest id of millisecond `ms` (clamped to the 48 bits of a UUIDv7 timestamp):
    /// every id made at `ms` or later sorts at or above it, every id made earlier below it,
    /// so a range of creation times is a range of ids. It is a bound, not a real task's id.
    pub fn first_at_ms(ms: i64) -> Self {
        let ms = ms.clamp(0, (1 << 48) - 1).to_be_bytes();
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&ms[2..]);
        Self(Uuid::from_bytes(b))
    }

    /// [`TaskId::first_at_ms`] of the first whole millisecond at or after `t`: ids below it
    /// were made before `t`, ids at or above it at `t` or later (at millisecond precision).
    pub fn first_at(t: DateTime<Utc>) -> Self {
        let ms = t.timestamp_millis();
        let whole = t.timestamp_subsec_nanos().is_multiple_of(1_000_000);
        Self::first_at_ms(if whole { ms } else { ms.saturating_add(1) })
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({})", self.0.as_hyphenated())
    }
}

/// The text was not a UUID.
#[derive(Debug, thiserror::Error)]
#[error("not a task id (expected a UUID): {0:?}")]
pub struct ParseTaskIdError(String);

impl FromStr for TaskId {
    type Err = ParseTaskIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| ParseTaskIdError(s.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_split_ids_by_creation_millisecond() {
        let id = TaskId::new();
        let ms = id.created_ms();
        assert!(TaskId::first_at_ms(ms) <= id && id < TaskId::first_at_ms(ms + 1));
        let t = DateTime::from_timestamp_millis(ms).expect("time");
        assert_eq!(TaskId::first_at(t), TaskId::first_at_ms(ms));
        let later = t + chrono::TimeDelta::microseconds(1);
        assert_eq!(TaskId::first_at(later), TaskId::first_at_ms(ms + 1));
        assert_eq!(TaskId::first_at_ms(-5).created_ms(), 0);
    }
}
