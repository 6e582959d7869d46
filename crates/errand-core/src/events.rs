//! In-process signalling for stores that live in one process (memory, SQLite): per-task status
//! watchers, the cancellation bus, and the work signal that wakes idle workers.
//!
//! All three cost next to nothing when nobody listens, because they sit on the hot path of
//! every state change.

use crate::id::TaskId;
use crate::status::TaskRecord;
use crate::store::{EventStream, WorkSignal};
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;

/// Per-task broadcast of status records to watchers (SSE clients).
#[derive(Debug, Default)]
pub struct Watchers {
    channels: Mutex<HashMap<TaskId, broadcast::Sender<TaskRecord>>>,
    watched: AtomicUsize,
}

impl Watchers {
    /// A stream of `id`'s records from now on.
    pub fn subscribe(self: &Arc<Self>, id: TaskId) -> EventStream {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let rx = channels
            .entry(id)
            .or_insert_with(|| {
                self.watched.fetch_add(1, Ordering::Relaxed);
                broadcast::channel(64).0
            })
            .subscribe();
        drop(channels);
        let guard = Unwatch {
            watchers: Arc::clone(self),
            id,
        };
        BroadcastStream::new(rx)
            .filter_map(move |rec| {
                let _keep = &guard;
                // A lagging watcher skips records; the next one carries the latest state.
                futures::future::ready(rec.ok())
            })
            .boxed()
    }

    /// Whether anyone watches `id` (cheap when nobody watches anything).
    pub fn is_watched(&self, id: TaskId) -> bool {
        self.watched.load(Ordering::Relaxed) > 0
            && self
                .channels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&id)
    }

    /// Sends `record` to its watchers, if any.
    pub fn publish(&self, record: &TaskRecord) {
        if self.watched.load(Ordering::Relaxed) == 0 {
            return;
        }
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = channels.get(&record.id) {
            let _ = tx.send(record.clone());
        }
    }
}

/// Removes a task's channel when its last watcher goes away.
struct Unwatch {
    watchers: Arc<Watchers>,
    id: TaskId,
}

impl Drop for Unwatch {
    fn drop(&mut self) {
        let mut channels = self
            .watchers
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // The stream drops its receiver before this guard (a struct's fields drop in order,
        // and the receiver sits in the inner stream), so 0 means it was the last watcher.
        if channels
            .get(&self.id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            channels.remove(&self.id);
            self.watchers.watched.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Broadcast of "cancel this running task" to the workers of the process.
#[derive(Debug)]
pub struct CancelBus(broadcast::Sender<TaskId>);

impl Default for CancelBus {
    fn default() -> Self {
        Self(broadcast::channel(1024).0)
    }
}

impl CancelBus {
    /// Announces that `id`'s cancellation was requested.
    pub fn send(&self, id: TaskId) {
        let _ = self.0.send(id);
    }

    /// A stream of announced ids. A listener that falls behind skips ids; heartbeats report
    /// cancellation too, so nothing is lost for good.
    pub fn subscribe(&self) -> BoxStream<'static, TaskId> {
        BroadcastStream::new(self.0.subscribe())
            .filter_map(|id| futures::future::ready(id.ok()))
            .boxed()
    }
}

/// Tells idle workers that work may be claimable. Never loses a wake-up: a worker that was busy
/// when work arrived sees the change on its next wait.
#[derive(Debug)]
pub struct WorkNotifier(watch::Sender<u64>);

impl Default for WorkNotifier {
    fn default() -> Self {
        Self(watch::channel(0).0)
    }
}

impl WorkNotifier {
    /// Work arrived.
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A signal for one worker. `next_due` says how long until the earliest scheduled task is
    /// due (so the wait ends then); `None` when nothing is scheduled.
    pub fn signal<F>(&self, next_due: F) -> Box<dyn WorkSignal>
    where
        F: Fn() -> Option<Duration> + Send + 'static,
    {
        let mut rx = self.0.subscribe();
        rx.mark_changed();
        Box::new(LocalSignal { rx, next_due })
    }
}

struct LocalSignal<F> {
    rx: watch::Receiver<u64>,
    next_due: F,
}

#[async_trait]
impl<F: Fn() -> Option<Duration> + Send + 'static> WorkSignal for LocalSignal<F> {
    async fn wait(&mut self, max: Duration) {
        let max = (self.next_due)().map_or(max, |due| due.min(max));
        if max.is_zero() {
            return;
        }
        let _ = tokio::time::timeout(max, self.rx.changed()).await;
        self.rx.mark_unchanged();
    }
}
