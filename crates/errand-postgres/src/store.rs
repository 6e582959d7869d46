//! [`PostgresStore`]: opening the store, and [`Store`](errand_core::Store) for it. Each
//! operation lives in the module of its concept (`enqueue`, `leases`, `finish`, `actions`,
//! `read`, `watching`, `housekeeping`, `warnings`); this module holds what they share: the
//! pool, the statements, the clock and the signals.

use crate::config::PostgresConfig;
use crate::error::{PostgresError, Result};
use crate::housekeeping::Housekeeping;
use crate::migrations::migrate;
use crate::signals::{Effects, Origin, Republish, Signals, listen};
use crate::sql::{Sql, quote_ident};
use errand_core::StoreError;
use errand_core::{Clock, TaskId, TaskRecord};
use futures::stream::BoxStream;
use sqlx_core::query::query;
use sqlx_core::row::Row;
use sqlx_postgres::{PgConnectOptions, PgPool, PgPoolOptions, Postgres};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// errand's durable store on Postgres. Cheap to clone; clones share one pool.
///
/// Open it with [`PostgresStore::connect`] (or [`PostgresStore::with_pool`] to share the
/// service's pool); it creates or upgrades its schema first.
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) reader: Reader,
    /// The notification channel of the schema.
    pub(crate) channel: Arc<str>,
    /// This instance's id in the notifications it sends.
    pub(crate) origin: Arc<str>,
    pub(crate) poll_interval: Duration,
    /// Whether a listener hears other processes' notifications (not `poll_only`).
    pub(crate) listening: bool,
    pub(crate) housekeeping: Arc<Housekeeping>,
    _listener: Arc<Listener>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// What reading records takes: shared by the store and its listener task.
#[derive(Clone)]
pub(crate) struct Reader {
    pub(crate) pool: PgPool,
    pub(crate) sql: Arc<Sql>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) signals: Arc<Signals>,
}

impl Reader {
    /// The records of `ids` that exist and have not expired, in no particular order.
    pub(crate) async fn records(&self, ids: &[TaskId]) -> Result<Vec<TaskRecord>> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
        let rows = query(&self.sql.records)
            .bind(ids)
            .bind(self.clock.now())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(crate::record::record).collect()
    }
}

impl Republish for Reader {
    async fn republish(&self, ids: Vec<TaskId>) {
        match self.records(&ids).await {
            Ok(records) => records
                .iter()
                .for_each(|r| self.signals.watchers.publish(r)),
            // The watchers' own polling reads the record later.
            Err(e) => tracing::debug!(error = %e, "re-reading watched tasks failed"),
        }
    }
}

/// Stops the listener task when the last clone of the store goes.
struct Listener(Option<JoinHandle<()>>);

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:pass@host/db`), creates or upgrades
    /// the schema, and (unless [`PostgresConfig::poll_only`]) starts listening for
    /// notifications. With `poll_only` its sessions keep no prepared statements either, which
    /// PgBouncer in transaction pooling mode (before 1.21) cannot route. Must be called inside
    /// a tokio runtime.
    pub async fn connect(url: &str, config: PostgresConfig) -> Result<Self> {
        let mut options: PgConnectOptions = url.parse()?;
        if config.poll_only {
            options = options.statement_cache_capacity(0);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(2))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await?;
        Self::with_pool(pool, config).await
    }

    /// The store on an existing pool (the service's own, say); otherwise as
    /// [`PostgresStore::connect`]. Unless `poll_only`, the listener holds one of its
    /// connections.
    pub async fn with_pool(pool: PgPool, config: PostgresConfig) -> Result<Self> {
        if config.schema.is_empty() {
            return Err(PostgresError::Invalid("the schema name is empty".into()));
        }
        let schema = quote_ident(&config.schema);
        migrate(&pool, &schema, &config.schema).await?;
        let reader = Reader {
            pool: pool.clone(),
            sql: Arc::new(Sql::for_schema(&schema)),
            clock: config.clock.clone(),
            signals: Arc::new(Signals::default()),
        };
        let channel = channel_name(&config.schema);
        let origin: Origin = TaskId::new().as_uuid().simple().to_string();
        let listener = (!config.poll_only).then(|| {
            tokio::spawn(listen(
                pool,
                channel.clone(),
                origin.clone(),
                reader.signals.clone(),
                reader.clone(),
            ))
        });
        Ok(Self {
            reader,
            channel: channel.into(),
            origin: origin.into(),
            poll_interval: config.poll_interval,
            listening: !config.poll_only,
            housekeeping: Arc::default(),
            _listener: Arc::new(Listener(listener)),
        })
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &PgPool {
        &self.reader.pool
    }

    pub(crate) fn sql(&self) -> &Sql {
        &self.reader.sql
    }

    /// Now, to the microsecond (what `timestamptz` keeps), so a time written and the same
    /// time kept in JSON (a history entry's) read back equal.
    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        use chrono::SubsecRound;
        self.reader.clock.now().trunc_subsecs(6)
    }

    /// Notifies `effects` inside `tx`, commits, and delivers them in this process.
    pub(crate) async fn commit(
        &self,
        mut tx: sqlx_core::transaction::Transaction<'static, Postgres>,
        effects: Effects,
    ) -> Result<()> {
        effects
            .notify(self.sql(), &mut tx, &self.channel, &self.origin)
            .await?;
        tx.commit().await?;
        self.deliver(effects).await;
        Ok(())
    }

    /// Delivers the effects of a committed write in this process.
    pub(crate) async fn deliver(&self, effects: Effects) {
        let watched = self.reader.signals.apply(effects);
        if !watched.is_empty() {
            self.reader.republish(watched).await;
        }
    }

    /// Checks that the server answers.
    pub(crate) async fn ping_server(&self) -> Result<()> {
        let row = query(&self.sql().ping).fetch_one(self.pool()).await?;
        let _: i32 = row.try_get(0)?;
        Ok(())
    }
}

/// The notification channel of `schema`: `errand.<schema>`, cut to the 63 bytes a channel
/// name may have (two schemas that share their first 56 bytes share a channel, which only
/// costs them each other's wake-ups).
fn channel_name(schema: &str) -> String {
    let mut channel = format!("errand.{schema}");
    let mut end = channel.len().min(63);
    while !channel.is_char_boundary(end) {
        end -= 1;
    }
    channel.truncate(end);
    channel
}

#[async_trait::async_trait]
impl errand_core::Store for PostgresStore {
    async fn enqueue(
        &self,
        tasks: Vec<errand_core::NewTask>,
    ) -> Result<Vec<errand_core::Enqueued>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(to) = crate::tx::hand_off_to() {
            return crate::tx::hand_off(to, self, tasks).await;
        }
        let run = async {
            let mut tx = self.pool().begin().await?;
            let done = crate::enqueue::enqueue(&mut tx, self.sql(), self.now(), &tasks).await?;
            let effects = Effects {
                work: done.iter().any(|e| !e.deduplicated),
                ..Effects::default()
            };
            self.commit(tx, effects).await?;
            Ok::<_, PostgresError>(done)
        };
        Ok(run.await?)
    }

    async fn claim(
        &self,
        request: &errand_core::ClaimRequest,
    ) -> Result<Vec<errand_core::Claimed>, StoreError> {
        Ok(self.claim_tasks(request).await?)
    }

    async fn heartbeat(
        &self,
        leases: &[errand_core::Lease],
        extend: Duration,
    ) -> Result<Vec<errand_core::LeaseState>, StoreError> {
        Ok(self.renew(leases, extend).await?)
    }

    async fn report(
        &self,
        updates: Vec<(errand_core::Lease, errand_core::StatusUpdate)>,
    ) -> Result<Vec<errand_core::LeaseState>, StoreError> {
        Ok(self.merge_reports(updates).await?)
    }

    async fn complete(
        &self,
        completions: Vec<errand_core::Completion>,
    ) -> Result<Vec<errand_core::CompleteResult>, StoreError> {
        Ok(self.complete_attempts(completions).await?)
    }

    fn claims_with_completions(&self) -> bool {
        true
    }

    async fn complete_and_claim(
        &self,
        completions: Vec<errand_core::Completion>,
        claim: &errand_core::ClaimRequest,
    ) -> Result<(Vec<errand_core::CompleteResult>, Vec<errand_core::Claimed>), StoreError> {
        Ok(self.complete_then_claim(completions, claim).await?)
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.get_record(id).await?)
    }

    async fn list(&self, query: &errand_core::ListQuery) -> Result<errand_core::Page, StoreError> {
        Ok(self.list_records(query).await?)
    }

    async fn cancel(
        &self,
        id: TaskId,
        by: &errand_core::Owner,
    ) -> Result<errand_core::CancelOutcome, StoreError> {
        Ok(self.cancel_task(id, by).await?)
    }

    async fn retry(
        &self,
        id: TaskId,
        by: &errand_core::Owner,
    ) -> Result<errand_core::RetryOutcome, StoreError> {
        Ok(self.retry_task(id, by).await?)
    }

    async fn watch(&self, id: TaskId) -> Result<errand_core::EventStream, StoreError> {
        Ok(self.watch_stream(id).await?)
    }

    async fn cancellations(&self) -> Result<BoxStream<'static, TaskId>, StoreError> {
        Ok(self.reader.signals.cancels.subscribe())
    }

    async fn work_signal(
        &self,
        _queues: &[String],
    ) -> Result<Box<dyn errand_core::WorkSignal>, StoreError> {
        let poll = self.poll_interval;
        Ok(self.reader.signals.work.signal(move || Some(poll)))
    }

    async fn reap(&self) -> Result<errand_core::Reaped, StoreError> {
        Ok(self.reap_lapsed().await?)
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        Ok(self.purge().await?)
    }

    async fn depth(&self) -> Result<errand_core::QueueDepth, StoreError> {
        Ok(self.queue_depth().await?)
    }

    async fn counts(
        &self,
        owner: &errand_core::OwnerFilter,
    ) -> Result<errand_core::StateCounts, StoreError> {
        Ok(self.state_counts(owner).await?)
    }

    async fn queues(&self) -> Result<Vec<errand_core::QueueCounts>, StoreError> {
        Ok(self.queue_counts().await?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.ping_server().await?)
    }

    async fn healthy(&self) -> Result<(), StoreError> {
        // Nothing of the store lives only in this process: a server that cannot be reached
        // now is the server's state, not this process's.
        Ok(())
    }

    async fn warnings(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.risky_settings().await?)
    }

    async fn get_meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.meta(name).await?)
    }

    async fn swap_meta(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.swap(name, expected, value).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::channel_name;

    #[test]
    fn channel_names_fit_postgres() {
        assert_eq!(channel_name("errand"), "errand.errand");
        let long = "é".repeat(40);
        let channel = channel_name(&long);
        assert!(
            channel.len() <= 63 && channel.starts_with("errand.é"),
            "{channel}"
        );
    }
}
