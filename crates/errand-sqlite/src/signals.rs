//! What a committed write tells the rest of the process: status records for watchers,
//! cancellations for workers, "work arrived" for idle workers, and when the earliest delayed
//! task falls due. Writes collect these as [`Effects`]; the writer applies them only once the
//! transaction committed, so nobody hears of a change that did not happen.

use errand_core::events::{CancelBus, Watchers, WorkNotifier};
use errand_core::{TaskId, TaskRecord};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The process-wide listeners of one store.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    /// Per-task status watchers (SSE clients).
    pub(crate) watchers: Arc<Watchers>,
    /// Cancellation requests for this process's workers.
    pub(crate) cancels: CancelBus,
    /// Wakes idle workers of this process.
    pub(crate) work: WorkNotifier,
    /// When the earliest waiting task of each queue falls due, as far as this process knows.
    pub(crate) due: DueTimes,
}

impl Signals {
    /// Tells everyone what a committed transaction changed.
    pub(crate) fn apply(&self, effects: Effects) {
        for change in effects.due {
            match change {
                DueChange::Known { queue, due } => self.due.set(queue, due),
                DueChange::Added { queue, due } => self.due.lower(queue, due),
            }
        }
        for record in &effects.records {
            self.watchers.publish(record);
        }
        for id in effects.cancels {
            self.cancels.send(id);
        }
        if effects.work {
            self.work.notify();
        }
    }
}

/// What one write operation changed that listeners must hear about after the commit.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// New records of watched tasks.
    pub(crate) records: Vec<TaskRecord>,
    /// Running tasks whose cancellation was requested.
    pub(crate) cancels: Vec<TaskId>,
    /// Whether a task became claimable.
    pub(crate) work: bool,
    /// Changes to the queues' earliest due times.
    pub(crate) due: Vec<DueChange>,
}

impl Effects {
    /// Adds `other`'s effects after this one's.
    pub(crate) fn extend(&mut self, other: Effects) {
        self.records.extend(other.records);
        self.cancels.extend(other.cancels);
        self.work |= other.work;
        self.due.extend(other.due);
    }
}

/// A change to a queue's earliest due time.
#[derive(Debug)]
pub(crate) enum DueChange {
    /// Read from the database: the queue's earliest waiting task falls due then (`None`:
    /// nothing waits).
    Known {
        /// The queue.
        queue: String,
        /// Its earliest due time, in stored microseconds.
        due: Option<i64>,
    },
    /// A task was delayed or scheduled for retry until `due`.
    Added {
        /// The queue.
        queue: String,
        /// When it falls due, in stored microseconds.
        due: i64,
    },
}

/// The earliest due time of each queue's waiting tasks, as seen by this process's writes; the
/// work signal sleeps until then. Another process's writes are not seen: workers fall back to
/// their poll interval for those.
#[derive(Debug, Default)]
pub(crate) struct DueTimes(Mutex<HashMap<String, i64>>);

impl DueTimes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, queue: String, due: Option<i64>) {
        let mut map = self.lock();
        match due {
            Some(due) => {
                map.insert(queue, due);
            }
            None => {
                map.remove(&queue);
            }
        }
    }

    fn lower(&self, queue: String, due: i64) {
        let mut map = self.lock();
        let entry = map.entry(queue).or_insert(due);
        *entry = (*entry).min(due);
    }

    /// The earliest due time among `queues`.
    pub(crate) fn earliest(&self, queues: &[String]) -> Option<i64> {
        let map = self.lock();
        queues.iter().filter_map(|q| map.get(q).copied()).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_follow_reads_and_schedules() {
        let due = DueTimes::default();
        let queues = ["a".to_string(), "b".to_string()];
        assert_eq!(due.earliest(&queues), None);
        due.lower("a".into(), 50);
        due.lower("a".into(), 70);
        due.lower("b".into(), 40);
        assert_eq!(due.earliest(&queues), Some(40));
        assert_eq!(due.earliest(&queues[..1]), Some(50));
        due.set("b".into(), None);
        due.set("a".into(), Some(90));
        assert_eq!(
            due.earliest(&queues),
            Some(90),
            "a read replaces what was known"
        );
    }
}
