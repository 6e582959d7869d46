//! Cancel and retry by request: one script call each (`lua/cancel.lua`, `lua/retry.lua`),
//! which changes the task and appends the actor to its history in one atomic step.

use super::RedisStore;
use crate::error::corrupt;
use crate::history::actor_arg;
use crate::record::{array, bytes, record_of, text};
use crate::scripts::Call;
use errand_core::{CancelOutcome, HISTORY_LIMIT, Owner, RetryOutcome, StoreError, TaskId};
use redis::Value;

impl RedisStore {
    /// [`Store::cancel`](errand_core::Store::cancel).
    pub(super) async fn cancel_by(
        &self,
        id: TaskId,
        by: &Owner,
    ) -> Result<CancelOutcome, StoreError> {
        let Some(queue) = self.find(id).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        let scripts = self.inner.redis.scripts();
        let mut call = scripts
            .cancel
            .call(&self.keys().base(&queue), self.now_arg());
        call.arg(id.to_string())
            .arg(self.keys().cancel_channel(&queue))
            .arg(actor_arg(by)?)
            .arg(HISTORY_LIMIT);
        let (kind, rest) = self.verdict(call, "cancel").await?;
        Ok(match (text(&kind)?, rest) {
            ("cancelled", Some(r)) => {
                CancelOutcome::Cancelled(Box::new(record_of(bytes(&r)?, id, &queue)?))
            }
            ("requested", Some(r)) => {
                CancelOutcome::Requested(Box::new(record_of(bytes(&r)?, id, &queue)?))
            }
            ("conflict", Some(s)) => CancelOutcome::Conflict(text(&s)?.parse().map_err(corrupt)?),
            ("missing", _) => CancelOutcome::NotFound,
            _ => return Err(corrupt("unexpected answer to cancel")),
        })
    }

    /// [`Store::retry`](errand_core::Store::retry).
    pub(super) async fn retry_by(
        &self,
        id: TaskId,
        by: &Owner,
    ) -> Result<RetryOutcome, StoreError> {
        let Some(queue) = self.find(id).await? else {
            return Ok(RetryOutcome::NotFound);
        };
        let scripts = self.inner.redis.scripts();
        let mut call = scripts
            .retry
            .call(&self.keys().base(&queue), self.now_arg());
        call.arg(id.to_string())
            .arg(actor_arg(by)?)
            .arg(HISTORY_LIMIT);
        let (kind, rest) = self.verdict(call, "retry").await?;
        Ok(match (text(&kind)?, rest) {
            ("requeued", Some(r)) => {
                RetryOutcome::Requeued(Box::new(record_of(bytes(&r)?, id, &queue)?))
            }
            ("conflict", Some(s)) => RetryOutcome::Conflict(text(&s)?.parse().map_err(corrupt)?),
            ("missing", _) => RetryOutcome::NotFound,
            _ => return Err(corrupt("unexpected answer to retry")),
        })
    }

    /// Runs one script call whose answer is `[verdict, detail?]` (cancel, retry).
    async fn verdict(
        &self,
        call: Call<'_>,
        what: &str,
    ) -> Result<(Value, Option<Value>), StoreError> {
        let mut answer = array(self.run_one(call, what).await?)?.into_iter();
        let kind = answer
            .next()
            .ok_or_else(|| corrupt(format!("empty answer to {what}")))?;
        Ok((kind, answer.next()))
    }

    /// Runs one script call (named `what` in errors) and returns its answer.
    pub(super) async fn run_one(&self, call: Call<'_>, what: &str) -> Result<Value, StoreError> {
        self.inner
            .redis
            .run(&[], vec![call])
            .await?
            .pop()
            .ok_or_else(|| corrupt(format!("no answer to {what}")))
    }
}
