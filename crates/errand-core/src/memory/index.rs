//! The memory store's listing indexes: one ordered set of ids per owner, per filter value
//! (state, name, queue, each alone and per owner) and per correlation and request id. The
//! sets of states are also the counters: [`Index::counts`] is their sizes.

use crate::id::TaskId;
use crate::listing::{QueueCounts, StateCounts};
use crate::status::{Owner, TaskRecord, TaskState};
use crate::store::{ListQuery, OwnerFilter};
use std::collections::{BTreeSet, HashMap};

/// What a set of ids is the set of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Owner(Owner),
    OwnerState(Owner, TaskState),
    OwnerName(Owner, String),
    OwnerQueue(Owner, String),
    State(TaskState),
    Name(String),
    Queue(String),
    QueueState(String, TaskState),
    Correlation(String),
    Request(String),
}

/// Every listing index of the store.
#[derive(Debug, Default)]
pub(super) struct Index {
    sets: HashMap<Key, BTreeSet<TaskId>>,
}

/// The ids a listing walks (newest first within its id range), checking each record.
pub(super) enum Walk<'a> {
    /// Every task (no filter narrows it).
    All,
    /// One index.
    Set(&'a BTreeSet<TaskId>),
    /// The union of a search's indexes.
    Owned(BTreeSet<TaskId>),
}

/// The sets a task in `state` belongs to because of its state.
fn state_keys(r: &TaskRecord, state: TaskState) -> [Key; 3] {
    [
        Key::OwnerState(r.owner.clone(), state),
        Key::State(state),
        Key::QueueState(r.queue.clone(), state),
    ]
}

/// The sets a task belongs to whatever its state.
fn fixed_keys(r: &TaskRecord) -> Vec<Key> {
    let mut keys = vec![
        Key::Owner(r.owner.clone()),
        Key::OwnerName(r.owner.clone(), r.name.clone()),
        Key::OwnerQueue(r.owner.clone(), r.queue.clone()),
        Key::Name(r.name.clone()),
        Key::Queue(r.queue.clone()),
    ];
    keys.extend(r.correlation_id.clone().map(Key::Correlation));
    keys.extend(r.request_id.clone().map(Key::Request));
    keys
}

impl Index {
    fn add(&mut self, key: Key, id: TaskId) {
        self.sets.entry(key).or_default().insert(id);
    }

    fn remove(&mut self, key: Key, id: TaskId) {
        if let Some(set) = self.sets.get_mut(&key) {
            set.remove(&id);
            if set.is_empty() {
                self.sets.remove(&key);
            }
        }
    }

    fn set(&self, key: &Key) -> Option<&BTreeSet<TaskId>> {
        self.sets.get(key)
    }

    fn len(&self, key: &Key) -> u64 {
        self.set(key).map_or(0, |s| s.len() as u64)
    }

    /// Indexes a new task in its current state.
    pub(super) fn insert(&mut self, r: &TaskRecord) {
        for key in fixed_keys(r).into_iter().chain(state_keys(r, r.status)) {
            self.add(key, r.id);
        }
    }

    /// Moves a task from the sets of state `from` to those of its current state.
    pub(super) fn moved(&mut self, r: &TaskRecord, from: TaskState) {
        if from == r.status {
            return;
        }
        for key in state_keys(r, from) {
            self.remove(key, r.id);
        }
        for key in state_keys(r, r.status) {
            self.add(key, r.id);
        }
    }

    /// Forgets a deleted task.
    pub(super) fn delete(&mut self, r: &TaskRecord) {
        for key in fixed_keys(r).into_iter().chain(state_keys(r, r.status)) {
            self.remove(key, r.id);
        }
    }

    /// Tasks per state of `owner` (everyone's for `Any`).
    pub(super) fn counts(&self, owner: &OwnerFilter) -> StateCounts {
        let mut counts = StateCounts::default();
        for s in TaskState::ALL {
            *counts.get_mut(s) = self.len(&match owner {
                OwnerFilter::Owner(o) => Key::OwnerState(o.clone(), s),
                OwnerFilter::Any => Key::State(s),
            });
        }
        counts
    }

    /// Every queue holding tasks, by name.
    pub(super) fn queues(&self) -> Vec<QueueCounts> {
        let mut names: Vec<&String> = self
            .sets
            .keys()
            .filter_map(|k| match k {
                Key::Queue(q) => Some(q),
                _ => None,
            })
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|q| {
                let mut counts = StateCounts::default();
                for s in TaskState::ALL {
                    *counts.get_mut(s) = self.len(&Key::QueueState(q.clone(), s));
                }
                QueueCounts::from_counts(q.clone(), &counts)
            })
            .collect()
    }

    /// The ids `query` walks: a search walks the union of its id, correlation and request
    /// indexes; otherwise the smallest of the indexes of its filters (state, name, queue,
    /// owner), the other filters being checked on each record. `None`: no task can match.
    pub(super) fn walk(&self, query: &ListQuery) -> Option<Walk<'_>> {
        let owner = match &query.owner {
            OwnerFilter::Owner(o) => Some(o),
            OwnerFilter::Any => None,
        };
        if let Some(q) = &query.search {
            let mut ids: BTreeSet<TaskId> = query.search_id().into_iter().collect();
            for key in [Key::Correlation(q.clone()), Key::Request(q.clone())] {
                ids.extend(self.set(&key).into_iter().flatten());
            }
            return Some(Walk::Owned(ids));
        }
        let mut keys = Vec::new();
        if let Some(s) = query.status {
            keys.push(match owner {
                Some(o) => Key::OwnerState(o.clone(), s),
                None => Key::State(s),
            });
        }
        if let Some(n) = &query.name {
            keys.push(match owner {
                Some(o) => Key::OwnerName(o.clone(), n.clone()),
                None => Key::Name(n.clone()),
            });
        }
        if let Some(q) = &query.queue {
            keys.push(match owner {
                Some(o) => Key::OwnerQueue(o.clone(), q.clone()),
                None => Key::Queue(q.clone()),
            });
        }
        if keys.is_empty() {
            return match owner {
                Some(o) => self.set(&Key::Owner(o.clone())).map(Walk::Set),
                None => Some(Walk::All),
            };
        }
        // A filter whose index is missing matches nothing.
        let sets: Option<Vec<&BTreeSet<TaskId>>> = keys.iter().map(|k| self.set(k)).collect();
        sets?.into_iter().min_by_key(|s| s.len()).map(Walk::Set)
    }
}
