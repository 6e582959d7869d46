//! Maintenance: lapsed leases handed back (or ended), expired records deleted.

use super::MemoryStore;
use super::state::ms;
use crate::attempt_log::{AttemptEnding, log_attempt};
use crate::id::TaskId;
use crate::lease::lease_expired_error;
use crate::status::TaskState;
use crate::store::Reaped;

impl MemoryStore {
    /// [`Store::reap`](crate::Store::reap).
    pub(super) fn reap_lapsed(&self) -> Reaped {
        let now = self.now();
        let now_ms = ms(now);
        let mut st = self.lock();
        let lapsed: Vec<TaskId> = st
            .leases
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .map(|(_, id)| *id)
            .collect();
        let mut reaped = Reaped::default();
        for id in lapsed {
            st.drop_lease(id);
            let Some(e) = st.tasks.get_mut(&id) else {
                continue;
            };
            if e.record.cancel_requested {
                log_attempt(&mut e.record, AttemptEnding::Cancelled, None, now);
                st.finish(id, TaskState::Cancelled, now);
                reaped.cancelled += 1;
            } else if e.record.attempt >= e.record.max_attempts {
                let error = lease_expired_error(false);
                log_attempt(&mut e.record, AttemptEnding::LeaseLapsed, Some(&error), now);
                e.record.error = Some(error);
                st.finish(id, TaskState::Failed, now);
                reaped.failed += 1;
            } else {
                let error = lease_expired_error(true);
                log_attempt(&mut e.record, AttemptEnding::LeaseLapsed, Some(&error), now);
                e.record.error = Some(error);
                e.record.updated_at = now;
                let due = ms(e.record.created_at);
                st.set_status(id, TaskState::Pending);
                st.make_ready(id, due);
                reaped.requeued += 1;
            }
            if let Some(e) = st.tasks.get(&id) {
                self.publish(&e.record);
            }
        }
        drop(st);
        if reaped.requeued > 0 {
            self.shared.work.notify();
        }
        reaped
    }

    /// [`Store::purge_expired`](crate::Store::purge_expired).
    pub(super) fn purge_records(&self) -> u64 {
        let now_ms = ms(self.now());
        let mut st = self.lock();
        let expired: Vec<TaskId> = st
            .expiry
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .map(|(_, id)| *id)
            .collect();
        for id in &expired {
            if let Some(e) = st.tasks.get(id)
                && let Some(x) = e.expiry_ms
            {
                st.expiry.remove(&(x, *id));
            }
            if let Some(e) = st.tasks.remove(id) {
                st.index.delete(&e.record);
            }
        }
        expired.len() as u64
    }
}
