//! Claim: the oldest due tasks across the asked queues, each leased under a new token.

use super::MemoryStore;
use super::state::{after, ms};
use crate::lease::{Lease, LeaseToken};
use crate::status::TaskState;
use crate::store::{ClaimRequest, Claimed};
use chrono::DateTime;
use std::time::Duration;

impl MemoryStore {
    /// [`Store::claim`](crate::Store::claim).
    pub(super) fn claim_tasks(&self, req: &ClaimRequest) -> Vec<Claimed> {
        let now = self.now();
        let now_ms = ms(now);
        let lease_until = after(now, req.lease);
        let mut st = self.lock();
        let mut out = Vec::new();
        while out.len() < req.limit {
            let next = req
                .queues
                .iter()
                .filter_map(|q| st.ready.get(q)?.first().copied())
                .filter(|(due, _)| *due <= now_ms)
                .min();
            let Some((due, id)) = next else { break };
            let st = &mut *st;
            let Some(e) = st.tasks.get_mut(&id) else {
                break;
            };
            if let Some(q) = st.ready.get_mut(&e.record.queue) {
                q.remove(&(due, id));
            }
            e.due_ms = None;
            let token = LeaseToken::random();
            e.token = Some(token);
            e.lease_ms = Some(ms(lease_until));
            let r = &mut e.record;
            let from = r.status;
            r.status = TaskState::Running;
            r.attempt += 1;
            r.started_at = Some(now);
            r.updated_at = now;
            r.next_attempt_at = None;
            st.index.moved(&e.record, from);
            st.leases.insert((ms(lease_until), id));
            out.push(Claimed {
                lease: Lease { id, token },
                name: e.record.name.clone(),
                queue: e.record.queue.clone(),
                args: e.args.clone(),
                context: e.context.clone(),
                owner: e.record.owner.clone(),
                correlation_id: e.record.correlation_id.clone(),
                attempt: e.record.attempt,
                max_attempts: e.record.max_attempts,
                timeout: Duration::from_millis(e.record.timeout_ms),
                due_at: DateTime::from_timestamp_millis(due),
            });
            if self.shared.watchers.is_watched(id) {
                self.publish(&e.record);
            }
        }
        out
    }
}
