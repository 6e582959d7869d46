//! [`Held`]: an attempt handed to a remote worker, and the run function that stands in for the
//! task inside the [`Worker`](crate::Worker)'s attempt machinery: it hands the task over,
//! waits for the worker's outcome, and fails the attempt as `worker_lost` when the worker
//! stops heartbeating.

use super::wire::{Assignment, Report, WireContext};
use crate::cx::TaskCx;
use crate::lease::Lease;
use crate::registry::Output;
use crate::store::{Claimed, CompleteResult};
use crate::task::TaskError;
use chrono::Utc;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A worker's outcome for an attempt, and where to tell it what the store made of it.
pub(crate) struct Finish {
    pub output: Output,
    pub ack: oneshot::Sender<CompleteResult>,
}

/// An attempt a remote worker runs.
pub(crate) struct Held {
    pub lease: Lease,
    /// The task's own view (reports, cancellation).
    pub cx: TaskCx,
    /// How long the worker may go silent.
    pub silence: Duration,
    last_seen: Mutex<Instant>,
    finish: Mutex<Option<oneshot::Sender<Finish>>>,
}

impl Held {
    /// The worker was heard from: its lease runs `silence` from now.
    pub fn seen(&self) {
        *self.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn silent_for(&self) -> Duration {
        self.last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// Applies what the task reported.
    pub fn apply(&self, report: &Report) {
        if !report.plan.is_empty() {
            self.cx.plan_steps(report.plan.iter().cloned());
        }
        for change in &report.steps {
            use crate::status::StepStatus::*;
            match change.status {
                Running => self.cx.start_step(&change.name),
                Success => self.cx.end_step(&change.name, None),
                Failed => self.cx.end_step(
                    &change.name,
                    Some(change.error.as_deref().unwrap_or("failed")),
                ),
                Pending | Skipped => self.cx.plan_steps([change.name.clone()]),
            }
        }
        if let Some(p) = &report.progress {
            self.cx.progress(p.current, p.total, p.message.clone());
        }
    }

    /// Hands the worker's outcome to the attempt; `None` if it already ended.
    pub fn finish(&self, output: Output) -> Option<oneshot::Receiver<CompleteResult>> {
        let tx = self
            .finish
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        let (ack, acked) = oneshot::channel();
        tx.send(Finish { output, ack }).ok()?;
        Some(acked)
    }
}

/// The attempts remote workers hold, by task, and the answers owed for their completions.
#[derive(Default)]
pub(crate) struct Ledger {
    held: Mutex<HashMap<crate::id::TaskId, Arc<Held>>>,
    acks: Mutex<HashMap<Lease, oneshot::Sender<CompleteResult>>>,
}

impl Ledger {
    /// The attempt holding `lease`, if it is still running.
    pub fn get(&self, lease: Lease) -> Option<Arc<Held>> {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&lease.id)
            .filter(|h| h.lease == lease)
            .cloned()
    }

    fn insert(&self, held: Arc<Held>) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(held.lease.id, held);
    }

    fn remove(&self, lease: Lease) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.get(&lease.id).is_some_and(|h| h.lease == lease) {
            held.remove(&lease.id);
        }
    }

    /// Ends every held attempt as handed back (its process is stopping).
    pub fn release_all(&self) {
        let held: Vec<Arc<Held>> = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for h in held {
            let _ = h.finish(Err(TaskError::released("the server is shutting down")));
        }
    }

    fn owe(&self, lease: Lease, ack: oneshot::Sender<CompleteResult>) {
        self.acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(lease, ack);
    }

    /// Tells the worker waiting on `lease`'s completion what the store answered.
    pub fn written(&self, lease: Lease, result: CompleteResult) {
        let ack = self
            .acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&lease);
        if let Some(ack) = ack {
            let _ = ack.send(result);
        }
    }
}

/// Removes an attempt from the ledger when its run ends, however it ends.
struct Release<'a>(&'a Ledger, Lease);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

/// The context of `cx` as the worker receives it: the credential only while unexpired.
fn wire_context(cx: &TaskCx) -> Option<WireContext> {
    let c = cx.context()?;
    Some(WireContext {
        user_id: c.user_id().map(str::to_string),
        tenant: c.tenant().map(str::to_string),
        roles: c.roles().to_vec(),
        request_id: c.request_id().map(str::to_string),
        correlation_id: c.correlation_id().map(str::to_string),
        // The attempt's span when spans are exported, so the worker's span is its child.
        traceparent: crate::otel::current_traceparent()
            .or_else(|| c.traceparent().map(str::to_string)),
        headers: c.headers().clone(),
        extra: c.extra().clone(),
        credential: c.credential().ok().map(|s| s.expose().to_string()),
        credential_expires_at: c.credential_expires_at(),
    })
}

/// The run function of a remote attempt: builds the assignment, sends it on `assign` (to the
/// claim that is waiting for it), and waits for the worker's outcome. A claim that went away
/// hands the task back; a worker silent for `silence` fails the attempt as `worker_lost`.
pub(crate) async fn hand_off(
    ledger: Arc<Ledger>,
    task: Claimed,
    cx: TaskCx,
    silence: Duration,
    assign: oneshot::Sender<Assignment>,
) -> Output {
    let (finish, mut finished) = oneshot::channel();
    let held = Arc::new(Held {
        lease: task.lease,
        cx: cx.clone(),
        silence,
        last_seen: Mutex::new(Instant::now()),
        finish: Mutex::new(Some(finish)),
    });
    ledger.insert(held.clone());
    let _release = Release(&ledger, task.lease);
    let assignment = Assignment {
        task_id: task.lease.id,
        name: task.name,
        queue: task.queue,
        args: task.args,
        attempt: task.attempt,
        max_attempts: task.max_attempts,
        lease_token: task.lease.token.to_string(),
        lease_deadline: Utc::now() + silence,
        timeout_s: task.timeout.as_secs_f64(),
        context: wire_context(&cx),
    };
    if assign.send(assignment).is_err() {
        return Err(TaskError::released(
            "the claim that took it ended before the task reached a worker",
        ));
    }
    loop {
        let left = silence.saturating_sub(held.silent_for());
        tokio::select! {
            done = &mut finished => return match done {
                Ok(Finish { output, ack }) => {
                    ledger.owe(task.lease, ack);
                    output
                }
                Err(_) => Err(TaskError::retryable("the remote attempt ended without an outcome").with_kind("worker_lost")),
            },
            _ = tokio::time::sleep(left) => {
                if held.silent_for() >= silence {
                    return Err(TaskError::retryable(format!(
                        "the worker running it sent no heartbeat for {silence:?}"
                    ))
                    .with_kind("worker_lost"));
                }
            }
        }
    }
}
