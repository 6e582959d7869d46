//! The writer: one thread owns the read-write connection, and every write goes through it.
//!
//! Callers queue operations and await their answers. The thread takes everything queued (up
//! to `max_batch` operations), runs it in one `BEGIN IMMEDIATE` transaction, each operation
//! inside its own savepoint so a failing one is undone alone, commits once, tells the
//! process's listeners what changed ([`Effects`]), and only then answers each caller. One
//! commit per batch instead of one per operation is what makes SQLite fast here: under load,
//! hundreds of claims, completions and enqueues share one commit.
//!
//! Whether a change is announced to a task's watchers is decided while the operation runs,
//! before the commit. [`Writer::barrier`] lets a new watcher wait until every batch that may
//! have decided without it has committed.
//!
//! If the thread is gone (the store was closed, or it panicked), calls fail with
//! [`StoreError::Unavailable`] instead of waiting forever.

use crate::database::Db;
use crate::error::{OpError, SqliteError, duplicate};
use crate::held::Held;
use crate::ops;
use crate::signals::{Effects, Signals};
use crate::tally::Tally;
use errand_core::{StoreError, TaskId};
use rusqlite::Connection;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;
use tokio::sync::oneshot;
use tracing::warn;

/// What the writer did since the store was opened: how many transactions, how big, and where
/// their time went. See [`SqliteStore::writer_stats`](crate::SqliteStore::writer_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriterStats {
    /// Transactions committed or attempted.
    pub transactions: u64,
    /// Operations run in them (an enqueue of many tasks is one operation).
    pub operations: u64,
    /// The most operations one transaction carried.
    pub largest_batch: u64,
    /// Microseconds spent running operations' SQL.
    pub execute_micros: u64,
    /// Microseconds spent committing (appending to the WAL, and checkpoints).
    pub commit_micros: u64,
    /// Transactions that failed as a whole (could not begin or commit).
    pub failed_transactions: u64,
}

#[derive(Debug, Default)]
struct Counters {
    transactions: AtomicU64,
    operations: AtomicU64,
    largest_batch: AtomicU64,
    execute_micros: AtomicU64,
    commit_micros: AtomicU64,
    failed_transactions: AtomicU64,
}

/// The handle callers use to queue writes.
#[derive(Debug)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Msg>,
    alive: Arc<AtomicBool>,
    counters: Arc<Counters>,
    db: Arc<Db>,
}

enum Msg {
    Job(Box<dyn Job>),
    /// Answered as soon as the thread takes it: the batch before it has committed by then.
    Barrier(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Job(_) => "Job",
            Msg::Barrier(_) => "Barrier",
            Msg::Close(_) => "Close",
        })
    }
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn spawn(
        conn: Connection,
        db: Arc<Db>,
        signals: Arc<Signals>,
        max_batch: usize,
    ) -> Result<Self, SqliteError> {
        let (queue, rx) = mpsc::channel();
        let alive = Arc::new(AtomicBool::new(true));
        let counters = Arc::new(Counters::default());
        let thread = WriterThread {
            conn,
            rx,
            signals,
            db: db.clone(),
            counters: counters.clone(),
            held: Held::default(),
            max_batch: max_batch.max(1),
            _alive: AliveGuard(alive.clone()),
        };
        std::thread::Builder::new()
            .name("errand-sqlite-writer".into())
            .spawn(move || thread.run())
            .map_err(|source| SqliteError::Thread {
                path: db.path.clone(),
                source,
            })?;
        Ok(Self {
            queue,
            alive,
            counters,
            db,
        })
    }

    /// Runs `work` in the writer's next transaction and returns its result once committed.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCx<'_>) -> Result<T, OpError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Msg::Job(Box::new(Pending { work, reply })))
            .map_err(|_| self.gone())?;
        answer.await.map_err(|_| self.gone())?
    }

    /// Returns once every batch that was running or queued when it was called has committed
    /// (or failed) and its effects were announced; batches after it run entirely after the
    /// call. Costs no transaction.
    pub(crate) async fn barrier(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Msg::Barrier(reply))
            .map_err(|_| self.gone())?;
        answer.await.map_err(|_| self.gone())
    }

    /// Lets the writer finish what is queued, then stops it and closes its connection.
    pub(crate) async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.queue.send(Msg::Close(ack)).is_ok() {
            let _ = done.await;
        }
    }

    /// Whether the writer thread still runs.
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> WriterStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WriterStats {
            transactions: get(&c.transactions),
            operations: get(&c.operations),
            largest_batch: get(&c.largest_batch),
            execute_micros: get(&c.execute_micros),
            commit_micros: get(&c.commit_micros),
            failed_transactions: get(&c.failed_transactions),
        }
    }

    fn gone(&self) -> StoreError {
        StoreError::Unavailable(format!(
            "the writer of the task database {} has stopped (the store was closed or its writer thread failed)",
            self.db.path.display()
        ))
    }
}

/// What a write operation sees inside the writer's transaction.
pub(crate) struct WriteCx<'a> {
    /// The read-write connection, inside the batch's transaction and the operation's
    /// savepoint.
    pub(crate) conn: &'a Connection,
    /// What the operation changed, announced after the commit.
    pub(crate) effects: Effects,
    /// The operation's state changes, added to the counters before the commit if it is kept.
    pub(crate) tally: Tally,
    /// The owner and queue of the tasks claimed here (kept across transactions).
    pub(crate) held: &'a Held,
    signals: &'a Signals,
}

impl WriteCx<'_> {
    /// Notes that task `id` changed: its watchers, if any, get the new record after the
    /// commit.
    pub(crate) fn changed(&mut self, id: TaskId) -> Result<(), OpError> {
        if self.signals.watchers.is_watched(id) {
            let record = ops::record(self.conn, id)?;
            self.effects.records.push(record);
        }
        Ok(())
    }
}

/// A queued operation with its caller's reply channel.
trait Job: Send {
    /// Runs the operation; the answer is sent once the transaction's fate is known.
    fn run(self: Box<Self>, cx: &mut WriteCx<'_>, db: &Db) -> Box<dyn Answer>;
    /// Fails the operation without running it.
    fn refuse(self: Box<Self>, error: StoreError);
}

/// An operation's result, waiting for the commit.
trait Answer: Send {
    /// Whether the operation itself succeeded (its savepoint is kept).
    fn succeeded(&self) -> bool;
    /// Answers the caller: its result if the transaction committed, else `failure`.
    fn send(self: Box<Self>, failure: Option<&StoreError>);
}

struct Pending<T, F> {
    work: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut WriteCx<'_>) -> Result<T, OpError> + Send + 'static,
{
    fn run(self: Box<Self>, cx: &mut WriteCx<'_>, db: &Db) -> Box<dyn Answer> {
        let result = (self.work)(cx).map_err(|e| db.error(e));
        Box::new(Ready {
            result,
            reply: self.reply,
        })
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

struct Ready<T> {
    result: Result<T, StoreError>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send> Answer for Ready<T> {
    fn succeeded(&self) -> bool {
        self.result.is_ok()
    }

    fn send(self: Box<Self>, failure: Option<&StoreError>) {
        let result = match (self.result, failure) {
            (Ok(_), Some(e)) => Err(duplicate(e)),
            (result, _) => result,
        };
        // The caller may have given up waiting; the work is done either way.
        let _ = self.reply.send(result);
    }
}

/// Marks the writer dead when its thread ends, however it ends.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// What became of one job in the batch's transaction.
enum Ran {
    /// It succeeded; its changes stay and its effects are announced after the commit.
    Kept(Box<dyn Answer>, Effects, Tally),
    /// It failed and its changes were undone; the rest of the batch goes on.
    Undone(Box<dyn Answer>),
    /// The transaction itself is lost: the batch fails with the error.
    Lost(Option<Box<dyn Answer>>, StoreError),
}

struct WriterThread {
    conn: Connection,
    rx: mpsc::Receiver<Msg>,
    signals: Arc<Signals>,
    db: Arc<Db>,
    counters: Arc<Counters>,
    held: Held,
    max_batch: usize,
    _alive: AliveGuard,
}

impl WriterThread {
    fn run(self) {
        let mut jobs: Vec<Box<dyn Job>> = Vec::with_capacity(self.max_batch);
        let mut next = self.rx.recv().ok();
        while let Some(msg) = next.take() {
            let mut close = None;
            match msg {
                Msg::Job(job) => jobs.push(job),
                // Between batches: the previous one is committed, the next has not begun.
                Msg::Barrier(reply) => {
                    let _ = reply.send(());
                }
                Msg::Close(ack) => close = Some(ack),
            }
            while close.is_none() && jobs.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(Msg::Job(job)) => jobs.push(job),
                    Ok(Msg::Barrier(reply)) => {
                        let _ = reply.send(());
                    }
                    Ok(Msg::Close(ack)) => close = Some(ack),
                    Err(_) => break,
                }
            }
            if !jobs.is_empty() {
                self.batch(&mut jobs);
            }
            if let Some(ack) = close {
                // Dropping the connection closes the file (checkpointing the WAL if this was
                // the last connection); only then is the caller told.
                drop(self);
                let _ = ack.send(());
                return;
            }
            next = self.rx.recv().ok();
        }
    }

    /// Runs `jobs` in one transaction and answers them.
    fn batch(&self, jobs: &mut Vec<Box<dyn Job>>) {
        let began = Instant::now();
        let count = jobs.len() as u64;
        let c = &self.counters;
        c.transactions.fetch_add(1, Ordering::Relaxed);
        c.operations.fetch_add(count, Ordering::Relaxed);
        c.largest_batch.fetch_max(count, Ordering::Relaxed);

        if let Err(e) = self.exec("BEGIN IMMEDIATE") {
            c.failed_transactions.fetch_add(1, Ordering::Relaxed);
            let error = self.db.error(e.into());
            warn!(%error, operations = count, "task database write failed");
            for job in jobs.drain(..) {
                job.refuse(duplicate(&error));
            }
            return;
        }
        let mut answers: Vec<Box<dyn Answer>> = Vec::with_capacity(jobs.len());
        let mut effects = Effects::default();
        let mut tally = Tally::default();
        let mut failure = None;
        for job in jobs.drain(..) {
            if let Some(error) = &failure {
                job.refuse(duplicate(error));
                continue;
            }
            match self.one(job) {
                Ran::Kept(answer, job_effects, job_tally) => {
                    effects.extend(job_effects);
                    tally.merge(job_tally);
                    answers.push(answer);
                }
                Ran::Undone(answer) => answers.push(answer),
                Ran::Lost(answer, error) => {
                    answers.extend(answer);
                    failure = Some(error);
                }
            }
        }
        let executed = began.elapsed();
        c.execute_micros
            .fetch_add(executed.as_micros() as u64, Ordering::Relaxed);
        // The counters change in the transaction that changes the rows.
        let failure = failure.or_else(|| tally.write(&self.conn).err().map(|e| self.db.error(e)));
        let failure = match failure {
            Some(e) => Some(e),
            None => self.exec("COMMIT").err().map(|e| self.db.error(e.into())),
        };
        c.commit_micros.fetch_add(
            (began.elapsed() - executed).as_micros() as u64,
            Ordering::Relaxed,
        );
        match failure {
            None => {
                self.signals.apply(effects);
                for answer in answers {
                    answer.send(None);
                }
            }
            Some(error) => {
                c.failed_transactions.fetch_add(1, Ordering::Relaxed);
                warn!(%error, operations = count, "task database write failed");
                if !self.conn.is_autocommit() {
                    let _ = self.exec("ROLLBACK");
                }
                for answer in answers {
                    answer.send(Some(&error));
                }
            }
        }
    }

    /// Runs one job inside a savepoint, which is released if the job succeeded and rolled
    /// back if it failed.
    fn one(&self, job: Box<dyn Job>) -> Ran {
        if let Err(e) = self.exec("SAVEPOINT op") {
            let error = self.db.error(e.into());
            job.refuse(duplicate(&error));
            return Ran::Lost(None, error);
        }
        let mut cx = WriteCx {
            conn: &self.conn,
            effects: Effects::default(),
            tally: Tally::default(),
            held: &self.held,
            signals: &self.signals,
        };
        let answer = job.run(&mut cx, &self.db);
        let (effects, tally) = (cx.effects, cx.tally);
        if answer.succeeded() {
            return match self.exec("RELEASE op") {
                Ok(()) => Ran::Kept(answer, effects, tally),
                Err(e) => Ran::Lost(Some(answer), self.db.error(e.into())),
            };
        }
        if self.conn.is_autocommit() {
            // A failure such as a full disk made SQLite roll back the whole transaction.
            let error = StoreError::Unavailable(format!(
                "the transaction on the task database {} was rolled back by SQLite",
                self.db.path.display()
            ));
            return Ran::Lost(Some(answer), error);
        }
        match self
            .exec("ROLLBACK TO op")
            .and_then(|()| self.exec("RELEASE op"))
        {
            Ok(()) => Ran::Undone(answer),
            Err(e) => Ran::Lost(Some(answer), self.db.error(e.into())),
        }
    }

    fn exec(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(|_| ())
    }
}
