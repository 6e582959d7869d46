//! Claims: one `lua/claim.lua` call per queue, each handing out leases on the tasks due.

use super::{RedisStore, lock};
use crate::error::corrupt;
use crate::keys::check_queue;
use crate::record::{Stored, array, bytes, millis, scored, task_id, text};
use crate::scripts::Call;
use errand_core::{ClaimRequest, Claimed, LeaseToken, StoreError};
use redis::Value;
use std::sync::Arc;

/// Most tasks one claim hands out.
pub(super) const CLAIM_MAX: usize = 1000;

impl RedisStore {
    /// [`Store::claim`](errand_core::Store::claim).
    pub(super) async fn claim_tasks(&self, req: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        let limit = req.limit.min(CLAIM_MAX);
        if limit == 0 || req.queues.is_empty() {
            return Ok(Vec::new());
        }
        for q in &req.queues {
            check_queue(q)?;
        }
        let lease_ms = millis(req.lease);
        if let [queue] = req.queues.as_slice() {
            return self
                .claim_from(&[(queue.as_str().into(), limit)], lease_ms)
                .await;
        }
        // Several queues: a queue is a cluster slot, so each gets its own claim script. Look
        // at what each has due (the head of its ready list and the earliest of its schedule,
        // kept if due by now) and share the limit oldest first across them, by id (ids are
        // creation-ordered).
        let mut pipe = redis::pipe();
        self.inner.now.ask(&mut pipe);
        for q in &req.queues {
            pipe.cmd("LRANGE")
                .arg(self.keys().ready(q))
                .arg(0)
                .arg(limit - 1);
            pipe.cmd("ZRANGE")
                .arg(self.keys().schedule(q))
                .arg(0)
                .arg(limit - 1)
                .arg("WITHSCORES");
        }
        let mut values = self.inner.redis.pipeline(&pipe).await?.into_iter();
        let now = self.inner.now.read(&mut values)?;
        let mut due: Vec<(Vec<u8>, usize)> = Vec::new();
        for qi in 0..req.queues.len() {
            let (Some(ready), Some(scheduled)) = (values.next(), values.next()) else {
                return Err(corrupt("a claim preview answered for too few queues"));
            };
            for id in array(ready)? {
                due.push((bytes(&id)?.to_vec(), qi));
            }
            for (id, score) in scored(scheduled)? {
                if score <= now {
                    due.push((id, qi));
                }
            }
        }
        due.sort();
        due.truncate(limit);
        let requests: Vec<(Arc<str>, usize)> = req
            .queues
            .iter()
            .enumerate()
            .filter_map(|(qi, q)| {
                let n = due.iter().filter(|(_, i)| *i == qi).count();
                (n > 0).then(|| (q.as_str().into(), n))
            })
            .collect();
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut claimed = self.claim_from(&requests, lease_ms).await?;
        claimed.sort_by_key(|c| c.lease.id);
        Ok(claimed)
    }

    /// Claims up to the given number of tasks from each queue (one script call per queue,
    /// all in one round trip), each with a lease of `lease_ms`.
    async fn claim_from(
        &self,
        requests: &[(Arc<str>, usize)],
        lease_ms: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.follow_cancels(requests).await;
        let scripts = self.inner.redis.scripts();
        let now = self.now_arg();
        let calls = requests
            .iter()
            .map(|(queue, limit)| {
                let mut call = scripts.claim.call(&self.keys().base(queue), now);
                claim_args(&mut call, *limit, lease_ms);
                call
            })
            .collect();
        let values = self.inner.redis.run(&[], calls).await?;
        let mut claimed = Vec::new();
        for ((queue, _), value) in requests.iter().zip(values) {
            claimed.extend(self.claimed_from(queue, value)?);
        }
        Ok(claimed)
    }

    /// The tasks a `claim_tasks` call answered (see `lua/claim_tasks.lua`), as held by this
    /// store from now on.
    pub(super) fn claimed_from(
        &self,
        queue: &Arc<str>,
        answer: Value,
    ) -> Result<Vec<Claimed>, StoreError> {
        let answer = array(answer)?;
        let mut claimed = Vec::with_capacity(answer.len() / 3);
        for triple in answer.chunks(3) {
            let [id, stored, due] = triple else {
                return Err(corrupt("a claim answer has the wrong shape"));
            };
            let id = task_id(id)?;
            claimed.push(Stored::parse(bytes(stored)?)?.claimed(id, queue, text(due)?)?);
        }
        let mut held = lock(&self.inner.held);
        for c in &claimed {
            held.insert(c.lease.id, queue.clone());
        }
        Ok(claimed)
    }
}

/// Appends a claim's `limit`, lease and tokens to a call (ARGV[2..=4] of `lua/claim.lua` and
/// `lua/cycle.lua`): one fresh random token for each task the call may claim.
pub(super) fn claim_args(call: &mut Call<'_>, limit: usize, lease_ms: i64) {
    let mut tokens = Vec::with_capacity(limit * 32);
    for _ in 0..limit {
        tokens.extend_from_slice(&LeaseToken::random().to_hex());
    }
    call.arg(limit).arg(lease_ms).arg(tokens);
}
