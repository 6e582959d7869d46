//! Finding tasks by id: the queues known (cached from the `{prefix}:queues` set), the queue
//! holding each task, and the records themselves.

use super::{RedisStore, lock};
use crate::error::corrupt;
use crate::record::Stored;
use errand_core::{StoreError, TaskId, TaskRecord};
use redis::Value;
use std::sync::Arc;

/// Where a task was found: its queue and, when asked for, its stored record.
struct Found {
    queue: Arc<str>,
    stored: Option<Vec<u8>>,
}

/// What [`RedisStore::locate`] asks each queue about a task.
#[derive(Clone, Copy)]
enum Probe {
    /// Whether it holds the task.
    Exists,
    /// The task's stored record.
    Get,
}

impl RedisStore {
    /// [`Store::get`](errand_core::Store::get).
    pub(super) async fn get_task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let (now, mut found) = self.locate(&[id], Probe::Get).await?;
        let Some(Found {
            queue,
            stored: Some(raw),
        }) = found.pop().flatten()
        else {
            return Ok(None);
        };
        let stored = Stored::parse(&raw)?;
        if stored.expires_ms().is_some_and(|x| x <= now) {
            return Ok(None);
        }
        let record = stored.record(id, &queue)?;
        Ok(Some(TaskRecord {
            args: Some(stored.args()?),
            ..record
        }))
    }

    fn cached_queues(&self) -> Vec<Arc<str>> {
        lock(&self.inner.queues).clone()
    }

    /// Replaces the cached queue list with Redis's answer, and returns it.
    fn learn_queues(&self, members: Vec<String>) -> Vec<Arc<str>> {
        let list: Vec<Arc<str>> = members.into_iter().map(Arc::from).collect();
        lock(&self.inner.queues).clone_from(&list);
        list
    }

    /// Every queue ever used (one round trip).
    pub(super) async fn queue_list(&self) -> Result<Vec<Arc<str>>, StoreError> {
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(self.keys().queues());
        let members: Vec<String> = self.inner.redis.query(&cmd).await?;
        Ok(self.learn_queues(members))
    }

    /// Finds the queue of each task in `ids` (and its stored record with [`Probe::Get`]): one
    /// round trip probing every queue this process knows while reading the set of queues,
    /// and a second one probing the queues of that set it did not probe, only if some task
    /// is still missing. Also returns "now", read in the first round trip. A task found
    /// nowhere gets `None`.
    async fn locate(
        &self,
        ids: &[TaskId],
        probe: Probe,
    ) -> Result<(i64, Vec<Option<Found>>), StoreError> {
        let mut found: Vec<Option<Found>> = ids.iter().map(|_| None).collect();
        let mut queues = self.cached_queues();
        let mut now = 0;
        // Twice at most: with the queues known here, then with the ones Redis adds.
        for round in 0..2 {
            let missing: Vec<usize> = (0..ids.len()).filter(|&i| found[i].is_none()).collect();
            let mut pipe = redis::pipe();
            if round == 0 {
                self.inner.now.ask(&mut pipe);
            }
            pipe.cmd("SMEMBERS").arg(self.keys().queues());
            for &i in &missing {
                for q in &queues {
                    pipe.cmd(match probe {
                        Probe::Exists => "EXISTS",
                        Probe::Get => "GET",
                    })
                    .arg(self.keys().task(q, ids[i]));
                }
            }
            let mut values = self.inner.redis.pipeline(&pipe).await?.into_iter();
            if round == 0 {
                now = self.inner.now.read(&mut values)?;
            }
            let members: Vec<String> = match values.next() {
                Some(v) => redis::from_redis_value(v).map_err(corrupt)?,
                None => return Err(corrupt("empty answer to a lookup")),
            };
            for &i in &missing {
                for q in &queues {
                    let stored = match values.next() {
                        Some(Value::BulkString(stored)) => Some(stored),
                        Some(Value::Int(1)) => None,
                        _ => continue,
                    };
                    found[i].get_or_insert_with(|| Found {
                        queue: q.clone(),
                        stored,
                    });
                }
            }
            // Not "new to the cache": a concurrent lookup may have learnt them meanwhile.
            let probed = queues;
            queues = self.learn_queues(members);
            queues.retain(|q| !probed.contains(q));
            if queues.is_empty() || found.iter().all(Option::is_some) {
                break;
            }
        }
        Ok((now, found))
    }

    /// Finds the queue holding task `id`.
    pub(super) async fn find(&self, id: TaskId) -> Result<Option<Arc<str>>, StoreError> {
        let (_, mut found) = self.locate(&[id], Probe::Exists).await?;
        Ok(found.pop().flatten().map(|f| f.queue))
    }

    /// The queue of each task, in order: from the leases this store holds, else located. A
    /// task that cannot be found gets `None` (its lease is lost).
    pub(super) async fn route(&self, ids: &[TaskId]) -> Result<Vec<Option<Arc<str>>>, StoreError> {
        let mut out: Vec<Option<Arc<str>>> = {
            let held = lock(&self.inner.held);
            ids.iter().map(|id| held.get(id).cloned()).collect()
        };
        let unknown: Vec<usize> = (0..ids.len()).filter(|&i| out[i].is_none()).collect();
        if unknown.is_empty() {
            return Ok(out);
        }
        let wanted: Vec<TaskId> = unknown.iter().map(|&i| ids[i]).collect();
        let (_, found) = self.locate(&wanted, Probe::Exists).await?;
        for (i, f) in unknown.into_iter().zip(found) {
            out[i] = f.map(|f| f.queue);
        }
        Ok(out)
    }

    /// Fetches records in one round trip; missing or expired ones are skipped.
    pub(super) async fn records(
        &self,
        ids: &[(TaskId, Arc<str>)],
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let mut pipe = redis::pipe();
        self.inner.now.ask(&mut pipe);
        for (id, queue) in ids {
            pipe.cmd("GET").arg(self.keys().task(queue, *id));
        }
        let mut values = self.inner.redis.pipeline(&pipe).await?.into_iter();
        let now = self.inner.now.read(&mut values)?;
        let mut out = Vec::with_capacity(ids.len());
        for ((id, queue), value) in ids.iter().zip(values) {
            if let Value::BulkString(raw) = value {
                let stored = Stored::parse(&raw)?;
                if stored.expires_ms().is_none_or(|x| x > now) {
                    out.push(stored.record(*id, queue)?);
                }
            }
        }
        Ok(out)
    }
}
