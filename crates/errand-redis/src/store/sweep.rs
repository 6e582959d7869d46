//! Sweeps over every queue: reaping lapsed leases (`lua/reap.lua`) and purging expired
//! records (`lua/purge.lua`).

use super::{RedisStore, to_json};
use crate::error::corrupt;
use crate::record::{array, int};
use crate::scripts::Call;
use errand_core::{Reaped, StoreError, lease_expired_error};
use std::sync::Arc;

/// Most lapsed leases or expired records handled per script call (each call blocks Redis
/// briefly; the store loops until done).
const SWEEP_CHUNK: usize = 500;

impl RedisStore {
    /// [`Store::reap`](errand_core::Store::reap).
    pub(super) async fn reap_lapsed(&self) -> Result<Reaped, StoreError> {
        let retryable = to_json(&lease_expired_error(true))?;
        let last = to_json(&lease_expired_error(false))?;
        let scripts = self.inner.redis.scripts();
        let totals = self
            .sweep(
                |base, now| {
                    let mut call = scripts.reap.call(base, now);
                    call.arg(SWEEP_CHUNK).arg(&retryable).arg(&last);
                    call
                },
                3,
            )
            .await?;
        Ok(Reaped {
            requeued: totals[0],
            failed: totals[1],
            cancelled: totals[2],
        })
    }

    /// [`Store::purge_expired`](errand_core::Store::purge_expired).
    pub(super) async fn purge_records(&self) -> Result<u64, StoreError> {
        let scripts = self.inner.redis.scripts();
        let totals = self
            .sweep(
                |base, now| {
                    let mut call = scripts.purge.call(base, now);
                    call.arg(SWEEP_CHUNK);
                    call
                },
                1,
            )
            .await?;
        Ok(totals[0])
    }

    /// Runs a sweeping script (reap, purge) over every queue until each is done; returns the
    /// sum of each answer's counters (all but the last value, which is 1 while the queue may
    /// have more to sweep).
    async fn sweep<'s>(
        &'s self,
        make: impl Fn(&str, Option<i64>) -> Call<'s>,
        counters: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let now = self.now_arg();
        let mut pending: Vec<Arc<str>> = self.queue_list().await?;
        let mut totals = vec![0u64; counters];
        while !pending.is_empty() {
            let calls = pending
                .iter()
                .map(|q| make(&self.keys().base(q), now))
                .collect();
            let values = self.inner.redis.run(&[], calls).await?;
            let mut again = Vec::new();
            for (queue, value) in pending.iter().zip(values) {
                let answer = array(value)?;
                if answer.len() != counters + 1 {
                    return Err(corrupt("a sweep answered with the wrong shape"));
                }
                for (total, v) in totals.iter_mut().zip(&answer) {
                    *total += int(v)?;
                }
                if int(&answer[counters])? == 1 {
                    again.push(queue.clone());
                }
            }
            pending = again;
        }
        Ok(totals)
    }
}
