//! Enqueueing inside the caller's transaction: [`SubmitInTx::in_tx`] finishes an
//! [`errand_core::Submit`] (built as usual by [`errand_core::Client::submit`], with its
//! context, key, delay...) by writing the task with the service's own transaction. The task
//! exists if and only if that transaction commits; its wake-up (`NOTIFY`) is sent by the
//! commit, so no worker looks for it before it is there.
//!
//! How: `in_tx` runs the submission with a hand-off in scope (a task-local), and the
//! [`PostgresStore`] the client submits to gives the tasks it is asked to enqueue to that
//! hand-off instead of writing them itself; `in_tx` writes them into the transaction and hands
//! the result back. (Core has no public way to take the task out of a `Submit`; with one,
//! this would be a plain function.)

use crate::enqueue::enqueue;
use crate::error::Result;
use crate::signals::{Effects, FOREIGN};
use crate::store::PostgresStore;
use errand_core::{Enqueued, NewTask, StoreError, Submit, SubmitError};
use sqlx_core::transaction::Transaction;
use sqlx_postgres::{PgConnection, Postgres};
use std::future::IntoFuture;
use tokio::sync::{mpsc, oneshot};

/// Tasks a store was asked to enqueue inside [`SubmitInTx::in_tx`].
pub(crate) struct Request {
    store: PostgresStore,
    tasks: Vec<NewTask>,
    reply: oneshot::Sender<Result<Vec<Enqueued>, StoreError>>,
}

tokio::task_local! {
    static HAND_OFF: mpsc::Sender<Request>;
}

/// Inside [`SubmitInTx::in_tx`]: where to hand the tasks to be enqueued. `None` outside it
/// (the store writes them itself).
pub(crate) fn hand_off_to() -> Option<mpsc::Sender<Request>> {
    HAND_OFF.try_with(mpsc::Sender::clone).ok()
}

/// Hands `tasks` to the caller's transaction and waits for the result.
pub(crate) async fn hand_off(
    to: mpsc::Sender<Request>,
    store: &PostgresStore,
    tasks: Vec<NewTask>,
) -> Result<Vec<Enqueued>, StoreError> {
    let gone = || StoreError::Backend("the caller's transaction went away".into());
    let (reply, answer) = oneshot::channel();
    let request = Request {
        store: store.clone(),
        tasks,
        reply,
    };
    to.send(request).await.map_err(|_| gone())?;
    answer.await.unwrap_or_else(|_| Err(gone()))
}

/// Enqueue a submission in the caller's transaction.
pub trait SubmitInTx {
    /// Enqueues the task in `tx`, the caller's transaction (at the default isolation level,
    /// read committed): it is stored, and workers are woken, when `tx` commits; it never
    /// existed if `tx` rolls back or its connection dies first. An idempotency key holds
    /// across transactions: while another transaction that enqueued the same key is open,
    /// this one waits for it, then returns its task if it committed.
    ///
    /// The client must submit to a [`PostgresStore`] (or a wrapper that passes `enqueue` on
    /// to one) on the database of `tx`; any other store is refused, after having stored the
    /// task outside the transaction.
    fn in_tx(
        self,
        tx: &mut Transaction<'_, Postgres>,
    ) -> impl Future<Output = Result<Enqueued, SubmitError>> + Send;
}

impl SubmitInTx for Submit<'_> {
    async fn in_tx(self, tx: &mut Transaction<'_, Postgres>) -> Result<Enqueued, SubmitError> {
        let (to, mut requests) = mpsc::channel(1);
        let mut submit = std::pin::pin!(HAND_OFF.scope(to, self.into_future()));
        let mut served = false;
        loop {
            tokio::select! {
                result = &mut submit => {
                    return match result {
                        Ok(_) if !served => Err(StoreError::Invalid(
                            "in_tx needs a client of a PostgresStore: this client's store \
                             stored the task outside the transaction".into(),
                        ).into()),
                        other => other,
                    };
                }
                Some(request) = requests.recv() => {
                    served = true;
                    let done = in_tx(&mut *tx, &request.store, &request.tasks).await;
                    let _ = request.reply.send(done.map_err(StoreError::from));
                }
            }
        }
    }
}

/// Writes `tasks` and their wake-up in `conn`'s open transaction.
async fn in_tx(
    conn: &mut PgConnection,
    store: &PostgresStore,
    tasks: &[NewTask],
) -> Result<Vec<Enqueued>> {
    let done = enqueue(&mut *conn, store.sql(), store.now(), tasks).await?;
    let effects = Effects {
        work: done.iter().any(|e| !e.deduplicated),
        ..Effects::default()
    };
    // Sent as nobody's, so this process's listener delivers it too, after the commit.
    effects
        .notify(store.sql(), conn, &store.channel, FOREIGN)
        .await?;
    Ok(done)
}
