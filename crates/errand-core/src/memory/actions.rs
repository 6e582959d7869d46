//! Cancel and retry by request: each changes the task and appends the caller to its history
//! under one lock.

use super::MemoryStore;
use super::state::ms;
use crate::history::{Action, ActionOutcome, push_action};
use crate::id::TaskId;
use crate::status::{Owner, TaskState};
use crate::store::{CancelOutcome, RetryOutcome, StoreError, scoped_key};

impl MemoryStore {
    /// [`Store::cancel`](crate::Store::cancel).
    pub(super) fn cancel_by(&self, id: TaskId, by: &Owner) -> CancelOutcome {
        let now = self.now();
        let mut st = self.lock();
        let Some(e) = st.tasks.get_mut(&id) else {
            return CancelOutcome::NotFound;
        };
        let outcome = match e.record.status {
            s if s.is_waiting() => {
                let action = Action::new(ActionOutcome::Cancelled, by.clone(), now);
                push_action(&mut e.record.history, action);
                st.finish(id, TaskState::Cancelled, now);
                CancelOutcome::Cancelled(Box::new(st.tasks[&id].record.clone()))
            }
            TaskState::Running => {
                e.record.cancel_requested = true;
                e.record.updated_at = now;
                let action = Action::new(ActionOutcome::CancelRequested, by.clone(), now);
                push_action(&mut e.record.history, action);
                self.shared.cancels.send(id);
                CancelOutcome::Requested(Box::new(e.record.clone()))
            }
            s => return CancelOutcome::Conflict(s),
        };
        if let Some(e) = st.tasks.get(&id) {
            self.publish(&e.record);
        }
        outcome
    }

    /// [`Store::retry`](crate::Store::retry).
    pub(super) fn retry_by(&self, id: TaskId, by: &Owner) -> Result<RetryOutcome, StoreError> {
        let now = self.now();
        let mut st = self.lock();
        let Some(e) = st.tasks.get_mut(&id) else {
            return Ok(RetryOutcome::NotFound);
        };
        if e.record.expires_at.is_some_and(|x| x <= now) {
            return Ok(RetryOutcome::NotFound);
        }
        if !matches!(e.record.status, TaskState::Failed | TaskState::Cancelled) {
            return Ok(RetryOutcome::Conflict(e.record.status));
        }
        if let Some(x) = e.expiry_ms.take() {
            st.expiry.remove(&(x, id));
        }
        let e = st
            .tasks
            .get_mut(&id)
            .ok_or_else(|| StoreError::Backend("task vanished".into()))?;
        let r = &mut e.record;
        let from = r.status;
        r.status = TaskState::Pending;
        r.attempt = 0;
        r.cancel_requested = false;
        r.started_at = None;
        r.completed_at = None;
        r.expires_at = None;
        r.next_attempt_at = None;
        r.error = None;
        r.result = None;
        r.progress = None;
        r.steps.clear();
        r.updated_at = now;
        push_action(
            &mut r.history,
            Action::new(ActionOutcome::Requeued, by.clone(), now),
        );
        let record = r.clone();
        st.index.moved(&record, from);
        // The key becomes live again unless another live task took it meanwhile.
        if let Some(k) = record.key.as_deref().map(|k| scoped_key(&record.owner, k))
            && !st.keys.contains_key(&k)
        {
            st.keys.insert(k.clone(), id);
            if let Some(e) = st.tasks.get_mut(&id) {
                e.scoped_key = Some(k);
            }
        }
        st.make_ready(id, ms(now));
        drop(st);
        self.publish(&record);
        self.shared.work.notify();
        Ok(RetryOutcome::Requeued(Box::new(record)))
    }
}
