//! [`Client`]: submits typed tasks to a store, capturing the caller's context by value.

use crate::context::Context;
use crate::seal::{SealError, SealKeyRing};
use crate::store::{Enqueued, MAX_DURATION, NewTask, Store, StoreError};
use crate::task::{Policy, Task};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Submitting a task failed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The task's arguments could not be serialized.
    #[error("the task's arguments could not be serialized: {0}")]
    Args(#[from] serde_json::Error),
    /// The context could not be sealed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The store refused or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Submits tasks to a [`Store`]. Cheap to clone.
///
/// The context is captured when [`Client::submit`] is called: by default the caller's
/// [`Context::current`], or the one given with [`Submit::context`]. It is sealed under the
/// client's ring, bound to the task, and stored with it; nothing the caller does afterwards
/// reaches it.
///
/// ```
/// # use errand_core::*;
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)] struct Ping;
/// # impl Task for Ping { const NAME: &'static str = "ping"; type Output = ();
/// #   async fn run(self, _: TaskCx) -> Result<(), TaskError> { Ok(()) } }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), SubmitError> {
/// let client = Client::new(std::sync::Arc::new(MemoryStore::new()), SealKey::generate());
/// let ctx = Context::builder().user_id("alice").build();
/// let first = client.submit(Ping).context(ctx.clone()).key("ping-1").await?;
/// let again = client.submit(Ping).context(ctx).key("ping-1").await?;
/// assert!(again.deduplicated && again.id == first.id);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
    keys: SealKeyRing,
}

impl Client {
    /// A client of `store`, sealing contexts under `keys` (a [`SealKeyRing`], or one
    /// [`SealKey`](crate::SealKey)).
    pub fn new(store: Arc<dyn Store>, keys: impl Into<SealKeyRing>) -> Self {
        Self {
            store,
            keys: keys.into(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The seal keys.
    pub fn seal_keys(&self) -> &SealKeyRing {
        &self.keys
    }

    /// Starts submitting `task`, capturing the current context now. Await the builder.
    pub fn submit<T: Task>(&self, task: T) -> Submit<'_> {
        Submit {
            client: self,
            task: self.new_task(&task),
            context: Context::current(),
        }
    }

    /// Submits many tasks in one store round trip, each with the current context.
    pub async fn submit_batch<T: Task>(
        &self,
        tasks: impl IntoIterator<Item = T>,
    ) -> Result<Vec<Enqueued>, SubmitError> {
        let ctx = Context::current();
        let batch = tasks
            .into_iter()
            .map(|t| self.attach(self.new_task(&t)?, ctx.as_ref()))
            .collect::<Result<Vec<_>, SubmitError>>()?;
        Ok(self.store.enqueue(batch).await?)
    }

    fn new_task<T: Task>(&self, task: &T) -> Result<NewTask, SubmitError> {
        let args = serde_json::value::to_raw_value(task)?;
        Ok(NewTask::new(T::NAME, args).with_policy(&Policy::of(task)))
    }

    fn attach(&self, task: NewTask, ctx: Option<&Context>) -> Result<NewTask, SubmitError> {
        Ok(match ctx {
            Some(ctx) => task.with_context(ctx, &self.keys)?,
            None => task,
        })
    }
}

/// A submission being built by [`Client::submit`]; `.await` it to enqueue.
#[must_use = "a submission does nothing until it is awaited"]
pub struct Submit<'a> {
    client: &'a Client,
    task: Result<NewTask, SubmitError>,
    context: Option<Context>,
}

impl Submit<'_> {
    fn edit(mut self, f: impl FnOnce(&mut NewTask)) -> Self {
        if let Ok(t) = &mut self.task {
            f(t);
        }
        self
    }

    /// Runs the task with `ctx` instead of the current context.
    pub fn context(mut self, ctx: Context) -> Self {
        self.context = Some(ctx);
        self
    }

    /// Runs the task without any context.
    pub fn without_context(mut self) -> Self {
        self.context = None;
        self
    }

    /// Idempotency key: while a task of the same owner with this key is live, submitting
    /// returns it instead of a new task.
    pub fn key(self, key: impl Into<String>) -> Self {
        let key = key.into();
        self.edit(|t| t.key = Some(key))
    }

    /// Do not run before `delay` has passed.
    pub fn delay(self, delay: Duration) -> Self {
        self.edit(|t| t.delay = Some(delay.min(MAX_DURATION)))
    }

    /// Overrides the task's `max_attempts`.
    pub fn max_attempts(self, n: u32) -> Self {
        self.edit(|t| t.max_attempts = n.max(1))
    }

    /// Overrides the task's timeout.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.edit(|t| t.timeout = timeout.min(MAX_DURATION))
    }
}

impl<'a> IntoFuture for Submit<'a> {
    type Output = Result<Enqueued, SubmitError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let task = self.client.attach(self.task?, self.context.as_ref())?;
            let mut done = self.client.store.enqueue(vec![task]).await?;
            done.pop()
                .ok_or_else(|| StoreError::Backend("enqueue returned no result".into()).into())
        })
    }
}
