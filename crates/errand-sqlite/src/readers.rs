//! [`Readers`]: a small pool of read-only connections. In WAL mode readers never wait for the
//! writer, so `get`, `list`, `depth` and `ping` stay fast while the writer is busy. Queries run
//! on tokio's blocking threads, never on the runtime's.

use crate::database::Db;
use crate::error::OpError;
use errand_core::StoreError;
use rusqlite::Connection;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Semaphore;

/// The pool.
#[derive(Debug)]
pub(crate) struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    db: Arc<Db>,
}

impl Readers {
    /// A pool of `size` connections, opened now so a broken file fails the open.
    pub(crate) fn open(db: Arc<Db>, size: usize) -> Result<Self, crate::SqliteError> {
        let size = size.max(1);
        let idle = (0..size)
            .map(|_| db.open_reader())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(size)),
            db,
        })
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `query` on an idle connection on a blocking thread.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, OpError> + Send + 'static,
    {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| {
            StoreError::Unavailable(format!(
                "the task database {} is closed",
                self.db.path.display()
            ))
        })?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // A connection lost to a panicking query is replaced here.
            let conn = match pool.idle().pop() {
                Some(conn) => conn,
                None => pool
                    .db
                    .open_reader()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?,
            };
            let result = query(&conn).map_err(|e| pool.db.error(e));
            if !pool.permits.is_closed() {
                pool.idle().push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("a read of the task database failed: {e}")))?
    }

    /// Closes every connection; later reads fail with `Unavailable`.
    pub(crate) fn close(&self) {
        self.permits.close();
        self.idle().clear();
    }
}
