//! The owner and queue of the tasks this process claimed, so that ending them needs no read
//! of their row for the counters (`task_owner.sql` is the fallback).
//!
//! A task's owner and queue never change, so an entry is never wrong, only possibly missing:
//! a task claimed by another process, or by this one before a restart, is looked up instead.
//! Entries leave when the attempt ends here; those whose end this process never sees (a lease
//! lapsed and reaped elsewhere) are dropped all at once when the map reaches [`CAPACITY`].

use errand_core::{Owner, TaskId};
use std::cell::RefCell;
use std::collections::HashMap;

/// The most entries kept: far more than one process holds at once.
const CAPACITY: usize = 1 << 16;

/// Owner and queue per claimed task, kept by the writer thread across its transactions.
#[derive(Debug, Default)]
pub(crate) struct Held(RefCell<HashMap<TaskId, (Owner, String)>>);

impl Held {
    /// Notes that task `id` of `owner` on `queue` was claimed.
    pub(crate) fn claimed(&self, id: TaskId, owner: &Owner, queue: &str) {
        let mut map = self.0.borrow_mut();
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(id, (owner.clone(), queue.to_string()));
    }

    /// The owner and queue of task `id`, if it was claimed here, forgetting it.
    pub(crate) fn take(&self, id: TaskId) -> Option<(Owner, String)> {
        self.0.borrow_mut().remove(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_taken_once_and_the_map_stays_bounded() {
        let held = Held::default();
        let owner = Owner::new("alice", None);
        let id = TaskId::new();
        held.claimed(id, &owner, "q");
        assert_eq!(held.take(id), Some((owner.clone(), "q".to_string())));
        assert_eq!(held.take(id), None);
        for _ in 0..CAPACITY + 10 {
            held.claimed(TaskId::new(), &owner, "q");
        }
        assert!(held.0.borrow().len() <= CAPACITY);
    }
}
