//! What the holder of a lease writes about its attempt: heartbeats, reports, and the
//! completion, each accepted only while the lease is the task's current one.

use super::MemoryStore;
use super::state::{after, ms};
use crate::attempt_log::{AttemptEnding, log_attempt};
use crate::lease::{Lease, LeaseState};
use crate::status::{StatusUpdate, TaskRecord, TaskState};
use crate::store::{CompleteResult, Completion, Outcome};
use std::time::Duration;

fn apply_report(record: &mut TaskRecord, report: StatusUpdate) {
    if let Some(p) = report.progress {
        record.progress = Some(p);
    }
    if let Some(s) = report.steps {
        record.steps = s;
    }
}

impl MemoryStore {
    /// [`Store::heartbeat`](crate::Store::heartbeat).
    pub(super) fn heartbeat_leases(&self, leases: &[Lease], extend: Duration) -> Vec<LeaseState> {
        let until = ms(after(self.now(), extend));
        let mut st = self.lock();
        leases
            .iter()
            .map(|lease| {
                let state = st.lease_state(lease);
                if state != LeaseState::Lost {
                    st.drop_lease(lease.id);
                    st.leases.insert((until, lease.id));
                    if let Some(e) = st.tasks.get_mut(&lease.id) {
                        e.lease_ms = Some(until);
                    }
                }
                state
            })
            .collect()
    }

    /// [`Store::report`](crate::Store::report).
    pub(super) fn report_updates(&self, updates: Vec<(Lease, StatusUpdate)>) -> Vec<LeaseState> {
        let now = self.now();
        let mut st = self.lock();
        updates
            .into_iter()
            .map(|(lease, update)| {
                let state = st.lease_state(&lease);
                if state != LeaseState::Lost
                    && let Some(e) = st.tasks.get_mut(&lease.id)
                {
                    apply_report(&mut e.record, update);
                    e.record.updated_at = now;
                    self.publish(&e.record);
                }
                state
            })
            .collect()
    }

    /// [`Store::complete`](crate::Store::complete).
    pub(super) fn complete_leases(&self, completions: Vec<Completion>) -> Vec<CompleteResult> {
        let now = self.now();
        let mut st = self.lock();
        let mut requeued = false;
        let results = completions
            .into_iter()
            .map(|c| {
                let id = c.lease.id;
                if st.lease_state(&c.lease) == LeaseState::Lost {
                    return CompleteResult::Stale;
                }
                st.drop_lease(id);
                let Some(e) = st.tasks.get_mut(&id) else {
                    return CompleteResult::Stale;
                };
                apply_report(&mut e.record, c.report);
                let cancel = e.record.cancel_requested;
                match c.outcome {
                    Outcome::Success(result) => {
                        e.record.result = Some(result);
                        e.record.error = None;
                        st.finish(id, TaskState::Success, now);
                    }
                    Outcome::Failed(error) => {
                        log_attempt(&mut e.record, AttemptEnding::Failed, Some(&error), now);
                        e.record.error = Some(error);
                        st.finish(id, TaskState::Failed, now);
                    }
                    Outcome::Cancelled => {
                        log_attempt(&mut e.record, AttemptEnding::Cancelled, None, now);
                        st.finish(id, TaskState::Cancelled, now)
                    }
                    Outcome::Retry { .. } | Outcome::Released if cancel => {
                        log_attempt(&mut e.record, AttemptEnding::Cancelled, None, now);
                        st.finish(id, TaskState::Cancelled, now)
                    }
                    Outcome::Retry { error, delay } => {
                        let next = after(now, delay);
                        log_attempt(&mut e.record, AttemptEnding::Retrying, Some(&error), now);
                        e.record.error = Some(error);
                        e.record.next_attempt_at = Some(next);
                        e.record.updated_at = now;
                        st.set_status(id, TaskState::Retrying);
                        st.make_ready(id, ms(next));
                        requeued = true;
                    }
                    Outcome::Released => {
                        e.record.attempt = e.record.attempt.saturating_sub(1);
                        e.record.started_at = None;
                        e.record.updated_at = now;
                        let due = ms(e.record.created_at);
                        st.set_status(id, TaskState::Pending);
                        st.make_ready(id, due);
                        requeued = true;
                    }
                }
                if let Some(e) = st.tasks.get(&id) {
                    self.publish(&e.record);
                }
                CompleteResult::Applied
            })
            .collect();
        drop(st);
        if requeued {
            self.shared.work.notify();
        }
        results
    }
}
