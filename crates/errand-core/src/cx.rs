//! [`TaskCx`]: what a running task sees, and how it reports progress and pipeline steps.
//!
//! Reporting is cheap: calls only update an in-memory draft and mark it dirty. The worker
//! writes dirty drafts in batches, at most once per report interval, and the final draft goes
//! out with the completion itself.

use crate::context::Context;
use crate::id::TaskId;
use crate::resources::Resources;
use crate::status::{Progress, StatusUpdate, Step, StepStatus};
use crate::task::TaskError;
use chrono::Utc;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The running task's view of itself: its context, id and attempt, its cancellation token, and
/// status reporting. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct TaskCx {
    inner: Arc<CxInner>,
}

struct CxInner {
    id: TaskId,
    name: String,
    attempt: u32,
    max_attempts: u32,
    context: Option<Context>,
    token: CancellationToken,
    reporter: Arc<Reporter>,
    resources: Arc<Resources>,
}

/// Everything a [`TaskCx`] is made of, for the worker.
pub(crate) struct CxParts {
    pub id: TaskId,
    pub name: String,
    pub attempt: u32,
    pub max_attempts: u32,
    pub context: Option<Context>,
    pub token: CancellationToken,
    pub reporter: Arc<Reporter>,
    pub resources: Arc<Resources>,
}

impl TaskCx {
    pub(crate) fn new(p: CxParts) -> Self {
        Self {
            inner: Arc::new(CxInner {
                id: p.id,
                name: p.name,
                attempt: p.attempt,
                max_attempts: p.max_attempts,
                context: p.context,
                token: p.token,
                reporter: p.reporter,
                resources: p.resources,
            }),
        }
    }

    /// A context for running a task by hand (tests, one-off tools): no store, reports are kept
    /// in memory and can be read back with [`TaskCx::draft`].
    pub fn detached(
        id: TaskId,
        name: &str,
        context: Option<Context>,
        resources: Resources,
    ) -> Self {
        Self::detached_with_token(id, name, context, resources, CancellationToken::new())
    }

    /// Like [`TaskCx::detached`], with the attempt's token given: cancel it to see how the
    /// task stops.
    pub fn detached_with_token(
        id: TaskId,
        name: &str,
        context: Option<Context>,
        resources: Resources,
        token: CancellationToken,
    ) -> Self {
        Self::new(CxParts {
            id,
            name: name.to_string(),
            attempt: 1,
            max_attempts: 1,
            context,
            token,
            reporter: Arc::new(Reporter::new(None)),
            resources: Arc::new(resources),
        })
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.inner.id
    }

    /// The task's registered name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// Attempts allowed in all.
    pub fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }

    /// The context captured when the task was submitted, or `None` if it had none.
    pub fn context(&self) -> Option<&Context> {
        self.inner.context.as_ref()
    }

    /// Shortcut for the context's user id.
    pub fn user_id(&self) -> Option<&str> {
        self.inner.context.as_ref().and_then(Context::user_id)
    }

    /// The shared value of type `T` the worker was given (see
    /// [`Worker::resource`](crate::Worker::resource)); a fatal error if there is none, since
    /// retrying on the same worker cannot help.
    pub fn resource<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, TaskError> {
        self.inner.resources.get::<T>().ok_or_else(|| {
            TaskError::fatal(format!(
                "this worker has no resource of type {}; add it with Worker::resource",
                std::any::type_name::<T>()
            ))
            .with_kind("missing_resource")
        })
    }

    /// A token that fires when the task is cancelled, or its worker shuts down past its drain
    /// timeout (or loses its lease): long-running work should watch it and stop early. It is a
    /// child of the attempt's own token, so cancelling it does not cancel the attempt. When
    /// the attempt times out, its future is dropped at once; the token then fires for whatever
    /// the task spawned with it.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.inner.token.child_token()
    }

    /// Completes when the attempt's token fires (see [`TaskCx::cancellation_token`]).
    pub async fn cancelled(&self) {
        self.inner.token.cancelled().await
    }

    /// Whether the token has fired.
    pub fn is_cancelled(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Reports progress. Cheap: coalesced with other reports before it is written.
    pub fn progress(&self, current: u64, total: u64, message: impl Into<Option<String>>) {
        self.inner.reporter.set_progress(Progress {
            current,
            total,
            message: message.into(),
        });
    }

    /// Declares the pipeline's steps up front, as `pending`, so clients see the whole plan and,
    /// if a step fails, the later ones end `skipped`.
    pub fn plan_steps<I, S>(&self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner.reporter.edit_steps(|steps| {
            for name in names {
                let name = name.into();
                if !steps.iter().any(|s| s.name == name) {
                    steps.push(Step {
                        name,
                        status: StepStatus::Pending,
                        started_at: None,
                        completed_at: None,
                        error: None,
                    });
                }
            }
        });
    }

    /// Runs one pipeline step: recorded `running`, then `success`, or `failed` with the error
    /// (which is returned). Steps keep their order.
    ///
    /// ```
    /// # use errand_core::{TaskCx, TaskError, TaskId, StepStatus};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cx = TaskCx::detached(TaskId::new(), "demo", None, Default::default());
    /// cx.plan_steps(["fetch", "parse"]);
    /// let n = cx.step("fetch", async { Ok::<_, TaskError>(3) }).await.unwrap();
    /// let err = cx.step("parse", async { Err::<(), _>(TaskError::fatal("bad")) }).await;
    /// assert!(err.is_err());
    /// let steps = cx.draft().steps.unwrap();
    /// assert_eq!(steps[0].status, StepStatus::Success);
    /// assert_eq!(steps[1].status, StepStatus::Failed);
    /// # }
    /// ```
    pub async fn step<T, F>(&self, name: &str, work: F) -> Result<T, TaskError>
    where
        F: Future<Output = Result<T, TaskError>>,
    {
        self.start_step(name);
        let result = work.await;
        self.end_step(name, result.as_ref().err().map(TaskError::message));
        result
    }

    /// Marks step `name` running: its pending entry, or a new one at the end.
    pub(crate) fn start_step(&self, name: &str) {
        self.inner.reporter.edit_steps(|steps| {
            let now = Some(Utc::now());
            match steps
                .iter_mut()
                .rfind(|s| s.name == name && s.status == StepStatus::Pending)
            {
                Some(step) => {
                    step.status = StepStatus::Running;
                    step.started_at = now;
                }
                None => steps.push(Step {
                    name: name.to_string(),
                    status: StepStatus::Running,
                    started_at: now,
                    completed_at: None,
                    error: None,
                }),
            }
        });
    }

    /// Ends the running step `name`: `success`, or `failed` with `error`.
    pub(crate) fn end_step(&self, name: &str, error: Option<&str>) {
        self.inner.reporter.edit_steps(|steps| {
            if let Some(step) = steps
                .iter_mut()
                .rfind(|s| s.name == name && s.status == StepStatus::Running)
            {
                step.completed_at = Some(Utc::now());
                match error {
                    None => step.status = StepStatus::Success,
                    Some(e) => {
                        step.status = StepStatus::Failed;
                        step.error = Some(e.to_string());
                    }
                }
            }
        });
    }

    /// Everything reported so far (for tests and detached runs).
    pub fn draft(&self) -> StatusUpdate {
        self.inner.reporter.snapshot()
    }
}

/// The draft status of one running task, shared by its [`TaskCx`] and its worker.
pub(crate) struct Reporter {
    draft: Mutex<Draft>,
    /// Wakes the worker's status writer; `None` for detached contexts.
    wake: Option<Arc<Notify>>,
}

#[derive(Default)]
struct Draft {
    progress: Option<Progress>,
    steps: Vec<Step>,
    progress_dirty: bool,
    steps_dirty: bool,
}

impl Reporter {
    pub(crate) fn new(wake: Option<Arc<Notify>>) -> Self {
        Self {
            draft: Mutex::new(Draft::default()),
            wake,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Draft> {
        self.draft.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_progress(&self, progress: Progress) {
        let mut d = self.lock();
        d.progress = Some(progress);
        d.progress_dirty = true;
        drop(d);
        self.wake();
    }

    fn edit_steps(&self, f: impl FnOnce(&mut Vec<Step>)) {
        let mut d = self.lock();
        f(&mut d.steps);
        d.steps_dirty = true;
        drop(d);
        self.wake();
    }

    fn wake(&self) {
        if let Some(w) = &self.wake {
            w.notify_one();
        }
    }

    /// The dirty parts of the draft, marking them clean; `None` if nothing changed.
    pub(crate) fn take_dirty(&self) -> Option<StatusUpdate> {
        let mut d = self.lock();
        if !d.progress_dirty && !d.steps_dirty {
            return None;
        }
        let update = StatusUpdate {
            progress: d.progress_dirty.then(|| d.progress.clone()).flatten(),
            steps: d.steps_dirty.then(|| d.steps.clone()),
        };
        d.progress_dirty = false;
        d.steps_dirty = false;
        Some(update)
    }

    /// Marks the parts of `update` dirty again, after writing it failed: the next report
    /// carries them (with whatever changed since).
    pub(crate) fn redirty(&self, update: &StatusUpdate) {
        let mut d = self.lock();
        d.progress_dirty |= update.progress.is_some();
        d.steps_dirty |= update.steps.is_some();
    }

    /// The status of an attempt handed back unfinished: a step it was running goes back to
    /// `pending`, since the next attempt starts it over.
    pub(crate) fn release(&self) -> StatusUpdate {
        let mut d = self.lock();
        for step in &mut d.steps {
            if step.status == StepStatus::Running {
                step.status = StepStatus::Pending;
                step.started_at = None;
            }
        }
        StatusUpdate {
            progress: d.progress.clone(),
            steps: (!d.steps.is_empty()).then(|| d.steps.clone()),
        }
    }

    /// The final status of the attempt: a step left running is marked failed with `error`
    /// (or success if the task succeeded), and pending steps are skipped when it did not.
    pub(crate) fn finish(&self, failure: Option<&str>) -> StatusUpdate {
        let mut d = self.lock();
        let now = Some(Utc::now());
        for step in &mut d.steps {
            match (step.status, failure) {
                (StepStatus::Running, None) => {
                    step.status = StepStatus::Success;
                    step.completed_at = now;
                }
                (StepStatus::Running, Some(err)) => {
                    step.status = StepStatus::Failed;
                    step.completed_at = now;
                    step.error = Some(err.to_string());
                }
                (StepStatus::Pending, Some(_)) => step.status = StepStatus::Skipped,
                _ => {}
            }
        }
        StatusUpdate {
            progress: d.progress.clone(),
            steps: (!d.steps.is_empty()).then(|| d.steps.clone()),
        }
    }

    fn snapshot(&self) -> StatusUpdate {
        let d = self.lock();
        StatusUpdate {
            progress: d.progress.clone(),
            steps: (!d.steps.is_empty()).then(|| d.steps.clone()),
        }
    }
}
