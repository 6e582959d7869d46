//! The reads: one record with its arguments, a page of a listing, the depth of the queues.
//! Expired records are hidden until the purge deletes them.

use super::MemoryStore;
use super::index::Walk;
use crate::id::TaskId;
use crate::status::TaskRecord;
use crate::store::{ListQuery, Page, QueueDepth};
use std::ops::Bound;

impl MemoryStore {
    /// [`Store::get`](crate::Store::get).
    pub(super) fn get_task(&self, id: TaskId) -> Option<TaskRecord> {
        let now = self.now();
        let st = self.lock();
        st.tasks
            .get(&id)
            .filter(|e| e.record.expires_at.is_none_or(|x| x > now))
            .map(|e| TaskRecord {
                args: Some(e.args.clone()),
                ..e.record.clone()
            })
    }

    /// [`Store::list`](crate::Store::list).
    pub(super) fn list_tasks(&self, query: &ListQuery) -> Page {
        let now = self.now();
        let limit = query.capped_limit();
        let st = self.lock();
        let (lower, upper) = query.id_range();
        let range = (
            lower.map_or(Bound::Unbounded, Bound::Included),
            upper.map_or(Bound::Unbounded, Bound::Excluded),
        );
        // The walk is over one index (see `Index::walk`); the other filters check records.
        let walk = match query.empty_range() {
            true => None,
            false => st.index.walk(query),
        };
        let ids: Box<dyn Iterator<Item = &TaskId>> = match &walk {
            None => Box::new(std::iter::empty()),
            Some(Walk::All) => Box::new(st.tasks.range(range).rev().map(|(id, _)| id)),
            Some(Walk::Set(set)) => Box::new(set.range(range).rev()),
            Some(Walk::Owned(set)) => Box::new(set.range(range).rev()),
        };
        let items: Vec<TaskRecord> = ids
            .filter_map(|id| st.tasks.get(id))
            .map(|e| &e.record)
            .filter(|r| query.matches(r) && r.expires_at.is_none_or(|x| x > now))
            .take(limit + 1)
            .cloned()
            .collect();
        Page::of_fetched(items, limit)
    }

    /// [`Store::depth`](crate::Store::depth).
    pub(super) fn queue_depth(&self) -> QueueDepth {
        let st = self.lock();
        QueueDepth {
            waiting: st.ready.values().map(|q| q.len() as u64).sum(),
            running: st.leases.len() as u64,
        }
    }
}
