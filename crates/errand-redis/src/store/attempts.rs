//! What a worker does with its leases: heartbeat, report and complete, each one script call
//! per chunk of leases per queue, all in one round trip.

use super::{RedisStore, lock, to_json};
use crate::error::corrupt;
use crate::record::{array, int, millis};
use crate::scripts::Call;
use errand_core::{
    CompleteResult, Completion, Lease, LeaseState, Outcome, StatusUpdate, StoreError, TaskId,
};
use redis::Value;
use std::sync::Arc;

/// Most leases or completions per script call.
pub(super) const LEASE_CHUNK: usize = 500;

impl RedisStore {
    /// [`Store::heartbeat`](errand_core::Store::heartbeat).
    pub(super) async fn heartbeat_leases(
        &self,
        leases: &[Lease],
        extend: std::time::Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        let ids: Vec<TaskId> = leases.iter().map(|l| l.id).collect();
        let queues = self.route(&ids).await?;
        let now = self.now_arg();
        let extend_ms = millis(extend);
        let scripts = self.inner.redis.scripts();
        let answers = self
            .per_queue(
                &queues,
                leases,
                |base| {
                    let mut call = scripts.heartbeat.call(base, now);
                    call.arg(extend_ms);
                    call
                },
                |call, lease| {
                    call.arg(lease.id.to_string())
                        .arg(&lease.token.to_hex()[..]);
                    Ok(())
                },
            )
            .await?;
        self.lease_states(&ids, answers)
    }

    /// [`Store::report`](errand_core::Store::report).
    pub(super) async fn report_updates(
        &self,
        updates: Vec<(Lease, StatusUpdate)>,
    ) -> Result<Vec<LeaseState>, StoreError> {
        let ids: Vec<TaskId> = updates.iter().map(|(l, _)| l.id).collect();
        let queues = self.route(&ids).await?;
        let now = self.now_arg();
        let scripts = self.inner.redis.scripts();
        let answers = self
            .per_queue(
                &queues,
                &updates,
                |base| scripts.report.call(base, now),
                |call, (lease, update)| {
                    let (progress, steps) = report_args(update)?;
                    call.arg(lease.id.to_string())
                        .arg(&lease.token.to_hex()[..])
                        .arg(progress)
                        .arg(steps);
                    Ok(())
                },
            )
            .await?;
        self.lease_states(&ids, answers)
    }

    /// [`Store::complete`](errand_core::Store::complete).
    pub(super) async fn complete_leases(
        &self,
        completions: Vec<Completion>,
    ) -> Result<Vec<CompleteResult>, StoreError> {
        let ids: Vec<TaskId> = completions.iter().map(|c| c.lease.id).collect();
        let queues = self.route(&ids).await?;
        let now = self.now_arg();
        let scripts = self.inner.redis.scripts();
        let answers = self
            .per_queue(
                &queues,
                &completions,
                |base| scripts.complete.call(base, now),
                completion_args,
            )
            .await?;
        self.release_held(ids);
        answers
            .iter()
            .map(|a| complete_result(a.as_ref()))
            .collect()
    }

    /// The lease states the heartbeat and report scripts answered for `ids`, forgetting the
    /// tasks whose lease is lost.
    fn lease_states(
        &self,
        ids: &[TaskId],
        answers: Vec<Option<Value>>,
    ) -> Result<Vec<LeaseState>, StoreError> {
        let states = answers
            .into_iter()
            .map(lease_code)
            .collect::<Result<Vec<_>, _>>()?;
        self.release_held(
            ids.iter()
                .zip(&states)
                .filter(|(_, s)| **s == LeaseState::Lost)
                .map(|(id, _)| *id),
        );
        Ok(states)
    }

    pub(super) fn release_held(&self, ids: impl IntoIterator<Item = TaskId>) {
        let mut held = lock(&self.inner.held);
        for id in ids {
            held.remove(&id);
        }
    }

    /// Runs one script call per chunk of items per queue, all in one round trip, and hands
    /// each item its answer (one value per item, in order). Items without a queue get `None`.
    async fn per_queue<'s, T>(
        &'s self,
        queues: &[Option<Arc<str>>],
        items: &[T],
        make: impl Fn(&str) -> Call<'s>,
        add: impl Fn(&mut Call<'s>, &T) -> Result<(), StoreError>,
    ) -> Result<Vec<Option<Value>>, StoreError> {
        let mut groups: Vec<(Arc<str>, Vec<usize>)> = Vec::new();
        for (i, q) in queues.iter().enumerate() {
            let Some(q) = q else { continue };
            match groups.iter_mut().find(|(g, _)| g == q) {
                Some((_, list)) => list.push(i),
                None => groups.push((q.clone(), vec![i])),
            }
        }
        let mut calls = Vec::new();
        let mut positions = Vec::new();
        for (queue, list) in &groups {
            let base = self.keys().base(queue);
            for chunk in list.chunks(LEASE_CHUNK) {
                let mut call = make(&base);
                for &i in chunk {
                    add(&mut call, &items[i])?;
                }
                calls.push(call);
                positions.push(chunk);
            }
        }
        let mut out: Vec<Option<Value>> = vec![None; items.len()];
        let values = self.inner.redis.run(&[], calls).await?;
        for (value, chunk) in values.into_iter().zip(positions) {
            let answers = array(value)?;
            if answers.len() != chunk.len() {
                return Err(corrupt("a script answered for the wrong number of items"));
            }
            for (answer, &i) in answers.into_iter().zip(chunk) {
                out[i] = Some(answer);
            }
        }
        Ok(out)
    }
}

/// Appends one completion to a `complete_attempts` call (see `lua/complete_attempts.lua`).
pub(super) fn completion_args(call: &mut Call<'_>, c: &Completion) -> Result<(), StoreError> {
    let reports = c.report.progress.is_some() || c.report.steps.is_some();
    if let (Outcome::Success(result), false) = (&c.outcome, reports) {
        call.arg("s")
            .arg(c.lease.id.to_string())
            .arg(&c.lease.token.to_hex()[..])
            .arg(result.get());
        return Ok(());
    }
    let (outcome, payload, delay) = match &c.outcome {
        Outcome::Success(result) => ("S", result.get().to_string(), 0),
        Outcome::Failed(error) => ("F", to_json(error)?, 0),
        Outcome::Cancelled => ("C", String::new(), 0),
        Outcome::Retry { error, delay } => ("R", to_json(error)?, millis(*delay)),
        Outcome::Released => ("L", String::new(), 0),
    };
    let (progress, steps) = report_args(&c.report)?;
    call.arg(outcome)
        .arg(c.lease.id.to_string())
        .arg(&c.lease.token.to_hex()[..])
        .arg(payload)
        .arg(delay)
        .arg(progress)
        .arg(steps);
    Ok(())
}

/// A `complete_attempts` answer for one completion (`None`: it was not sent, its task unknown).
pub(super) fn complete_result(answer: Option<&Value>) -> Result<CompleteResult, StoreError> {
    Ok(match answer.map(int).transpose()? {
        Some(1) => CompleteResult::Applied,
        _ => CompleteResult::Stale,
    })
}

fn lease_code(value: Option<Value>) -> Result<LeaseState, StoreError> {
    match value.as_ref().map(int).transpose()? {
        Some(1) => Ok(LeaseState::Held),
        Some(2) => Ok(LeaseState::CancelRequested),
        _ => Ok(LeaseState::Lost),
    }
}

/// The report's fields as script arguments ('' when unchanged).
fn report_args(report: &StatusUpdate) -> Result<(String, String), StoreError> {
    Ok((
        report
            .progress
            .as_ref()
            .map(to_json)
            .transpose()?
            .unwrap_or_default(),
        report
            .steps
            .as_ref()
            .map(to_json)
            .transpose()?
            .unwrap_or_default(),
    ))
}
