//! [`TaskId`]: time-ordered task identifiers.

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
