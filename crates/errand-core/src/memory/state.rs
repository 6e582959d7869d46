//! What the memory store holds behind its lock: the tasks, the ordered sets that find them
//! (waiting per queue by due time, running by lease expiry, finished by expiry), the live
//! idempotency keys, the listing indexes and the deployment facts; and the moves of a task
//! between those sets, which every operation makes through [`State`].

use super::index::Index;
use crate::id::TaskId;
use crate::lease::{Lease, LeaseState, LeaseToken};
use crate::sealed::SealedContext;
use crate::status::{TaskRecord, TaskState};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// Everything the store holds; each operation takes the lock once.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) tasks: BTreeMap<TaskId, Entry>,
    /// Waiting tasks per queue, by (due time in ms, id).
    pub(super) ready: HashMap<String, BTreeSet<(i64, TaskId)>>,
    /// Running tasks by (lease expiry in ms, id).
    pub(super) leases: BTreeSet<(i64, TaskId)>,
    /// Finished tasks by (expiry in ms, id).
    pub(super) expiry: BTreeSet<(i64, TaskId)>,
    /// Live idempotency keys (owner-scoped).
    pub(super) keys: HashMap<String, TaskId>,
    /// Listing indexes and per-state counts.
    pub(super) index: Index,
    /// Deployment facts (`Store::get_meta`).
    pub(super) meta: HashMap<String, String>,
}

/// One task: its record, what only a claim hands out, and its keys in the ordered sets.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) record: TaskRecord,
    pub(super) args: Box<RawValue>,
    pub(super) context: Option<SealedContext>,
    pub(super) scoped_key: Option<String>,
    /// The token of the last claim.
    pub(super) token: Option<LeaseToken>,
    pub(super) ttl: Duration,
    /// Key in `ready` while waiting.
    pub(super) due_ms: Option<i64>,
    /// Key in `leases` while running.
    pub(super) lease_ms: Option<i64>,
    /// Key in `expiry` when finished.
    pub(super) expiry_ms: Option<i64>,
}

/// `t` in milliseconds, the unit of the ordered sets.
pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// `t + d`, saturating at the latest representable time.
pub(super) fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl State {
    /// Puts a task in its queue's waiting set, due at `due_ms`.
    pub(super) fn make_ready(&mut self, id: TaskId, due_ms: i64) {
        let Some(e) = self.tasks.get_mut(&id) else {
            return;
        };
        e.due_ms = Some(due_ms);
        self.ready
            .entry(e.record.queue.clone())
            .or_default()
            .insert((due_ms, id));
    }

    fn unready(&mut self, id: TaskId) {
        if let Some(e) = self.tasks.get_mut(&id)
            && let Some(due) = e.due_ms.take()
            && let Some(q) = self.ready.get_mut(&e.record.queue)
        {
            q.remove(&(due, id));
        }
    }

    /// Moves a waiting or running task to another live state, and its indexes with it.
    pub(super) fn set_status(&mut self, id: TaskId, state: TaskState) {
        if let Some(e) = self.tasks.get_mut(&id) {
            let from = e.record.status;
            e.record.status = state;
            self.index.moved(&e.record, from);
        }
    }

    /// Takes a task out of the running set.
    pub(super) fn drop_lease(&mut self, id: TaskId) {
        if let Some(e) = self.tasks.get_mut(&id)
            && let Some(l) = e.lease_ms.take()
        {
            self.leases.remove(&(l, id));
        }
    }

    /// Moves a task to a final state: sets the times, schedules expiry, frees its key.
    pub(super) fn finish(&mut self, id: TaskId, state: TaskState, now: DateTime<Utc>) {
        self.unready(id);
        self.drop_lease(id);
        let Some(e) = self.tasks.get_mut(&id) else {
            return;
        };
        let expires = after(now, e.ttl);
        let from = e.record.status;
        e.record.status = state;
        self.index.moved(&e.record, from);
        e.record.completed_at = Some(now);
        e.record.updated_at = now;
        e.record.next_attempt_at = None;
        e.record.expires_at = Some(expires);
        e.expiry_ms = Some(ms(expires));
        self.expiry.insert((ms(expires), id));
        if let Some(k) = e.scoped_key.take()
            && self.keys.get(&k) == Some(&id)
        {
            self.keys.remove(&k);
        }
    }

    /// Whether `lease` is the current claim of a running task, and if its cancel was asked.
    pub(super) fn lease_state(&self, lease: &Lease) -> LeaseState {
        match self.tasks.get(&lease.id) {
            Some(e) if e.token == Some(lease.token) && e.record.status == TaskState::Running => {
                if e.record.cancel_requested {
                    LeaseState::CancelRequested
                } else {
                    LeaseState::Held
                }
            }
            _ => LeaseState::Lost,
        }
    }

    /// How long until the first task of `queues` is due (zero if one is), if any waits.
    pub(super) fn next_due(&self, queues: &[String], now_ms: i64) -> Option<Duration> {
        queues
            .iter()
            .filter_map(|q| self.ready.get(q)?.first().map(|(due, _)| *due))
            .min()
            .map(|due| Duration::from_millis(due.saturating_sub(now_ms).max(0) as u64))
    }
}
