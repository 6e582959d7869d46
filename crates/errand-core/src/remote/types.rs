//! [`RemoteTaskType`]s: the task types remote workers registered, kept in the store (meta
//! `remote_task_types`) so that every process of a deployment knows them, with or without a
//! worker connected, and [`TaskTypes`], one process's view of them.

use crate::store::{Store, StoreError};
use crate::task::{Backoff, DEFAULT_QUEUE, Policy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// The store meta entry holding every remote task type, as one JSON object by name.
pub const META_NAME: &str = "remote_task_types";

/// The queue of a remote task type that names none.
pub const REMOTE_QUEUE: &str = "remote";

/// How long a process trusts its copy of the table before it reads the store again.
pub const REFRESH: Duration = Duration::from_secs(2);

/// A task type run by remote workers: its name, argument schema, queue and policy.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteTaskType {
    /// The task name: 1–128 characters of letters, digits and `_ . : -`.
    pub name: String,
    /// Its queue (default `remote`; not `default`, the Rust workers' queue).
    #[serde(default = "default_queue")]
    pub queue: String,
    /// JSON Schema of its arguments (default: any object).
    #[serde(default = "any_object")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub args_schema: serde_json::Value,
    /// Attempts allowed (1–1000, default 3).
    #[serde(default = "default_attempts")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub max_attempts: u32,
    /// Seconds an attempt may run (above 0, at most 86400; default 300).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Seconds a finished record is kept (above 0, at most 31536000; default 86400).
    #[serde(default = "default_ttl")]
    pub ttl_s: f64,
    /// Exponential backoff between attempts, with jitter.
    #[serde(default)]
    pub backoff: WireBackoff,
}

/// Backoff of a remote task type, in seconds.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireBackoff {
    /// The first delay (default 1).
    pub base_s: f64,
    /// The longest delay (default 300).
    pub max_s: f64,
}

impl Default for WireBackoff {
    fn default() -> Self {
        Self {
            base_s: 1.0,
            max_s: 300.0,
        }
    }
}

fn default_queue() -> String {
    REMOTE_QUEUE.to_string()
}
fn any_object() -> serde_json::Value {
    serde_json::json!({"type": "object"})
}
fn default_attempts() -> u32 {
    3
}
fn default_timeout() -> f64 {
    300.0
}
fn default_ttl() -> f64 {
    86_400.0
}

/// Why a task type cannot be registered.
#[derive(Debug, thiserror::Error)]
pub enum TypeError {
    /// A field is out of range or malformed.
    #[error("task type {name:?}: {message}")]
    Invalid {
        /// The type.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn seconds(name: &str, field: &str, value: f64, max: f64) -> Result<Duration, TypeError> {
    if value.is_finite() && value > 0.0 && value <= max {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(TypeError::Invalid {
            name: name.to_string(),
            message: format!("`{field}` must be a number of seconds above 0 and at most {max}"),
        })
    }
}

impl RemoteTaskType {
    /// The type `name` on `queue` with every other field at its default.
    pub fn with_defaults(name: &str, queue: &str) -> Self {
        Self {
            name: name.to_string(),
            queue: queue.to_string(),
            args_schema: any_object(),
            max_attempts: default_attempts(),
            timeout_s: default_timeout(),
            ttl_s: default_ttl(),
            backoff: WireBackoff::default(),
        }
    }

    /// Checks the fields (not the schema: that is the API's, which compiles it).
    pub fn validate(&self) -> Result<(), TypeError> {
        let invalid = |message: String| TypeError::Invalid {
            name: self.name.clone(),
            message,
        };
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
        };
        if !name_ok(&self.name) {
            return Err(invalid(
                "the name must be 1 to 128 letters, digits or `_ . : -`".into(),
            ));
        }
        if !name_ok(&self.queue) {
            return Err(invalid(
                "the queue must be 1 to 128 letters, digits or `_ . : -`".into(),
            ));
        }
        if self.queue == DEFAULT_QUEUE {
            return Err(invalid(format!(
                "the queue {DEFAULT_QUEUE:?} is the Rust workers' queue, and a Rust worker fails the tasks it has no code for; give remote task types queues of their own (default {REMOTE_QUEUE:?})"
            )));
        }
        if !(1..=1000).contains(&self.max_attempts) {
            return Err(invalid("`max_attempts` must be from 1 to 1000".into()));
        }
        seconds(&self.name, "timeout_s", self.timeout_s, 86_400.0)?;
        seconds(&self.name, "ttl_s", self.ttl_s, 31_536_000.0)?;
        let base = seconds(&self.name, "backoff.base_s", self.backoff.base_s, 86_400.0)?;
        let max = seconds(&self.name, "backoff.max_s", self.backoff.max_s, 86_400.0)?;
        if base > max {
            return Err(invalid(
                "`backoff.base_s` must not exceed `backoff.max_s`".into(),
            ));
        }
        Ok(())
    }

    /// Its policy (call [`RemoteTaskType::validate`] first: out-of-range values are clamped).
    pub fn policy(&self) -> Policy {
        let secs = |v: f64| Duration::try_from_secs_f64(v).unwrap_or(Duration::from_secs(1));
        Policy {
            queue: self.queue.clone(),
            max_attempts: self.max_attempts.max(1),
            timeout: secs(self.timeout_s),
            ttl: secs(self.ttl_s),
            backoff: Backoff::exponential(secs(self.backoff.base_s), secs(self.backoff.max_s)),
        }
    }
}

impl From<RemoteTaskType> for crate::registry::TaskType {
    /// The type as `GET /v1/task-types` and the OpenAPI document list it.
    fn from(t: RemoteTaskType) -> Self {
        Self {
            name: t.name,
            schema: t.args_schema,
            runs_on: "remote",
            queue: Some(t.queue),
        }
    }
}

/// One process's copy of the remote task types, read from the store at most every
/// [`REFRESH`] (and at once after this process registers).
#[derive(Debug, Default)]
pub struct TaskTypes {
    cached: RwLock<Option<(Instant, BTreeMap<String, RemoteTaskType>)>>,
}

impl TaskTypes {
    /// An empty copy; the first lookup reads the store.
    pub fn new() -> Self {
        Self::default()
    }

    fn parse(text: Option<&str>) -> Result<BTreeMap<String, RemoteTaskType>, StoreError> {
        match text {
            None => Ok(BTreeMap::new()),
            Some(text) => serde_json::from_str(text).map_err(|e| {
                StoreError::Corrupt(format!("the stored remote task types are not valid: {e}"))
            }),
        }
    }

    /// Every remote task type, from a copy at most [`REFRESH`] old.
    pub async fn all(
        &self,
        store: &dyn Store,
    ) -> Result<BTreeMap<String, RemoteTaskType>, StoreError> {
        if let Some((at, types)) = &*self.cached.read().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < REFRESH
        {
            return Ok(types.clone());
        }
        self.reload(store).await
    }

    /// Reads the table from the store now.
    pub async fn reload(
        &self,
        store: &dyn Store,
    ) -> Result<BTreeMap<String, RemoteTaskType>, StoreError> {
        let types = Self::parse(store.get_meta(META_NAME).await?.as_deref())?;
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), types.clone()));
        Ok(types)
    }

    /// The type `name`: from the copy, or, when the copy does not have it, from the store.
    pub async fn get(
        &self,
        store: &dyn Store,
        name: &str,
    ) -> Result<Option<RemoteTaskType>, StoreError> {
        if let Some(t) = self.all(store).await?.get(name) {
            return Ok(Some(t.clone()));
        }
        Ok(self.reload(store).await?.get(name).cloned())
    }

    /// Registers `types` (each replaces a type of the same name) in the store, atomically
    /// against other processes registering at once; returns the whole table.
    pub async fn register(
        &self,
        store: &dyn Store,
        types: Vec<RemoteTaskType>,
    ) -> Result<BTreeMap<String, RemoteTaskType>, TypeError> {
        for t in &types {
            t.validate()?;
        }
        loop {
            let current = store.get_meta(META_NAME).await?;
            let mut table = Self::parse(current.as_deref())?;
            for t in &types {
                table.insert(t.name.clone(), t.clone());
            }
            let text = serde_json::to_string(&table)
                .map_err(|e| StoreError::Invalid(format!("task types: {e}")))?;
            if current.as_deref() == Some(text.as_str())
                || store
                    .swap_meta(META_NAME, current.as_deref(), &text)
                    .await?
            {
                *self.cached.write().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), table.clone()));
                return Ok(table);
            }
        }
    }
}
