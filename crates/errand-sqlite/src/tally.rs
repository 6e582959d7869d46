//! The counters of tasks per state (table `task_counts`, `sql/migrations/0003_listing.sql`):
//! each write operation adds up the state changes it made in its [`Tally`]
//! ([`WriteCx::tally`](crate::writer::WriteCx)); the writer merges the tallies of the
//! operations it keeps (a failed operation's is dropped with its savepoint) and writes their
//! sums in the same transaction, just before the commit. So the counters change exactly when
//! the rows do, and cost one statement per scope and state a whole batch touched, not per task
//! nor per operation.

use crate::codec::state_at;
use crate::error::OpError;
use crate::sql;
use errand_core::{Owner, OwnerFilter, QueueCounts, StateCounts, TaskState};
use rusqlite::{Connection, named_params};
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// Where `state` is in [`TaskState::ALL`].
fn slot(state: TaskState) -> usize {
    match state {
        TaskState::Pending => 0,
        TaskState::Scheduled => 1,
        TaskState::Running => 2,
        TaskState::Retrying => 3,
        TaskState::Success => 4,
        TaskState::Failed => 5,
        TaskState::Cancelled => 6,
    }
}

/// Changes per state, in the order of [`TaskState::ALL`].
type Deltas = [i64; 7];

/// State changes, summed per owner and queue.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// One entry per owner and queue seen (an allocation only for a new pair).
    pairs: Vec<(Owner, String, Deltas)>,
    /// Where each pair is in `pairs`, by a hash of the pair (equal hashes are told apart by
    /// comparing the pairs).
    find: HashMap<u64, Vec<usize>>,
}

/// A hash of an owner and queue, to find their entry.
fn pair_hash(owner: &Owner, queue: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (owner, queue).hash(&mut h);
    h.finish()
}

impl Tally {
    fn deltas(&mut self, owner: &Owner, queue: &str) -> &mut Deltas {
        let slots = self.find.entry(pair_hash(owner, queue)).or_default();
        let found = slots.iter().copied().find(|&i| {
            let (o, q, _) = &self.pairs[i];
            o == owner && q == queue
        });
        let i = match found {
            Some(i) => i,
            None => {
                self.pairs.push((owner.clone(), queue.to_string(), [0; 7]));
                slots.push(self.pairs.len() - 1);
                self.pairs.len() - 1
            }
        };
        &mut self.pairs[i].2
    }

    /// Counts `delta` more tasks of `owner` on `queue` in `state` (negative: fewer).
    pub(crate) fn add(&mut self, owner: &Owner, queue: &str, state: TaskState, delta: i64) {
        self.deltas(owner, queue)[slot(state)] += delta;
    }

    /// Counts a task of `owner` on `queue` that went from state `from` to `to`.
    pub(crate) fn moved(&mut self, owner: &Owner, queue: &str, from: TaskState, to: TaskState) {
        if from != to {
            let d = self.deltas(owner, queue);
            d[slot(from)] -= 1;
            d[slot(to)] += 1;
        }
    }

    /// Adds `other`'s changes to these.
    pub(crate) fn merge(&mut self, other: Tally) {
        for (owner, queue, deltas) in other.pairs {
            let d = self.deltas(&owner, &queue);
            for (mine, theirs) in d.iter_mut().zip(deltas) {
                *mine += theirs;
            }
        }
    }

    /// Adds the sums to the counters (`count_add.sql`): per owner, per queue and in all.
    pub(crate) fn write(self, conn: &Connection) -> Result<(), OpError> {
        if self.pairs.iter().all(|(_, _, d)| d.iter().all(|n| *n == 0)) {
            return Ok(());
        }
        let mut all: Deltas = [0; 7];
        let mut owners: Vec<(&Owner, Deltas)> = Vec::new();
        let mut queues: Vec<(&str, Deltas)> = Vec::new();
        for (owner, queue, deltas) in &self.pairs {
            let o = match owners.iter().position(|(x, _)| *x == owner) {
                Some(i) => i,
                None => {
                    owners.push((owner, [0; 7]));
                    owners.len() - 1
                }
            };
            let q = match queues.iter().position(|(x, _)| *x == queue) {
                Some(i) => i,
                None => {
                    queues.push((queue, [0; 7]));
                    queues.len() - 1
                }
            };
            for (i, n) in deltas.iter().enumerate() {
                all[i] += n;
                owners[o].1[i] += n;
                queues[q].1[i] += n;
            }
        }
        let mut add = conn.prepare_cached(sql::COUNT_ADD)?;
        let mut write = |kind: &str, a: Option<&str>, b: Option<&str>, deltas: &Deltas| {
            for (state, delta) in TaskState::ALL.iter().zip(deltas) {
                if *delta != 0 {
                    add.execute(named_params! {
                        ":kind": kind,
                        ":a": a,
                        ":b": b,
                        ":status": state.as_str(),
                        ":delta": delta,
                    })?;
                }
            }
            Ok::<(), OpError>(())
        };
        write("", None, None, &all)?;
        for (owner, deltas) in &owners {
            write(
                "o",
                owner.tenant.as_deref(),
                owner.user_id.as_deref(),
                deltas,
            )?;
        }
        for (queue, deltas) in &queues {
            write("q", Some(queue), None, deltas)?;
        }
        Ok(())
    }
}

/// Tasks per state of `owner` (everyone's for `Any`): at most seven rows of the counters.
pub(crate) fn counts(conn: &Connection, owner: &OwnerFilter) -> Result<StateCounts, OpError> {
    let (owned, tenant, user_id) = match owner {
        OwnerFilter::Owner(o) => (1, o.tenant.as_deref(), o.user_id.as_deref()),
        OwnerFilter::Any => (0, None, None),
    };
    let mut stmt = conn.prepare_cached(sql::COUNTS)?;
    let mut rows = stmt.query(named_params! {
        ":owned": owned,
        ":tenant": tenant,
        ":user_id": user_id,
    })?;
    let mut counts = StateCounts::default();
    while let Some(r) = rows.next()? {
        counts.add(state_at(r, 0)?, r.get(1)?);
    }
    Ok(counts)
}

/// Every queue's line, by queue name.
pub(crate) fn queues(conn: &Connection) -> Result<Vec<QueueCounts>, OpError> {
    let mut stmt = conn.prepare_cached(sql::QUEUES)?;
    let mut rows = stmt.query([])?;
    let mut per_queue: Vec<(String, StateCounts)> = Vec::new();
    while let Some(r) = rows.next()? {
        let queue: String = r.get(0)?;
        let state = state_at(r, 1)?;
        let n: i64 = r.get(2)?;
        match per_queue.last_mut() {
            Some((q, counts)) if *q == queue => counts.add(state, n),
            _ => {
                let mut counts = StateCounts::default();
                counts.add(state, n);
                per_queue.push((queue, counts));
            }
        }
    }
    Ok(per_queue
        .iter()
        .map(|(q, c)| QueueCounts::from_counts(q.clone(), c))
        .collect())
}
