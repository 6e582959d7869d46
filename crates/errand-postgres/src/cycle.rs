//! A worker's steady state in one step: a batch's completions, then the claim of as many tasks
//! as they freed slots. A batch of successes (the common case) is one statement,
//! `sql/finish_and_claim.sql` (called through its function, planned once per session): one
//! round trip and one commit. A batch with other outcomes,
//! whose next states depend on the stored rows, is ended as `complete` ends it and claimed
//! after, in one transaction. Either way the two happen together or not at all.

use crate::error::Result;
use crate::leases::{claim_query, in_claim_order, lease_columns, report_columns};
use crate::signals::Effects;
use crate::store::PostgresStore;
use errand_core::{ClaimRequest, Claimed, CompleteResult, Completion, Outcome};
use sqlx_core::row::Row;
use std::collections::HashSet;

impl PostgresStore {
    pub(crate) async fn complete_then_claim(
        &self,
        completions: Vec<Completion>,
        request: &ClaimRequest,
    ) -> Result<(Vec<CompleteResult>, Vec<Claimed>)> {
        if completions
            .iter()
            .all(|c| matches!(c.outcome, Outcome::Success(_)))
        {
            return self.succeed_then_claim(completions, request).await;
        }
        let now = self.now();
        let mut tx = self.pool().begin().await?;
        let mut done = self.complete_in(&mut tx, completions, now).await?;
        let claimed = self.claim_in(&mut tx, request, now).await?;
        done.effects
            .changed
            .extend(claimed.iter().map(|c| c.lease.id));
        self.commit(tx, done.effects).await?;
        self.left_dead(done.dead + claimed.len());
        Ok((done.results, claimed))
    }

    /// Ends successful attempts and claims, with `sql/finish_and_claim.sql`.
    async fn succeed_then_claim(
        &self,
        completions: Vec<Completion>,
        request: &ClaimRequest,
    ) -> Result<(Vec<CompleteResult>, Vec<Claimed>)> {
        let now = self.now();
        let (ids, tokens) = lease_columns(completions.iter().map(|c| c.lease));
        let results: Vec<Option<String>> = completions
            .iter()
            .map(|c| match &c.outcome {
                Outcome::Success(result) => Some(result.get().to_string()),
                _ => None,
            })
            .collect();
        let (progress, steps) = report_columns(completions.iter().map(|c| &c.report))?;
        let rows = claim_query(&self.sql().finish_and_claim_call, request, now)
            .bind(ids)
            .bind(tokens)
            .bind(results)
            .bind(progress)
            .bind(steps)
            .fetch_all(self.pool())
            .await?;
        let claimed = in_claim_order(&rows)?;
        let watched = match rows.first() {
            Some(row) => row.try_get("watched")?,
            None => false,
        };
        let mut ended = HashSet::new();
        for row in &rows {
            let ids: Option<Vec<uuid::Uuid>> = row.try_get("finished")?;
            let tokens: Option<Vec<uuid::Uuid>> = row.try_get("finished_tokens")?;
            if let (Some(ids), Some(tokens)) = (ids, tokens) {
                ended = ids.into_iter().zip(tokens).collect();
                break;
            }
        }
        let results = applied_once(&completions, ended);
        let mut effects = Effects::default();
        effects.changed.extend(
            completions
                .iter()
                .zip(&results)
                .filter(|(_, r)| **r == CompleteResult::Applied)
                .map(|(c, _)| c.lease.id),
        );
        effects.changed.extend(claimed.iter().map(|c| c.lease.id));
        self.left_dead(effects.changed.len());
        if watched {
            self.announce(&effects).await;
        }
        self.deliver(effects).await;
        Ok((results, claimed))
    }

    /// Tells the other processes' watchers about committed changes. Only a hint (their
    /// watchers also read the records now and then), so a failure is logged, not returned: the
    /// write it follows is committed.
    async fn announce(&self, effects: &Effects) {
        let sent = async {
            let mut conn = self.pool().acquire().await?;
            effects
                .notify(self.sql(), &mut conn, &self.channel, &self.origin)
                .await
        };
        if let Err(e) = sent.await {
            tracing::debug!(error = %e, "announcing changes to other processes failed");
        }
    }
}

/// One result per completion: `Applied` for the first completion of each lease in `ended`
/// (the leases whose attempts the statement ended), `Stale` for the others.
fn applied_once(
    completions: &[Completion],
    mut ended: HashSet<(uuid::Uuid, uuid::Uuid)>,
) -> Vec<CompleteResult> {
    completions
        .iter()
        .map(|c| {
            let key = (
                *c.lease.id.as_uuid(),
                uuid::Uuid::from_u128(c.lease.token.as_u128()),
            );
            if ended.remove(&key) {
                CompleteResult::Applied
            } else {
                CompleteResult::Stale
            }
        })
        .collect()
}
