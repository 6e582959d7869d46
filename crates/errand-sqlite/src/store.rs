//! [`SqliteStore`]: errand's default store, durable in one SQLite file.

use crate::codec::micros;
use crate::config::SqliteConfig;
use crate::database::Db;
use crate::ending;
use crate::error::SqliteError;
use crate::ops::{self, ClaimSpec};
use crate::private;
use crate::readers::Readers;
use crate::signals::Signals;
use crate::writer::{Writer, WriterStats};
use crate::{listing, tally};
use async_trait::async_trait;
use errand_core::{
    CancelOutcome, ClaimRequest, Claimed, Clock, CompleteResult, Completion, Enqueued, EventStream,
    Lease, LeaseState, ListQuery, NewTask, Owner, Page, QueueDepth, Reaped, RetryOutcome,
    StatusUpdate, Store, StoreError, TaskId, TaskRecord, WorkSignal,
};
use errand_core::{OwnerFilter, QueueCounts, StateCounts};
use futures::stream::BoxStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Lapsed leases handled per writer transaction by a reaper pass, so that reclaiming the
/// tasks of many crashed workers never holds the writer for long.
const REAP_CHUNK: i64 = 1_000;

/// Expired records deleted per writer transaction by a purge, so a large purge never holds
/// the writer for long.
const PURGE_CHUNK: i64 = 5_000;

/// A durable [`Store`] in one SQLite file (WAL mode), shared by clones and safe to use from
/// several processes at once.
///
/// - Writes go to one writer thread that commits everything queued in one transaction, so
///   concurrent enqueues, claims and completions share commits.
/// - Reads (`get`, `list`, `depth`, `ping`) use a small pool of read-only connections.
/// - Workers of this process wake at once on new work and when a delayed task falls due;
///   workers of other processes sharing the file find work at their poll interval.
/// - Watchers and cancellation requests reach this process's listeners; workers of other
///   processes learn of a cancellation at their next heartbeat.
///
/// ```
/// use errand_core::Store;
/// use errand_sqlite::{SqliteConfig, SqliteStore};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = SqliteStore::open(dir.path().join("errand.db"), SqliteConfig::default())?;
/// store.ping().await?;
/// assert_eq!(store.depth().await?.waiting, 0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Db>,
    clock: Arc<dyn Clock>,
    writer: Writer,
    readers: Arc<Readers>,
    signals: Arc<Signals>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.db.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file (mode 0600) and its directory (0700) if
    /// needed, taking group and other permissions away from an existing file, and upgrading
    /// its schema.
    ///
    /// **Blocks the calling thread**: it does file I/O, and while another process holds a lock
    /// on the file (it is migrating the schema, or in a long write) each step that needs the
    /// lock (switching to WAL, the migration) waits up to
    /// [`SqliteConfig::busy_timeout`] (5 s by default) before it fails. From async code, call
    /// it through [`tokio::task::spawn_blocking`] so no runtime thread is held:
    ///
    /// ```
    /// # use errand_sqlite::{SqliteConfig, SqliteStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("errand.db");
    /// let store =
    ///     tokio::task::spawn_blocking(move || SqliteStore::open(path, SqliteConfig::default()))
    ///         .await??;
    /// # let _ = store; Ok(()) }
    /// ```
    ///
    /// Fails with a [`SqliteError`] naming the file and the cause when the directory cannot be
    /// created, the file cannot be written, is not an errand database, is damaged, or is
    /// locked by another process for longer than the busy timeout while it needs migrating.
    pub fn open(path: impl AsRef<Path>, config: SqliteConfig) -> Result<Self, SqliteError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private::private_dir(dir).map_err(|source| SqliteError::CreateDir {
                dir: dir.to_path_buf(),
                path: path.clone(),
                source,
            })?;
        }
        private::private_file(&path).map_err(|source| SqliteError::Private {
            path: path.clone(),
            source,
        })?;
        let db = Arc::new(Db {
            path,
            busy_timeout: config.busy_timeout,
        });
        let conn = db.open_writer(&config)?;
        let readers = Arc::new(Readers::open(db.clone(), config.read_connections)?);
        let signals = Arc::new(Signals::default());
        let writer = Writer::spawn(conn, db.clone(), signals.clone(), config.max_batch)?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                clock: config.clock,
                writer,
                readers,
                signals,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.db.path
    }

    /// What the writer thread did so far: transactions, operations, and where the time went.
    pub fn writer_stats(&self) -> WriterStats {
        self.inner.writer.stats()
    }

    /// Finishes the writes already queued, then closes the database. Every clone is closed:
    /// later calls fail with [`StoreError::Unavailable`]. Dropping the last clone closes the
    /// store too, without waiting.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.readers.close();
    }

    fn now(&self) -> i64 {
        micros(self.inner.clock.now())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn enqueue(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        self.inner
            .writer
            .run(move |cx| ops::enqueue(cx, tasks, now))
            .await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        if request.limit == 0 || request.queues.is_empty() {
            return Ok(Vec::new());
        }
        let mut queues = request.queues.clone();
        queues.sort_unstable();
        queues.dedup();
        let spec = ClaimSpec {
            queues,
            limit: request.limit,
            lease: request.lease,
            worker_id: request.worker_id.clone(),
        };
        let now = self.now();
        self.inner
            .writer
            .run(move |cx| ops::claim(cx, spec, now))
            .await
    }

    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let leases = leases.to_vec();
        let now = self.now();
        self.inner
            .writer
            .run(move |cx| ops::heartbeat(cx, leases, extend, now))
            .await
    }

    async fn report(
        &self,
        updates: Vec<(Lease, StatusUpdate)>,
    ) -> Result<Vec<LeaseState>, StoreError> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        self.inner
            .writer
            .run(move |cx| ops::report(cx, updates, now))
            .await
    }

    async fn complete(
        &self,
        completions: Vec<Completion>,
    ) -> Result<Vec<CompleteResult>, StoreError> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        self.inner
            .writer
            .run(move |cx| ending::complete(cx, completions, now))
            .await
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let now = self.now();
        self.inner
            .readers
            .run(move |conn| ops::get(conn, id, now))
            .await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let query = query.clone();
        let now = self.now();
        self.inner
            .readers
            .run(move |conn| listing::list(conn, &query, now))
            .await
    }

    async fn cancel(&self, id: TaskId, by: &Owner) -> Result<CancelOutcome, StoreError> {
        let now = self.now();
        let by = by.clone();
        self.inner
            .writer
            .run(move |cx| ops::cancel(cx, id, by, now))
            .await
    }

    async fn retry(&self, id: TaskId, by: &Owner) -> Result<RetryOutcome, StoreError> {
        let now = self.now();
        let by = by.clone();
        self.inner
            .writer
            .run(move |cx| ops::retry(cx, id, by, now))
            .await
    }

    /// Subscribes, then waits for the writer's current batch: that batch may have changed
    /// the task after deciding that nobody watched it, and a caller reading the record once
    /// this returns must see that change (later batches announce theirs to this watcher).
    async fn watch(&self, id: TaskId) -> Result<EventStream, StoreError> {
        let events = self.inner.signals.watchers.subscribe(id);
        self.inner.writer.barrier().await?;
        Ok(events)
    }

    async fn cancellations(&self) -> Result<BoxStream<'static, TaskId>, StoreError> {
        Ok(self.inner.signals.cancels.subscribe())
    }

    async fn work_signal(&self, queues: &[String]) -> Result<Box<dyn WorkSignal>, StoreError> {
        let inner = self.inner.clone();
        let queues = queues.to_vec();
        Ok(self.inner.signals.work.signal(move || {
            let due = inner.signals.due.earliest(&queues)?;
            let wait = due.saturating_sub(micros(inner.clock.now())).max(0);
            Some(Duration::from_micros(wait as u64))
        }))
    }

    async fn reap(&self) -> Result<Reaped, StoreError> {
        let now = self.now();
        let mut reaped = Reaped::default();
        loop {
            let r = self
                .inner
                .writer
                .run(move |cx| ops::reap(cx, now, REAP_CHUNK))
                .await?;
            reaped.requeued += r.requeued;
            reaped.failed += r.failed;
            reaped.cancelled += r.cancelled;
            if r.requeued + r.failed + r.cancelled < REAP_CHUNK as u64 {
                return Ok(reaped);
            }
        }
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = self.now();
        let mut purged = 0;
        loop {
            let n = self
                .inner
                .writer
                .run(move |cx| ops::purge_expired(cx, now, PURGE_CHUNK))
                .await?;
            purged += n;
            if n < PURGE_CHUNK as u64 {
                return Ok(purged);
            }
        }
    }

    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        self.inner.readers.run(ops::depth).await
    }

    async fn counts(&self, owner: &OwnerFilter) -> Result<StateCounts, StoreError> {
        let owner = owner.clone();
        self.inner
            .readers
            .run(move |conn| tally::counts(conn, &owner))
            .await
    }

    async fn queues(&self) -> Result<Vec<QueueCounts>, StoreError> {
        self.inner.readers.run(tally::queues).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.healthy().await?;
        self.inner.readers.run(ops::ping).await
    }

    /// Fails once the writer thread has stopped (the store was closed, or it died): nothing
    /// can be written through this store again.
    async fn healthy(&self) -> Result<(), StoreError> {
        if self.inner.writer.is_alive() {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "the writer of the task database {} has stopped; restart the process",
                self.inner.db.path.display()
            )))
        }
    }

    async fn warnings(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    async fn get_meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.to_string();
        self.inner
            .readers
            .run(move |conn| ops::get_meta(conn, &name))
            .await
    }

    async fn swap_meta(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        let (name, expected, value) = (
            name.to_string(),
            expected.map(str::to_string),
            value.to_string(),
        );
        self.inner
            .writer
            .run(move |cx| ops::swap_meta(cx, &name, expected.as_deref(), &value))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use errand_core::TaskState;
    use futures::{FutureExt, StreamExt};
    use std::task::{Context, Poll, Waker};

    /// The server's order: watch, then read. A watch opened while a batch that changed the
    /// task is still uncommitted must not return before that batch commits: its change was
    /// not announced to this watcher (the batch checked for watchers before the subscription),
    /// so the read after the watch has to show it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watch_opened_during_a_batch_sees_that_batchs_change() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path().join("errand.db"), SqliteConfig::default())
            .expect("store opens");
        let args = serde_json::value::to_raw_value(&serde_json::json!({})).expect("JSON");
        let task = NewTask::new("t", args);
        let id = task.id;
        store.enqueue(vec![task]).await.expect("enqueue");

        // A batch cancels the task, then holds the writer before it commits.
        let (ran, has_run) = tokio::sync::oneshot::channel();
        let (go, wait_for_go) = std::sync::mpsc::channel::<()>();
        let now = store.now();
        let batch = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .inner
                    .writer
                    .run(move |cx| {
                        let outcome = ops::cancel(cx, id, errand_core::Owner::default(), now);
                        let _ = ran.send(());
                        let _ = wait_for_go.recv();
                        outcome
                    })
                    .await
            }
        });
        has_run.await.expect("the batch ran");

        let mut opening = store.watch(id);
        let opened_at_once = opening.poll_unpin(&mut Context::from_waker(Waker::noop()));
        // What a read right after a watch that returned now shows: the state before the
        // batch, which is still uncommitted.
        let early_read = match opened_at_once {
            Poll::Ready(_) => Some(store.get(id).await.expect("get")),
            Poll::Pending => None,
        };
        go.send(()).expect("the batch waits");
        let outcome = batch.await.expect("batch task").expect("cancel");
        assert!(
            matches!(outcome, CancelOutcome::Cancelled(_)),
            "{outcome:?}"
        );
        let mut events = match opened_at_once {
            Poll::Ready(events) => events,
            Poll::Pending => opening.await,
        }
        .expect("watch");
        let read = match early_read {
            Some(read) => read,
            None => store.get(id).await.expect("get"),
        }
        .expect("the task is stored");
        // The batch committed and announced its effects before it answered.
        let event = events.next().now_or_never().flatten();
        assert!(
            read.status == TaskState::Cancelled
                || event.is_some_and(|r| r.status == TaskState::Cancelled),
            "neither the read ({:?}) nor an event shows the cancel",
            read.status
        );
    }
}
