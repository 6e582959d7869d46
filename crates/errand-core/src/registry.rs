//! [`Registry`]: task names mapped to type-erased handlers.

use crate::cx::TaskCx;
use crate::task::{Policy, Task, TaskError};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The tasks a worker can run (and a server can accept), by name.
///
/// ```
/// # use errand_core::{Registry, Task, TaskCx, TaskError};
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)] struct Ping;
/// # impl Task for Ping { const NAME: &'static str = "ping"; type Output = ();
/// #   async fn run(self, _: TaskCx) -> Result<(), TaskError> { Ok(()) } }
/// let mut registry = Registry::new();
/// registry.register::<Ping>().unwrap();
/// assert!(registry.register::<Ping>().is_err()); // names are unique
/// assert!(registry.contains("ping"));
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<&'static str, Arc<dyn Handler>>,
}

/// Registration failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// Another task already uses the name.
    #[error("a task named {0:?} is already registered")]
    Duplicate(&'static str),
}

/// A task could not be prepared to run (or to be accepted).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PrepareError {
    /// No task of that name is registered here.
    #[error("no task named {0:?} is registered")]
    Unknown(String),
    /// The arguments do not deserialize into the task's type.
    #[error("invalid arguments for task {task:?}: {message}")]
    InvalidArgs {
        /// The task name.
        task: String,
        /// serde's message (says which field and why).
        message: String,
    },
}

/// A task type's name, the JSON schema of its arguments, and who runs it.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskType {
    /// The task name.
    pub name: String,
    /// JSON schema of the arguments.
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub schema: serde_json::Value,
    /// `rust` for a task of the registry, `remote` for one registered by remote workers.
    pub runs_on: &'static str,
    /// The queue of a remote task type (a Rust task's queue may depend on its arguments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// A task deserialized and ready to run.
pub struct Prepared {
    /// Its policy, resolved for these arguments.
    pub policy: Policy,
    run: RunFn,
}

/// A task's output, serialized.
pub(crate) type Output = Result<Box<RawValue>, TaskError>;
type RunFn = Box<dyn FnOnce(TaskCx) -> BoxFuture<'static, Output> + Send>;

impl Prepared {
    /// A task ready to run as `run`, under `policy`.
    pub(crate) fn new(
        policy: Policy,
        run: impl FnOnce(TaskCx) -> BoxFuture<'static, Output> + Send + 'static,
    ) -> Self {
        Self {
            policy,
            run: Box::new(run),
        }
    }

    /// Runs the task; its output comes back serialized.
    pub fn run(self, cx: TaskCx) -> BoxFuture<'static, Output> {
        (self.run)(cx)
    }
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

trait Handler: Send + Sync {
    fn schema(&self) -> serde_json::Value;
    fn prepare(&self, args: &RawValue) -> Result<Prepared, serde_json::Error>;
}

struct TypedHandler<T>(std::marker::PhantomData<fn() -> T>);

impl<T: Task> Handler for TypedHandler<T> {
    fn schema(&self) -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(T)).unwrap_or(serde_json::Value::Null)
    }

    fn prepare(&self, args: &RawValue) -> Result<Prepared, serde_json::Error> {
        let task: T = serde_json::from_str(args.get())?;
        Ok(Prepared {
            policy: Policy::of(&task),
            run: Box::new(move |cx| {
                async move {
                    let output = task.run(cx).await?;
                    serde_json::value::to_raw_value(&output).map_err(|e| {
                        TaskError::fatal(format!("the task's output could not be serialized: {e}"))
                            .with_kind("output")
                    })
                }
                .boxed()
            }),
        })
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `T` under `T::NAME`; a name can be registered once.
    pub fn register<T: Task>(&mut self) -> Result<&mut Self, RegistryError> {
        if self.handlers.contains_key(T::NAME) {
            return Err(RegistryError::Duplicate(T::NAME));
        }
        self.handlers.insert(
            T::NAME,
            Arc::new(TypedHandler::<T>(std::marker::PhantomData)),
        );
        Ok(self)
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.handlers.keys().copied()
    }

    /// Every registered task with the JSON schema of its arguments.
    pub fn task_types(&self) -> Vec<TaskType> {
        self.handlers
            .iter()
            .map(|(name, h)| TaskType {
                name: name.to_string(),
                schema: h.schema(),
                runs_on: "rust",
                queue: None,
            })
            .collect()
    }

    /// Deserializes `args` for task `name`: the task ready to run, with its policy.
    pub fn prepare(&self, name: &str, args: &RawValue) -> Result<Prepared, PrepareError> {
        let handler = self
            .handlers
            .get(name)
            .ok_or_else(|| PrepareError::Unknown(name.to_string()))?;
        handler
            .prepare(args)
            .map_err(|e| PrepareError::InvalidArgs {
                task: name.to_string(),
                message: e.to_string(),
            })
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.handlers.keys()).finish()
    }
}
