//! One attempt: its context opened and checked, the task run inside its context scope and
//! span, under its timeout, cancellation and the worker's shutdown, and its outcome decided
//! (success, retry with backoff, failure, cancelled, released, or nothing when the lease was
//! lost). Tasks run here whether they are Rust tasks of the registry or tasks of a remote
//! worker ([`RemoteWorkers`](crate::RemoteWorkers)).

use super::shared::{Counters, Running, Shared, StopReason};
use crate::context::Context;
use crate::cx::{CxParts, Reporter, TaskCx};
use crate::lease::Lease;
use crate::observer::AttemptOutcome;
use crate::registry::{PrepareError, Prepared};
use crate::seal::SealKeyRing;
use crate::sealed::CONTEXT_INTEGRITY;
use crate::status::{ErrorInfo, Owner, StatusUpdate};
use crate::store::{Claimed, Completion, Outcome};
use crate::task::{SelfStop, TaskError, panic_message};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

/// How an attempt ended, before it is turned into a store [`Outcome`].
pub(crate) enum Ended {
    Finished(Result<Box<serde_json::value::RawValue>, TaskError>),
    TimedOut,
    Stopped(
        StopReason,
        Option<Result<Box<serde_json::value::RawValue>, TaskError>>,
    ),
}

/// Makes a claimed task ready to run (a Rust task of the registry, or a remote worker's
/// hand-off), or says why it cannot run. Called inside the attempt, so a panic in it (a task's
/// policy computed from bad arguments) is a failed attempt.
pub(crate) type Prepare = Box<dyn FnOnce(&Claimed) -> Result<Prepared, PrepareError> + Send>;

/// Runs one claimed attempt in this task, holding `permit` (the worker slot) until its outcome
/// is written.
pub(crate) async fn run_task(
    shared: Arc<Shared>,
    task: Claimed,
    prepare: Prepare,
    permit: OwnedSemaphorePermit,
) {
    let id = task.lease.id;
    let user = task.owner.user_id.as_deref().unwrap_or("");
    let span = tracing::info_span!(
        "task",
        task_id = %id,
        task = %task.name,
        user_id = %user,
        tenant = %task.owner.tenant.as_deref().unwrap_or(""),
        correlation_id = %task.correlation_id.as_deref().unwrap_or(""),
        attempt = task.attempt,
    );
    crate::otel::start_attempt(&span, &shared.keys, &task);
    let running = Arc::new(Running {
        lease: task.lease,
        token: CancellationToken::new(),
        reporter: Arc::new(Reporter::new(Some(shared.report_wake.clone()))),
        reason: AtomicU8::new(StopReason::None as u8),
    });
    let lease = task.lease;
    if let Some(older) = shared.lock_running().insert(id, running.clone())
        && older.lease != lease
    {
        // This worker still held an earlier claim of the task, whose lease lapsed (or which a
        // store that lost writes handed out again): a newer claim supersedes it, whatever the
        // attempt numbers say.
        older.stop(StopReason::LeaseLost);
    }
    // A task claimed ahead waits here, its lease renewed by the heartbeat meanwhile.
    let run_slot = match run_slot(&shared, &running).await {
        Ok(slot) => slot,
        Err(ended) => {
            let why = running.reason();
            span.in_scope(
                || info!(reason = ?why, "task ended while claimed ahead, before it started"),
            );
            send_completion(&shared, lease, ended, permit);
            return;
        }
    };
    let waited = task
        .due_at
        .and_then(|due| (chrono::Utc::now() - due).to_std().ok());
    shared.recorder.started(&task.queue, waited);
    let queue = task.queue.clone();
    let name = shared.observer.as_ref().map(|o| {
        o.started(&task.name, waited);
        task.name.clone()
    });
    let began = Instant::now();
    // A panic anywhere in the attempt (the task's arguments, its policy, errand's own code) is
    // a failed attempt, never a task stuck `running` under a lease this worker renews.
    let completion = AssertUnwindSafe(execute(&shared, task, prepare, &running))
        .catch_unwind()
        .instrument(span.clone())
        .await
        .unwrap_or_else(|panic| {
            let message = format!(
                "the attempt panicked outside the task's run: {}",
                panic_message(&panic)
            );
            span.in_scope(|| error!(error = %message, "task failed"));
            Counters::bump(&shared.stats.failed);
            Counters::bump(&shared.stats.panicked);
            Some(Completion {
                lease,
                outcome: Outcome::Failed(ErrorInfo {
                    message,
                    kind: "panic".into(),
                    details: None,
                    retryable: false,
                }),
                report: StatusUpdate::default(),
            })
        });
    let outcome = match completion.as_ref().map(|c| &c.outcome) {
        None => AttemptOutcome::Lost,
        Some(Outcome::Success(_)) => AttemptOutcome::Success,
        Some(Outcome::Retry { .. }) => AttemptOutcome::Retrying,
        Some(Outcome::Failed(_)) => AttemptOutcome::Failed,
        Some(Outcome::Cancelled) => AttemptOutcome::Cancelled,
        Some(Outcome::Released) => AttemptOutcome::Released,
    };
    let took = began.elapsed();
    drop(run_slot);
    shared.recorder.ended(&queue, outcome, took);
    if let (Some(observer), Some(name)) = (&shared.observer, &name) {
        observer.ended(name, outcome, took);
    }
    send_completion(&shared, lease, completion, permit);
}

/// Queues an ended attempt's completion for the complete loop (`None`: the lease was lost,
/// nothing to write). Until it is written, the attempt keeps its lease (the heartbeat renews
/// it) and its slot `permit` (so a slow or unreachable store stops new claims instead of
/// letting results pile up until their leases lapse and the tasks run again).
fn send_completion(
    shared: &Shared,
    lease: Lease,
    completion: Option<Completion>,
    permit: OwnedSemaphorePermit,
) {
    let unsent = match completion {
        Some(completion) => shared
            .done_tx
            .send(Done { completion, permit })
            .err()
            .map(|e| e.0.permit),
        None => Some(permit),
    };
    if let Some(permit) = unsent {
        shared.forget([lease]);
        drop(permit);
    }
}

/// One of the worker's `concurrency` run slots for an attempt. A task claimed ahead
/// ([`WorkerConfig::prefetch`](super::WorkerConfig::prefetch)) waits for it; stopped first, it
/// ends without running: `Err` with its completion (handed back without spending the attempt
/// at a shutdown, cancelled on request, `None` when its lease was lost). A worker that claims
/// ahead starts nothing once its shutdown began; one that does not runs what its last claim
/// took, as it always did.
async fn run_slot(
    shared: &Shared,
    running: &Running,
) -> Result<OwnedSemaphorePermit, Option<Completion>> {
    if shared.config.prefetch > 0 && shared.stopping.is_cancelled() {
        running.stop(StopReason::Shutdown);
    } else if let Ok(slot) = shared.run_slots.clone().try_acquire_owned() {
        return Ok(slot);
    } else {
        tokio::select! {
            biased;
            _ = running.token.cancelled() => {}
            _ = shared.stopping.cancelled() => running.stop(StopReason::Shutdown),
            slot = shared.run_slots.clone().acquire_owned() => match slot {
                Ok(slot) => return Ok(slot),
                Err(_) => running.stop(StopReason::Shutdown),
            },
        }
    }
    let done = |outcome, report| Completion {
        lease: running.lease,
        outcome,
        report,
    };
    Err(match running.reason() {
        StopReason::LeaseLost => {
            Counters::bump(&shared.stats.lost);
            None
        }
        StopReason::Shutdown => {
            Counters::bump(&shared.stats.released);
            Some(done(Outcome::Released, running.reporter.release()))
        }
        StopReason::CancelRequested | StopReason::None => {
            Counters::bump(&shared.stats.cancelled);
            Some(done(
                Outcome::Cancelled,
                running.reporter.finish(Some("cancelled")),
            ))
        }
    })
}

/// A finished attempt on its way to the store, holding its worker slot until it is written.
pub(crate) struct Done {
    pub(crate) completion: Completion,
    pub(crate) permit: OwnedSemaphorePermit,
}

/// Runs one attempt and decides its outcome; `None` when the lease was lost.
pub(crate) async fn execute(
    shared: &Shared,
    task: Claimed,
    prepare: Prepare,
    running: &Running,
) -> Option<Completion> {
    let stats = &shared.stats;
    let fatal = |kind: &str, message: String| {
        Outcome::Failed(ErrorInfo {
            message,
            kind: kind.to_string(),
            details: None,
            retryable: false,
        })
    };
    let done = |outcome, report| Completion {
        lease: running.lease,
        outcome,
        report,
    };

    let prepared = match prepare(&task) {
        Ok(p) => p,
        Err(e) => {
            let kind = match e {
                PrepareError::Unknown(_) => "unregistered",
                PrepareError::InvalidArgs { .. } => "invalid_args",
            };
            error!(error = %e, "task failed: {kind}");
            Counters::bump(&stats.failed);
            return Some(done(fatal(kind, e.to_string()), StatusUpdate::default()));
        }
    };
    // A task whose context cannot be opened and checked never runs: not anonymously, not as
    // anyone.
    let context = match open_context(&shared.keys, &task) {
        Ok(c) => c,
        Err(err) => {
            let retry = err.is_retryable() && task.attempt < task.max_attempts;
            error!(error = %err, kind = err.kind(), "task not run: its context could not be restored");
            return Some(if retry {
                Counters::bump(&stats.retried);
                let delay = prepared.policy.backoff.delay(task.attempt);
                done(
                    Outcome::Retry {
                        error: err.into_info(),
                        delay,
                    },
                    StatusUpdate::default(),
                )
            } else {
                Counters::bump(&stats.failed);
                done(Outcome::Failed(err.into_info()), StatusUpdate::default())
            });
        }
    };
    let backoff = prepared.policy.backoff;
    let cx = TaskCx::new(CxParts {
        id: task.lease.id,
        name: task.name.clone(),
        attempt: task.attempt,
        max_attempts: task.max_attempts,
        context: context.clone(),
        token: running.token.clone(),
        reporter: running.reporter.clone(),
        resources: shared.resources.clone(),
    });
    info!("task started");
    let began = Instant::now();
    let work = Context::scope_opt(context, AssertUnwindSafe(prepared.run(cx)).catch_unwind())
        .map(|r| r.unwrap_or_else(|panic| Err(panic_error(panic))));
    tokio::pin!(work);
    // A fired token decides, even if the task also returned in the same instant.
    let ended = tokio::select! {
        biased;
        _ = running.token.cancelled() => {
            let reason = running.reason();
            // Give the task a moment to notice its token and stop on its own.
            let late = tokio::time::timeout(shared.config.cancel_grace, &mut work).await.ok();
            Ended::Stopped(reason, late)
        }
        // The token can fire while the task is being polled, and the task return because of
        // it in that same poll: that is a stop, not the task's own outcome.
        r = &mut work => if running.token.is_cancelled() {
            Ended::Stopped(running.reason(), Some(r))
        } else {
            Ended::Finished(r)
        },
        _ = tokio::time::sleep(task.timeout) => Ended::TimedOut,
    };
    let took_ms = began.elapsed().as_millis() as u64;
    let failure = |err: TaskError| {
        if err.kind() == "panic" {
            Counters::bump(&stats.panicked);
        }
        let report = running.reporter.finish(Some(err.message()));
        let info = err.clone().into_info();
        if err.is_retryable() && task.attempt < task.max_attempts {
            let delay = err
                .retry_in()
                .unwrap_or_else(|| backoff.delay(task.attempt));
            warn!(error = %err, retry_in_ms = delay.as_millis() as u64, took_ms, "task retrying");
            Counters::bump(&stats.retried);
            done(Outcome::Retry { error: info, delay }, report)
        } else {
            error!(error = %err, took_ms, "task failed");
            Counters::bump(&stats.failed);
            done(Outcome::Failed(info), report)
        }
    };
    Some(match ended {
        Ended::Finished(Ok(result)) | Ended::Stopped(StopReason::Shutdown, Some(Ok(result))) => {
            info!(took_ms, "task succeeded");
            Counters::bump(&stats.succeeded);
            done(Outcome::Success(result), running.reporter.finish(None))
        }
        Ended::Finished(Err(err)) if err.self_stop() == Some(SelfStop::Release) => {
            info!(
                reason = err.message(),
                "task released: handed back without spending the attempt"
            );
            Counters::bump(&stats.released);
            done(Outcome::Released, running.reporter.release())
        }
        Ended::Finished(Err(err)) if err.self_stop() == Some(SelfStop::Cancelled) => {
            info!(took_ms, "task cancelled");
            Counters::bump(&stats.cancelled);
            done(
                Outcome::Cancelled,
                running.reporter.finish(Some("cancelled")),
            )
        }
        Ended::Finished(Err(err)) => failure(err),
        Ended::TimedOut => {
            running.token.cancel();
            Counters::bump(&stats.timed_out);
            warn!(
                timeout_ms = task.timeout.as_millis() as u64,
                "task timed out"
            );
            failure(
                TaskError::retryable(format!(
                    "the attempt exceeded its timeout of {:?}",
                    task.timeout
                ))
                .with_kind("timeout"),
            )
        }
        Ended::Stopped(StopReason::LeaseLost, _) => {
            warn!("task abandoned: its lease was lost (another worker may run it)");
            Counters::bump(&stats.lost);
            return None;
        }
        Ended::Stopped(StopReason::Shutdown, _) => {
            info!("task released: worker shutting down, handed back without spending the attempt");
            Counters::bump(&stats.released);
            done(Outcome::Released, running.reporter.release())
        }
        Ended::Stopped(_, _) => {
            info!(took_ms, "task cancelled");
            Counters::bump(&stats.cancelled);
            done(
                Outcome::Cancelled,
                running.reporter.finish(Some("cancelled")),
            )
        }
    })
}

/// Opens a claimed task's sealed context and checks it against what the store says about the
/// task: the owner and correlation id the store shows (and lists the task under) must be the
/// ones sealed, and a task with an owner must have a context.
pub(crate) fn open_context(
    keys: &SealKeyRing,
    task: &Claimed,
) -> Result<Option<Context>, TaskError> {
    let integrity = |message: String| TaskError::fatal(message).with_kind(CONTEXT_INTEGRITY);
    let Some(sealed) = &task.context else {
        if task.owner != Owner::default() {
            return Err(integrity(
                "the task's record names an owner but carries no sealed context: it was altered in the store".into(),
            ));
        }
        return Ok(None);
    };
    let context = sealed.open(keys, task.seal_binding()).map_err(|e| {
        let error = if e.is_retryable() {
            TaskError::retryable(e.to_string())
        } else {
            TaskError::fatal(e.to_string())
        };
        error.with_kind(e.kind())
    })?;
    let sealed_owner = Owner {
        user_id: context.user_id().map(str::to_string),
        tenant: context.tenant().map(str::to_string),
    };
    if sealed_owner != task.owner || context.correlation_id() != task.correlation_id.as_deref() {
        return Err(integrity(
            "the task's record names another owner or correlation id than its sealed context: it was altered in the store".into(),
        ));
    }
    Ok(Some(context))
}

pub(crate) fn panic_error(panic: Box<dyn std::any::Any + Send>) -> TaskError {
    TaskError::retryable(format!("the task panicked: {}", panic_message(&panic))).with_kind("panic")
}
