//! Pub/sub streams: watching a task (and the watcher count that makes it publish), the
//! cancellation stream and the work signal.

use super::{RedisStore, lock};
use crate::error::corrupt;
use crate::keys::check_queue;
use crate::listener::Route;
use crate::signal::RedisSignal;
use errand_core::{EventStream, StoreError, TaskId, WorkSignal};
use futures::StreamExt;
use futures::stream::BoxStream;
use redis::Value;
use std::sync::Arc;
use tokio_stream::wrappers::BroadcastStream;
use tracing::debug;

impl RedisStore {
    /// [`Store::watch`](errand_core::Store::watch).
    pub(super) async fn watch_task(&self, id: TaskId) -> Result<EventStream, StoreError> {
        // Another watcher of this task being set up finishes first, so this one joins it.
        let _setup = self.inner.watch_setup.lock(id).await;
        let rx = match self.inner.bus.join_watch(id) {
            Some(rx) => rx,
            None => {
                let Some(queue) = self.find(id).await? else {
                    return Ok(futures::stream::pending().boxed());
                };
                let channel = self.keys().event_channel(&queue, id);
                let subscription = self
                    .inner
                    .listener
                    .subscribe(vec![(channel, Route::Event(id))])
                    .await?;
                let count = self.watch_count(&queue, id, 1).await?;
                if count < 0 {
                    return Ok(futures::stream::pending().boxed());
                }
                self.inner.bus.start_watch(id, queue, subscription)
            }
        };
        let guard = Unwatch {
            store: self.clone(),
            id,
        };
        Ok(BroadcastStream::new(rx)
            .filter_map(move |r| {
                let _keep = &guard;
                // A lagging watcher skips records; the next one carries the latest state.
                futures::future::ready(r.ok())
            })
            .boxed())
    }

    /// [`Store::cancellations`](errand_core::Store::cancellations). On one Redis, it listens
    /// to the one cancellation channel. On a cluster each queue has its own, and the store
    /// follows those of the queues it claims from (see [`RedisStore::follow_cancels`]): a
    /// task's cancellation matters only to the process that holds its lease.
    pub(super) async fn cancellation_stream(
        &self,
    ) -> Result<BoxStream<'static, TaskId>, StoreError> {
        let rx = self.inner.bus.cancels();
        let subscription = match self.inner.redis.is_cluster() {
            true => None,
            false => {
                let channel = self.keys().cancel_channel("");
                Some(
                    self.inner
                        .listener
                        .subscribe(vec![(channel, Route::Cancel)])
                        .await?,
                )
            }
        };
        Ok(BroadcastStream::new(rx)
            .filter_map(move |id| {
                let _keep = &subscription;
                // A listener that falls behind skips ids; heartbeats report cancellation too.
                futures::future::ready(id.ok())
            })
            .boxed())
    }

    /// On a cluster, subscribes to the cancellation channels of `queues` not followed yet, for
    /// the store's lifetime, before it claims from them. A queue whose channel cannot be
    /// subscribed now is tried again at the next claim; meanwhile heartbeats report its
    /// cancellations.
    pub(super) async fn follow_cancels(&self, queues: &[(Arc<str>, usize)]) {
        if !self.inner.redis.is_cluster() {
            return;
        }
        let fresh: Vec<Arc<str>> = {
            let followed = lock(&self.inner.cancel_channels);
            queues
                .iter()
                .filter(|(q, _)| !followed.contains_key(q))
                .map(|(q, _)| q.clone())
                .collect()
        };
        for queue in fresh {
            let channel = self.keys().cancel_channel(&queue);
            match self
                .inner
                .listener
                .subscribe(vec![(channel, Route::Cancel)])
                .await
            {
                Ok(subscription) => {
                    lock(&self.inner.cancel_channels).insert(queue, subscription);
                }
                Err(e) => {
                    debug!(queue = %queue, error = %e, "could not follow the queue's cancellations yet");
                }
            }
        }
    }

    /// [`Store::work_signal`](errand_core::Store::work_signal).
    pub(super) async fn work_signal_for(
        &self,
        queues: &[String],
    ) -> Result<Box<dyn WorkSignal>, StoreError> {
        for q in queues {
            check_queue(q)?;
        }
        let mut receivers: Vec<_> = queues.iter().map(|q| self.inner.bus.work(q)).collect();
        for rx in &mut receivers {
            // The first wait returns at once: work may have arrived before the signal existed.
            rx.mark_changed();
        }
        let channels = queues
            .iter()
            .map(|q| (self.keys().work_channel(q), Route::Work(q.as_str().into())))
            .collect();
        let subscription = self.inner.listener.subscribe(channels).await?;
        Ok(Box::new(RedisSignal {
            receivers,
            queues: queues.to_vec(),
            redis: self.inner.redis.clone(),
            keys: self.keys().clone(),
            now: self.inner.now.clone(),
            _subscription: subscription,
        }))
    }

    /// Raises or lowers how many processes watch `id`; -1 when the task does not exist.
    async fn watch_count(&self, queue: &str, id: TaskId, delta: i64) -> Result<i64, StoreError> {
        let scripts = self.inner.redis.scripts();
        let mut call = scripts.watch.call(&self.keys().base(queue), self.now_arg());
        call.arg(id.to_string()).arg(delta);
        match self.run_one(call, "watch").await? {
            Value::Int(n) => Ok(n),
            other => Err(corrupt(format!("unexpected answer to watch: {other:?}"))),
        }
    }
}

/// Ends one watcher's stream: the process's last watcher of a task unsubscribes and lowers
/// the task's watcher count, so its changes stop being published.
struct Unwatch {
    store: RedisStore,
    id: TaskId,
}

impl Drop for Unwatch {
    fn drop(&mut self) {
        let Some(queue) = self.store.inner.bus.leave_watch(self.id) else {
            return;
        };
        // Outside a runtime the count stays raised: the task then publishes its changes to
        // nobody until it expires, which costs a little and loses nothing.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, id) = (self.store.clone(), self.id);
            runtime.spawn(async move {
                if let Err(e) = store.watch_count(&queue, id, -1).await {
                    debug!(task_id = %id, error = %e, "could not lower the task's watcher count");
                }
            });
        }
    }
}
