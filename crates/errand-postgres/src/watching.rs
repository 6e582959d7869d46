//! [`Store::watch`](errand_core::Store::watch) for Postgres. A watcher hears the changes made
//! in its process at once (published after each commit), the other processes' through
//! `NOTIFY` (its listener re-reads the record), and re-reads the record every poll interval
//! in case a notification was lost. So that writers notify only changes somebody watches
//! (every `NOTIFY` serializes commits), a watcher registers in `watching` while it lives,
//! renewing the registration every [`RENEW_EVERY`] (it lapses after a minute).

use crate::error::Result;
use crate::sql::Sql;
use crate::store::PostgresStore;
use errand_core::{EventStream, TaskId};
use futures::StreamExt;
use sqlx_core::query::query;
use sqlx_postgres::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a watcher renews its registration (which lapses after a minute).
const RENEW_EVERY: Duration = Duration::from_secs(20);

/// A watcher's row in `watching`, deleted when it is dropped.
struct Registration {
    pool: PgPool,
    sql: Arc<Sql>,
    task: uuid::Uuid,
    watcher: String,
    renewed: Instant,
}

impl Registration {
    async fn start(store: &PostgresStore, task: TaskId) -> Result<Self> {
        let registration = Self {
            pool: store.pool().clone(),
            sql: store.reader.sql.clone(),
            task: *task.as_uuid(),
            watcher: format!("{}/{}", store.origin, TaskId::new()),
            renewed: Instant::now(),
        };
        registration.write().await?;
        Ok(registration)
    }

    async fn write(&self) -> Result<()> {
        query(&self.sql.watch_start)
            .bind(self.task)
            .bind(&self.watcher)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Renews the registration if it is due; a failure is retried at the next poll.
    async fn renew_if_due(&mut self) {
        if self.renewed.elapsed() >= RENEW_EVERY && self.write().await.is_ok() {
            self.renewed = Instant::now();
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Best effort: a registration left behind lapses within a minute.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (pool, sql, task) = (self.pool.clone(), self.sql.clone(), self.task);
        let watcher = std::mem::take(&mut self.watcher);
        runtime.spawn(async move {
            let _ = query(&sql.watch_stop)
                .bind(task)
                .bind(watcher)
                .execute(&pool)
                .await;
        });
    }
}

impl PostgresStore {
    /// A stream of `id`'s records: those published in this process (its own changes, and the
    /// other processes' its listener heard of), and a re-read every poll interval, without
    /// repeating a record it just delivered.
    pub(crate) async fn watch_stream(&self, id: TaskId) -> Result<EventStream> {
        let published = self.reader.signals.watchers.subscribe(id);
        let registration = match self.listening {
            true => Some(Registration::start(self, id).await?),
            false => None,
        };
        let interval = self.poll_interval;
        let polled = futures::stream::unfold(
            (self.reader.clone(), registration),
            move |(reader, mut registration)| async move {
                tokio::time::sleep(interval).await;
                if let Some(r) = &mut registration {
                    r.renew_if_due().await;
                }
                let record = reader.records(&[id]).await.ok().and_then(|mut r| r.pop());
                Some((record, (reader, registration)))
            },
        )
        .filter_map(futures::future::ready);
        Ok(futures::stream::select(published, polled)
            .scan(None::<String>, |last, record| {
                let json = serde_json::to_string(&record).ok();
                let new = json.is_none() || *last != json;
                *last = json;
                futures::future::ready(Some(new.then_some(record)))
            })
            .filter_map(futures::future::ready)
            .boxed())
    }

    /// Removes the registrations of watchers whose process died.
    pub(crate) async fn expire_watchers(&self) -> Result<()> {
        query(&self.sql().watch_expire).execute(self.pool()).await?;
        Ok(())
    }
}
