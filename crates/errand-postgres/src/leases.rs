//! Claims, heartbeats and reports: one statement per batch. A claim takes the oldest due
//! rows with `FOR UPDATE SKIP LOCKED`, so concurrent claims never wait on each other nor take
//! the same task, and gives each a random lease token; heartbeats and reports only touch rows
//! whose token is the one they carry.

use crate::enqueue::after;
use crate::error::Result;
use crate::record::{claimed, json};
use crate::signals::Effects;
use crate::store::PostgresStore;
use chrono::{DateTime, Utc};
use errand_core::{ClaimRequest, Claimed, Lease, LeaseState, LeaseToken, StatusUpdate, TaskId};
use sqlx_core::query::Query;
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_postgres::{PgArguments, PgConnection, PgRow, Postgres};
use std::collections::HashMap;
use std::time::Duration;

/// How many tasks `request` may claim: its limit, at most 10,000; none without queues.
pub(crate) fn claim_limit(request: &ClaimRequest) -> usize {
    if request.queues.is_empty() {
        0
    } else {
        request.limit.min(10_000)
    }
}

/// `sql` (a statement that claims with the parameters of `sql/claim.sql`, $1 to $6) with the
/// claim's parameters bound: `request`'s queues, limit and lease, fresh lease tokens, at `now`.
pub(crate) fn claim_query<'q>(
    sql: &'q str,
    request: &'q ClaimRequest,
    now: DateTime<Utc>,
) -> Query<'q, Postgres, PgArguments> {
    let limit = claim_limit(request);
    let tokens: Vec<uuid::Uuid> = (0..limit)
        .map(|_| uuid::Uuid::from_u128(LeaseToken::random().as_u128()))
        .collect();
    let mut queues = request.queues.clone();
    queues.sort_unstable();
    queues.dedup();
    query(sql)
        .bind(queues)
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(tokens)
        .bind(after(now, request.lease))
        .bind(&request.worker_id)
}

/// The tasks of a claim's rows, in claim order; rows without a task (`id` NULL) are skipped.
pub(crate) fn in_claim_order(rows: &[PgRow]) -> Result<Vec<Claimed>> {
    let mut ranked = Vec::with_capacity(rows.len());
    for row in rows {
        if row.try_get::<Option<uuid::Uuid>, _>("id")?.is_some() {
            ranked.push((row.try_get::<i64, _>("rn")?, claimed(row)?));
        }
    }
    ranked.sort_by_key(|(rank, _)| *rank);
    Ok(ranked.into_iter().map(|(_, c)| c).collect())
}

/// The columns of a lease: its task id and token.
pub(crate) fn lease_columns(
    leases: impl Iterator<Item = Lease>,
) -> (Vec<uuid::Uuid>, Vec<uuid::Uuid>) {
    leases
        .map(|l| (*l.id.as_uuid(), uuid::Uuid::from_u128(l.token.as_u128())))
        .unzip()
}

/// One state per lease, in order, from the rows (id, cancel_requested) a fenced statement
/// touched: a lease whose row it did not touch is lost.
fn lease_states(leases: &[Lease], rows: &[PgRow]) -> Result<Vec<LeaseState>> {
    let mut held = HashMap::with_capacity(rows.len());
    for row in rows {
        let id = TaskId::from_uuid(row.try_get("id")?);
        held.insert(id, row.try_get::<bool, _>("cancel_requested")?);
    }
    Ok(leases
        .iter()
        .map(|l| match held.get(&l.id) {
            Some(true) => LeaseState::CancelRequested,
            Some(false) => LeaseState::Held,
            None => LeaseState::Lost,
        })
        .collect())
}

impl PostgresStore {
    pub(crate) async fn claim_tasks(&self, request: &ClaimRequest) -> Result<Vec<Claimed>> {
        if claim_limit(request) == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.pool().begin().await?;
        query(&self.sql().claim_unflushed).execute(&mut *tx).await?;
        let claimed = self.claim_in(&mut tx, request, self.now()).await?;
        let effects = Effects {
            changed: claimed.iter().map(|c| c.lease.id).collect(),
            ..Effects::default()
        };
        self.commit(tx, effects).await?;
        self.left_dead(claimed.len());
        Ok(claimed)
    }

    /// Claims as `request` asks inside the transaction open on `conn`, at `now`; the tasks in
    /// claim order.
    pub(crate) async fn claim_in(
        &self,
        conn: &mut PgConnection,
        request: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claimed>> {
        if claim_limit(request) == 0 {
            return Ok(Vec::new());
        }
        let rows = claim_query(&self.sql().claim, request, now)
            .fetch_all(&mut *conn)
            .await?;
        in_claim_order(&rows)
    }

    pub(crate) async fn renew(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<LeaseState>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, tokens) = lease_columns(leases.iter().copied());
        let rows = query(&self.sql().heartbeat)
            .bind(ids)
            .bind(tokens)
            .bind(after(self.now(), extend))
            .fetch_all(self.pool())
            .await?;
        lease_states(leases, &rows)
    }

    pub(crate) async fn merge_reports(
        &self,
        updates: Vec<(Lease, StatusUpdate)>,
    ) -> Result<Vec<LeaseState>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let leases: Vec<Lease> = updates.iter().map(|(l, _)| *l).collect();
        let (ids, tokens) = lease_columns(leases.iter().copied());
        let (progress, steps) = report_columns(updates.iter().map(|(_, u)| u))?;
        let mut tx = self.pool().begin().await?;
        let rows = query(&self.sql().report)
            .bind(ids)
            .bind(tokens)
            .bind(progress)
            .bind(steps)
            .bind(self.now())
            .fetch_all(&mut *tx)
            .await?;
        let states = lease_states(&leases, &rows)?;
        let changed = leases
            .iter()
            .zip(&states)
            .filter(|(_, s)| **s != LeaseState::Lost)
            .map(|(l, _)| l.id)
            .collect();
        self.commit(
            tx,
            Effects {
                changed,
                ..Effects::default()
            },
        )
        .await?;
        Ok(states)
    }
}

/// A column of JSON texts, NULL where unchanged.
pub(crate) type JsonColumn = Vec<Option<String>>;

/// The progress and steps columns of reports: JSON text, NULL where unchanged.
pub(crate) fn report_columns<'a>(
    updates: impl Iterator<Item = &'a StatusUpdate>,
) -> Result<(JsonColumn, JsonColumn)> {
    let mut progress = Vec::new();
    let mut steps = Vec::new();
    for u in updates {
        progress.push(u.progress.as_ref().map(json).transpose()?);
        steps.push(u.steps.as_ref().map(json).transpose()?);
    }
    Ok((progress, steps))
}
