//! Listings, counts and queue lines of the Redis store, read from the indexes and counters
//! the scripts keep (see `lua/common.lua`: `store_final`, `count`, `flush_indexes`), and the
//! depth, read from the queues' work lists.
//!
//! A listing merges, newest first, one index per queue (per queue because every key of a
//! task lives in its queue's slot), chosen by its filters, the first that applies:
//!
//! 1. `search`: the task of that id (found by probing the queues), and per queue the
//!    correlation and request id indexes `{p:q}:c:<hash>`, `{p:q}:r:<hash>`;
//! 2. a waiting or running state: the queue's own work lists (`ready` and `schedule`, or
//!    `leases`), which hold only live tasks, so the walk costs the backlog, not anybody's
//!    history; when the counters say the owner has no task in that state, nothing is read;
//! 3. a final state: `{p:q}:o:<owner>:s:<state>`, or `{p:q}:s:<state>` for everyone's;
//! 4. a task name: `{p:q}:o:<owner>:n:<hash>`, or `{p:q}:n:<hash>`;
//! 5. otherwise the owner's index `{p:q}:o:<owner>`, or `{p:q}:ids`.
//!
//! A queue filter keeps only that queue's indexes; the creation range bounds the walk (ids
//! sort by time, so it is a range of the sorted sets); every other filter is checked on the
//! records read. A final state with a name walks that state's tasks of the owner, however few
//! of them have the name.

use super::RedisStore;
use crate::error::corrupt;
use crate::keys::owner_hash;
use crate::record::int;
use errand_core::{
    ListQuery, OwnerFilter, Page, QueueCounts, QueueDepth, StateCounts, Store, StoreError, TaskId,
    TaskRecord, TaskState,
};
use redis::Value;
use std::collections::VecDeque;
use std::sync::Arc;

/// One listing index being read newest first.
struct Source {
    queue: Arc<str>,
    key: String,
    /// Exclusive upper bound for the next read (`+` at first).
    upper: String,
    buffer: VecDeque<TaskId>,
    exhausted: bool,
}

/// A counter as HMGET answers it (absent: 0).
fn counter(value: &Value) -> Result<i64, StoreError> {
    match value {
        Value::Nil => Ok(0),
        v => redis::from_redis_value(v.clone()).map_err(corrupt),
    }
}

impl RedisStore {
    /// [`Store::list`]: see the module docs for the index each query walks.
    pub(super) async fn list_tasks(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let limit = query.capped_limit();
        if query.empty_range() {
            return Ok(Page::of_fetched(Vec::new(), limit));
        }
        let mut queues = self.queue_list().await?;
        if let Some(q) = &query.queue {
            queues.retain(|known| **known == **q);
        }
        if let Some(state) = query.status.filter(|s| !s.is_terminal())
            && query.search.is_none()
        {
            return self.list_live(query, &queues, state).await;
        }
        let keys = self.keys();
        let owner = match &query.owner {
            OwnerFilter::Owner(o) => Some(o),
            OwnerFilter::Any => None,
        };
        let mut chosen: Vec<(Arc<str>, String)> = Vec::new();
        for q in &queues {
            let mut key = |k: String| chosen.push((q.clone(), k));
            match (&query.search, query.status, &query.name, owner) {
                (Some(s), _, _, _) => {
                    key(keys.correlation(q, s));
                    key(keys.request(q, s));
                }
                (None, Some(st), _, Some(o)) => key(keys.owner_done(q, o, st)),
                (None, Some(st), _, None) => key(keys.done(q, st)),
                (None, None, Some(n), Some(o)) => key(keys.owner_name(q, o, n)),
                (None, None, Some(n), None) => key(keys.name(q, n)),
                (None, None, None, Some(o)) => key(keys.owner_index(q, o)),
                (None, None, None, None) => key(keys.ids(q)),
            }
        }
        let (lower, upper) = query.id_range();
        let upper = upper.map_or_else(|| "+".to_string(), |c| format!("({c}"));
        let mut sources: Vec<Source> = chosen
            .into_iter()
            .map(|(queue, key)| Source {
                queue,
                key,
                upper: upper.clone(),
                buffer: VecDeque::new(),
                exhausted: false,
            })
            .collect();
        // The task the search names by id, as one more (already read) source.
        if let Some(id) = query.search_id()
            && let Some(found) = self.get(id).await?
            && query.matches(&found)
        {
            sources.push(Source {
                queue: Arc::from(found.queue.as_str()),
                key: String::new(),
                upper: String::new(),
                buffer: VecDeque::from([id]),
                exhausted: true,
            });
        }
        let lower = lower.map_or_else(|| "-".to_string(), |l| format!("[{l}"));
        self.merge(query, sources, &lower).await
    }

    /// Reads `sources` newest first, merged, checking each record against `query`, until a
    /// page (and one more record) is found or every source is exhausted.
    async fn merge(
        &self,
        query: &ListQuery,
        mut sources: Vec<Source>,
        lower: &str,
    ) -> Result<Page, StoreError> {
        let limit = query.capped_limit();
        let mut items: Vec<TaskRecord> = Vec::new();
        let mut chunk = limit + 1;
        while items.len() <= limit {
            // Refill every index that may still hold newer ids than the others' heads.
            let refill: Vec<usize> = (0..sources.len())
                .filter(|&i| !sources[i].exhausted && sources[i].buffer.is_empty())
                .collect();
            if !refill.is_empty() {
                let mut pipe = redis::pipe();
                for &i in &refill {
                    pipe.cmd("ZRANGE")
                        .arg(&sources[i].key)
                        .arg(&sources[i].upper)
                        .arg(lower)
                        .arg("BYLEX")
                        .arg("REV")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(chunk);
                }
                let values = self.redis().pipeline(&pipe).await?;
                for (&i, value) in refill.iter().zip(values) {
                    let ids: Vec<String> = redis::from_redis_value(value).map_err(corrupt)?;
                    let s = &mut sources[i];
                    s.exhausted = ids.len() < chunk;
                    if let Some(last) = ids.last() {
                        s.upper = format!("({last}");
                    }
                    for id in ids {
                        s.buffer
                            .push_back(id.parse().map_err(|e| corrupt(format!("{e}")))?);
                    }
                }
            }
            // Merge newest first while every index that is not exhausted has a head.
            let mut candidates: Vec<(TaskId, Arc<str>)> = Vec::new();
            while candidates.len() < chunk
                && sources.iter().all(|s| s.exhausted || !s.buffer.is_empty())
            {
                let Some(best) = sources
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.buffer.front().map(|id| (*id, i)))
                    .max()
                else {
                    break;
                };
                // The same id from two indexes (a search by correlation and request id).
                for s in &mut sources {
                    if s.buffer.front() == Some(&best.0) {
                        s.buffer.pop_front();
                    }
                }
                candidates.push((best.0, sources[best.1].queue.clone()));
            }
            if candidates.is_empty() {
                break;
            }
            for record in self.records(&candidates).await? {
                if query.matches(&record) {
                    items.push(record);
                }
            }
            // Filters may reject many: read more at a time.
            chunk = (chunk * 2).min(1000);
        }
        Ok(Page::of_fetched(items, limit))
    }

    /// A listing by a waiting or running state: the ids of the queues' work lists (bounded by
    /// the backlog), newest first, checked against `query` in chunks.
    async fn list_live(
        &self,
        query: &ListQuery,
        queues: &[Arc<str>],
        state: TaskState,
    ) -> Result<Page, StoreError> {
        let limit = query.capped_limit();
        if queues.is_empty() || self.counts_of(&query.owner).await?.get(state) == 0 {
            return Ok(Page::of_fetched(Vec::new(), limit));
        }
        let mut pipe = redis::pipe();
        let mut from = Vec::new();
        for q in queues {
            if state == TaskState::Running {
                pipe.cmd("ZRANGE").arg(self.keys().leases(q)).arg(0).arg(-1);
                from.push(q.clone());
            } else {
                pipe.cmd("LRANGE").arg(self.keys().ready(q)).arg(0).arg(-1);
                pipe.cmd("ZRANGE")
                    .arg(self.keys().schedule(q))
                    .arg(0)
                    .arg(-1);
                from.extend([q.clone(), q.clone()]);
            }
        }
        let (lower, upper) = query.id_range();
        let mut ids: Vec<(TaskId, Arc<str>)> = Vec::new();
        for (value, queue) in self.redis().pipeline(&pipe).await?.into_iter().zip(from) {
            let listed: Vec<String> = redis::from_redis_value(value).map_err(corrupt)?;
            for id in listed {
                let id: TaskId = id.parse().map_err(|e| corrupt(format!("{e}")))?;
                if lower.is_none_or(|l| id >= l) && upper.is_none_or(|u| id < u) {
                    ids.push((id, queue.clone()));
                }
            }
        }
        ids.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));
        ids.dedup_by(|a, b| a.0 == b.0);
        let mut items = Vec::new();
        let mut chunk = limit + 1;
        let mut rest = &ids[..];
        while items.len() <= limit && !rest.is_empty() {
            let (head, tail) = rest.split_at(chunk.min(rest.len()));
            rest = tail;
            for record in self.records(head).await? {
                if query.matches(&record) {
                    items.push(record);
                }
            }
            chunk = (chunk * 2).min(1000);
        }
        Ok(Page::of_fetched(items, limit))
    }

    /// [`Store::counts`]: the owner's (or everyone's) counters of every queue, summed; one
    /// round trip after the queue list.
    pub(super) async fn counts_of(&self, owner: &OwnerFilter) -> Result<StateCounts, StoreError> {
        let prefix = match owner {
            OwnerFilter::Owner(o) => format!("{}:", owner_hash(o)),
            OwnerFilter::Any => String::new(),
        };
        let mut counts = StateCounts::default();
        for (_, queue) in self.per_queue_counts(&prefix).await? {
            for s in TaskState::ALL {
                counts.add(s, queue.get(s) as i64);
            }
        }
        Ok(counts)
    }

    /// [`Store::queues`]: every queue's own counters, by name.
    pub(super) async fn queue_counts(&self) -> Result<Vec<QueueCounts>, StoreError> {
        let mut lines: Vec<QueueCounts> = self
            .per_queue_counts("")
            .await?
            .into_iter()
            .map(|(q, c)| QueueCounts::from_counts(q.as_ref(), &c))
            .collect();
        lines.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(lines)
    }

    /// [`Store::depth`]: what waits and what runs, summed over the queues' work lists; one
    /// round trip after the queue list.
    pub(super) async fn queue_depth(&self) -> Result<QueueDepth, StoreError> {
        let queues = self.queue_list().await?;
        if queues.is_empty() {
            return Ok(QueueDepth::default());
        }
        let mut pipe = redis::pipe();
        for q in &queues {
            pipe.cmd("LLEN").arg(self.keys().ready(q));
            pipe.cmd("ZCARD").arg(self.keys().schedule(q));
            pipe.cmd("SCARD").arg(self.keys().skip(q));
            pipe.cmd("ZCARD").arg(self.keys().leases(q));
        }
        let values = self.inner.redis.pipeline(&pipe).await?;
        let mut depth = QueueDepth::default();
        for four in values.chunks(4) {
            if let [ready, scheduled, dead, running] = four {
                depth.waiting += (int(ready)? + int(scheduled)?).saturating_sub(int(dead)?);
                depth.running += int(running)?;
            }
        }
        Ok(depth)
    }

    /// The counters whose fields start with `prefix` (an owner's hash and `:`, or nothing for
    /// the queue's own), per queue.
    async fn per_queue_counts(
        &self,
        prefix: &str,
    ) -> Result<Vec<(Arc<str>, StateCounts)>, StoreError> {
        let queues = self.queue_list().await?;
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for q in &queues {
            let cmd = pipe.cmd("HMGET").arg(self.keys().counts(q));
            for s in TaskState::ALL {
                cmd.arg(format!("{prefix}{s}"));
            }
        }
        let values = self.redis().pipeline(&pipe).await?;
        let mut out = Vec::with_capacity(queues.len());
        for (q, value) in queues.into_iter().zip(values) {
            let Value::Array(fields) = value else {
                return Err(corrupt("HMGET answered something else than an array"));
            };
            let mut counts = StateCounts::default();
            for (s, v) in TaskState::ALL.into_iter().zip(&fields) {
                counts.add(s, counter(v)?);
            }
            out.push((q, counts));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_read_absent_as_zero() {
        assert_eq!(counter(&Value::Nil).expect("nil"), 0);
        assert_eq!(
            counter(&Value::BulkString(b"12".to_vec())).expect("number"),
            12
        );
        assert!(counter(&Value::BulkString(b"x".to_vec())).is_err());
    }
}
