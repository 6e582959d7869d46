//! Enqueue: one `lua/enqueue.lua` call per chunk of tasks per queue, all in one round trip,
//! after the queues are registered.

use super::RedisStore;
use crate::error::corrupt;
use crate::keys::{check_queue, index_tags};
use crate::record::{self, NewRecord, array, int, millis, task_id, text};
use errand_core::{Enqueued, NewTask, StoreError, TaskState};

/// Most tasks per enqueue script call (a batch may take several calls, sent in one pipeline).
const ENQUEUE_CHUNK: usize = 500;

impl RedisStore {
    /// [`Store::enqueue`](errand_core::Store::enqueue).
    pub(super) async fn enqueue_tasks(
        &self,
        tasks: Vec<NewTask>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now_arg();
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, t) in tasks.iter().enumerate() {
            match groups.iter_mut().find(|(q, _)| *q == t.queue) {
                Some((_, list)) => list.push(i),
                None => {
                    check_queue(&t.queue)?;
                    groups.push((&t.queue, vec![i]));
                }
            }
        }
        let scripts = self.inner.redis.scripts();
        let mut calls = Vec::new();
        let mut positions = Vec::new();
        let mut fresh: Vec<TaskState> = Vec::with_capacity(tasks.len());
        for t in &tasks {
            fresh.push(match t.delay {
                Some(d) if !d.is_zero() => TaskState::Scheduled,
                _ => TaskState::Pending,
            });
        }
        for (queue, list) in &groups {
            let base = self.keys().base(queue);
            for chunk in list.chunks(ENQUEUE_CHUNK) {
                let keyed = chunk.iter().any(|&i| tasks[i].key.is_some());
                let mut call = scripts.enqueue.call(&base, now);
                call.arg(chunk.len()).arg(u8::from(keyed));
                for &i in chunk {
                    let t = &tasks[i];
                    // A scheduled task is due at least a millisecond after its creation.
                    let delay = (fresh[i] == TaskState::Scheduled)
                        .then(|| t.delay.map_or(0, millis).max(1));
                    let key_name = t
                        .scoped_key()
                        .map(|k| self.keys().idempotency(queue, &k))
                        .unwrap_or_default();
                    let owner = index_tags(t);
                    let tail = NewRecord {
                        ttl: millis(t.ttl),
                        owner_hash: &owner,
                        key_name: &key_name,
                        payload: &record::payload(t, delay)?,
                    }
                    .tail();
                    call.arg(t.id.to_string())
                        .arg(delay.unwrap_or(0))
                        .arg(&owner)
                        .arg(&key_name)
                        .arg(t.max_attempts.max(1))
                        .arg(tail);
                }
                calls.push(call);
                positions.push(chunk);
            }
        }
        // The queue names go to the set every process reads to find tasks by id, before the
        // tasks are stored: a connection lost in between leaves a queue known and empty,
        // never a task that cannot be found.
        let mut register = redis::cmd("SADD");
        register.arg(self.keys().queues());
        for (queue, _) in &groups {
            register.arg(*queue);
        }
        let values = self.inner.redis.run(&[register], calls).await?;
        let mut out: Vec<Enqueued> = tasks
            .iter()
            .zip(&fresh)
            .map(|(t, status)| Enqueued {
                id: t.id,
                status: *status,
                deduplicated: false,
            })
            .collect();
        for (value, chunk) in values.into_iter().zip(positions) {
            // Empty: every task of the chunk was stored as given.
            let answer = array(value)?;
            if answer.is_empty() {
                continue;
            }
            if answer.len() != chunk.len() * 3 {
                return Err(corrupt("enqueue answered for the wrong number of tasks"));
            }
            for (triple, &i) in answer.chunks(3).zip(chunk) {
                out[i] = Enqueued {
                    id: task_id(&triple[0])?,
                    status: text(&triple[1])?.parse().map_err(corrupt)?,
                    deduplicated: int(&triple[2])? == 1,
                };
            }
        }
        Ok(out)
    }
}
