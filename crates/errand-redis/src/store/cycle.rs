//! A worker's steady state: the completions of a batch and the next claim, in one
//! `lua/cycle.lua` call when they are all about one queue (so one round trip, and atomic).

use super::RedisStore;
use super::attempts::{LEASE_CHUNK, complete_result, completion_args};
use super::claim::{CLAIM_MAX, claim_args};
use crate::error::corrupt;
use crate::keys::check_queue;
use crate::record::{array, millis};
use errand_core::{ClaimRequest, Claimed, CompleteResult, Completion, StoreError, TaskId};
use std::sync::Arc;

impl RedisStore {
    /// [`Store::complete_and_claim`](errand_core::Store::complete_and_claim). A claim from one
    /// queue with completions of that queue alone (the usual case: a worker of one queue) is one
    /// script call, atomic; any other is written as
    /// [`complete_then_claim`](errand_core::complete_then_claim) writes it.
    pub(super) async fn complete_and_claim_tasks(
        &self,
        completions: Vec<Completion>,
        req: &ClaimRequest,
    ) -> Result<(Vec<CompleteResult>, Vec<Claimed>), StoreError> {
        let ids: Vec<TaskId> = completions.iter().map(|c| c.lease.id).collect();
        let queues = self.route(&ids).await?;
        let limit = req.limit.min(CLAIM_MAX);
        let single = match req.queues.as_slice() {
            [queue] if limit > 0 && completions.len() <= LEASE_CHUNK => {
                let queue: Arc<str> = queue.as_str().into();
                queues
                    .iter()
                    .all(|q| q.as_ref().is_none_or(|q| *q == queue))
                    .then_some(queue)
            }
            _ => None,
        };
        let Some(queue) = single else {
            return errand_core::complete_then_claim(self, completions, req).await;
        };
        check_queue(&queue)?;
        self.follow_cancels(&[(queue.clone(), limit)]).await;
        let scripts = self.inner.redis.scripts();
        let mut call = scripts
            .cycle
            .call(&self.keys().base(&queue), self.now_arg());
        claim_args(&mut call, limit, millis(req.lease));
        // Completions of unknown tasks are not sent: they are stale.
        for (c, _) in completions.iter().zip(&queues).filter(|(_, q)| q.is_some()) {
            completion_args(&mut call, c)?;
        }
        let mut values = self.inner.redis.run(&[], vec![call]).await?.into_iter();
        let [ended, claimed]: [redis::Value; 2] = values
            .next()
            .map(array)
            .transpose()?
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| corrupt("a cycle answer has the wrong shape"))?;
        let mut ended = array(ended)?.into_iter();
        let mut results = Vec::with_capacity(completions.len());
        for queue in &queues {
            let answer = match queue {
                Some(_) => Some(
                    ended
                        .next()
                        .ok_or_else(|| corrupt("a cycle answered for too few completions"))?,
                ),
                None => None,
            };
            results.push(complete_result(answer.as_ref())?);
        }
        self.release_held(ids);
        let claimed = self.claimed_from(&queue, claimed)?;
        Ok((results, claimed))
    }
}
