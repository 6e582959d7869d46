//! What listings and dashboards read besides records: tasks per state ([`StateCounts`]), per
//! queue ([`QueueCounts`]), and the parts of a [`ListQuery`] every store's index walk needs
//! (its id range, its search).

use crate::id::TaskId;
use crate::status::{TaskRecord, TaskState};
use crate::store::{ListQuery, Page};
use serde::Serialize;

/// How many tasks are in each state ([`crate::Store::counts`]). Its JSON has one field per
/// state, named as the state is in JSON.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StateCounts {
    /// Waiting to be claimed.
    pub pending: u64,
    /// Waiting for their `run_at` time.
    pub scheduled: u64,
    /// Claimed by a worker.
    pub running: u64,
    /// Waiting for their next attempt.
    pub retrying: u64,
    /// Finished with a result.
    pub success: u64,
    /// Finished with an error.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
}

impl StateCounts {
    /// The count of `state`.
    pub fn get(&self, state: TaskState) -> u64 {
        match state {
            TaskState::Pending => self.pending,
            TaskState::Scheduled => self.scheduled,
            TaskState::Running => self.running,
            TaskState::Retrying => self.retrying,
            TaskState::Success => self.success,
            TaskState::Failed => self.failed,
            TaskState::Cancelled => self.cancelled,
        }
    }

    /// The count of `state`, to change.
    pub fn get_mut(&mut self, state: TaskState) -> &mut u64 {
        match state {
            TaskState::Pending => &mut self.pending,
            TaskState::Scheduled => &mut self.scheduled,
            TaskState::Running => &mut self.running,
            TaskState::Retrying => &mut self.retrying,
            TaskState::Success => &mut self.success,
            TaskState::Failed => &mut self.failed,
            TaskState::Cancelled => &mut self.cancelled,
        }
    }

    /// Adds `delta` to the count of `state`, saturating at 0 (a store's counters never go
    /// below; a negative sum would mean a lost increment, which is a bug to report, not to
    /// show as a huge number).
    pub fn add(&mut self, state: TaskState, delta: i64) {
        let n = self.get_mut(state);
        *n = n.saturating_add_signed(delta);
    }

    /// All tasks, whatever their state.
    pub fn total(&self) -> u64 {
        TaskState::ALL.iter().map(|s| self.get(*s)).sum()
    }

    /// The tasks waiting to run (pending, scheduled, retrying).
    pub fn waiting(&self) -> u64 {
        self.pending + self.scheduled + self.retrying
    }

    /// The counts of the states of `records` (to check a store's counters against a listing).
    pub fn of<'a>(records: impl IntoIterator<Item = &'a TaskRecord>) -> Self {
        let mut counts = Self::default();
        for r in records {
            *counts.get_mut(r.status) += 1;
        }
        counts
    }
}

/// One queue's load ([`crate::Store::queues`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// The queue.
    pub queue: String,
    /// Tasks waiting to run (pending, scheduled, retrying).
    pub waiting: u64,
    /// Tasks running.
    pub running: u64,
    /// Failed records not yet purged.
    pub failed: u64,
}

impl QueueCounts {
    /// A queue's line from its state counts.
    pub fn from_counts(queue: impl Into<String>, counts: &StateCounts) -> Self {
        Self {
            queue: queue.into(),
            waiting: counts.waiting(),
            running: counts.running,
            failed: counts.failed,
        }
    }
}

/// Whether `q` names `record`: its id, its correlation id or its request id, exactly (an id
/// in any case the UUID parser reads).
pub(crate) fn search_hits(q: &str, record: &TaskRecord) -> bool {
    record.correlation_id.as_deref() == Some(q)
        || record.request_id.as_deref() == Some(q)
        || q.parse::<TaskId>().is_ok_and(|id| id == record.id)
}

impl Page {
    /// The page of `items` fetched newest first for a page of `limit`: a store fetches one
    /// more than `limit`, and when it found it there is a next page, after the last one kept.
    pub fn of_fetched(mut items: Vec<TaskRecord>, limit: usize) -> Self {
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|r| r.id)
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

impl ListQuery {
    /// The ids a page may hold: at or above the first (from `created_after`), below the second
    /// (the cursor or `created_before`, whichever is lower). `None`: unbounded.
    pub fn id_range(&self) -> (Option<TaskId>, Option<TaskId>) {
        let lower = self.created_after.map(TaskId::first_at);
        let before = self.created_before.map(TaskId::first_at);
        let upper = match (self.cursor, before) {
            (Some(c), Some(b)) => Some(c.min(b)),
            (c, b) => c.or(b),
        };
        (lower, upper)
    }

    /// Whether the id range holds no id at all (a page that is empty whatever is stored).
    pub fn empty_range(&self) -> bool {
        matches!(self.id_range(), (Some(l), Some(u)) if l >= u)
    }

    /// The id `search` names, if it reads as one.
    pub fn search_id(&self) -> Option<TaskId> {
        self.search.as_deref().and_then(|q| q.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OwnerFilter;
    use chrono::{DateTime, Utc};

    #[test]
    fn counts_add_and_saturate() {
        let mut c = StateCounts::default();
        c.add(TaskState::Failed, 3);
        c.add(TaskState::Failed, -1);
        c.add(TaskState::Pending, -1);
        assert_eq!((c.failed, c.pending, c.total()), (2, 0, 2));
        let json = serde_json::to_value(c).expect("serializes");
        for s in TaskState::ALL {
            assert!(json.get(s.as_str()).is_some(), "{s} is a field");
        }
    }

    #[test]
    fn the_range_is_the_tighter_of_cursor_and_before() {
        let at = |ms| DateTime::<Utc>::from_timestamp_millis(ms).expect("time");
        let mut q = ListQuery::owner(OwnerFilter::Any);
        assert_eq!(q.id_range(), (None, None));
        q.created_after = Some(at(1000));
        q.created_before = Some(at(2000));
        q.cursor = Some(TaskId::first_at_ms(1500));
        assert_eq!(
            q.id_range(),
            (
                Some(TaskId::first_at_ms(1000)),
                Some(TaskId::first_at_ms(1500))
            )
        );
        assert!(!q.empty_range());
        q.created_before = Some(at(1000));
        assert!(q.empty_range());
    }
}
