//! Enqueue: new tasks become records waiting in their queue; a live task holding the same
//! owner-scoped key is returned instead.

use super::MemoryStore;
use super::state::{Entry, after, ms};
use crate::status::{TaskRecord, TaskState};
use crate::store::{Enqueued, NewTask};

impl MemoryStore {
    /// [`Store::enqueue`](crate::Store::enqueue).
    pub(super) fn enqueue_tasks(&self, tasks: Vec<NewTask>) -> Vec<Enqueued> {
        let now = self.now();
        let mut out = Vec::with_capacity(tasks.len());
        let mut st = self.lock();
        for t in tasks {
            let scoped_key = t.scoped_key();
            if let Some(k) = &scoped_key
                && let Some(existing) = st.keys.get(k).and_then(|id| st.tasks.get(id))
            {
                out.push(Enqueued {
                    id: existing.record.id,
                    status: existing.record.status,
                    deduplicated: true,
                });
                continue;
            }
            let run_at = t.delay.filter(|d| !d.is_zero()).map(|d| after(now, d));
            let status = if run_at.is_some() {
                TaskState::Scheduled
            } else {
                TaskState::Pending
            };
            let record = TaskRecord {
                id: t.id,
                name: t.name,
                queue: t.queue,
                status,
                owner: t.owner.clone(),
                correlation_id: t.correlation_id,
                request_id: t.request_id,
                key: t.key,
                created_at: now,
                updated_at: now,
                run_at,
                started_at: None,
                completed_at: None,
                next_attempt_at: None,
                expires_at: None,
                attempt: 0,
                max_attempts: t.max_attempts.max(1),
                timeout_ms: t.timeout.as_millis() as u64,
                cancel_requested: false,
                progress: None,
                steps: Vec::new(),
                error: None,
                result: None,
                history: Vec::new(),
                attempts: Vec::new(),
                trace_id: t.trace_id,
                args: None,
            };
            if let Some(k) = &scoped_key {
                st.keys.insert(k.clone(), t.id);
            }
            st.index.insert(&record);
            st.tasks.insert(
                t.id,
                Entry {
                    record,
                    args: t.args,
                    context: t.context,
                    scoped_key,
                    token: None,
                    ttl: t.ttl,
                    due_ms: None,
                    lease_ms: None,
                    expiry_ms: None,
                },
            );
            st.make_ready(t.id, ms(run_at.unwrap_or(now)));
            out.push(Enqueued {
                id: t.id,
                status,
                deduplicated: false,
            });
        }
        drop(st);
        self.shared.work.notify();
        out
    }
}
