//! [`RedisSignal`]: wakes an idle worker when work may be claimable, in any process.
//!
//! The scripts that make a task claimable now (enqueue, retry, release, reap) publish on the
//! queue's work channel; the store's pub/sub connection turns each message into a change of
//! an in-process `watch` value, which a waiting worker sees at once and a busy worker sees on
//! its next wait, so no wake-up is lost. A task that becomes due later (delay, backoff) is
//! covered by waiting no longer than until the earliest due time in the schedule; a non-empty
//! ready list means "now".

use crate::keys::Keys;
use crate::listener::Subscription;
use crate::now::Now;
use crate::record::{int, scored};
use crate::redis_conn::Redis;
use async_trait::async_trait;
use errand_core::WorkSignal;
use std::time::Duration;
use tokio::sync::watch;

/// A worker's work signal over some queues.
pub(crate) struct RedisSignal {
    pub(crate) receivers: Vec<watch::Receiver<u64>>,
    pub(crate) queues: Vec<String>,
    pub(crate) redis: Redis,
    pub(crate) keys: Keys,
    pub(crate) now: Now,
    pub(crate) _subscription: Subscription,
}

impl RedisSignal {
    /// Consumes pending wake-ups; true if there was one.
    fn take_changed(&mut self) -> bool {
        let mut changed = false;
        for rx in &mut self.receivers {
            if rx.has_changed().unwrap_or(false) {
                rx.mark_unchanged();
                changed = true;
            }
        }
        changed
    }

    /// Time until the earliest waiting task of the queues is due; `None` when nothing waits
    /// (or Redis cannot say: the worker's next claim finds out).
    async fn next_due(&self) -> Option<Duration> {
        let mut pipe = redis::pipe();
        self.now.ask(&mut pipe);
        for q in &self.queues {
            pipe.cmd("LLEN").arg(self.keys.ready(q));
            pipe.cmd("ZRANGE")
                .arg(self.keys.schedule(q))
                .arg(0)
                .arg(0)
                .arg("WITHSCORES");
        }
        let mut values = self.redis.pipeline(&pipe).await.ok()?.into_iter();
        let now = self.now.read(&mut values).ok()?;
        let mut earliest: Option<i64> = None;
        while let (Some(ready), Some(scheduled)) = (values.next(), values.next()) {
            let due = if int(&ready).ok()? > 0 {
                Some(now)
            } else {
                scored(scheduled).ok()?.first().map(|(_, score)| *score)
            };
            earliest = earliest.into_iter().chain(due).min();
        }
        Some(Duration::from_millis(
            u64::try_from(earliest?.saturating_sub(now)).unwrap_or(0),
        ))
    }
}

#[async_trait]
impl WorkSignal for RedisSignal {
    async fn wait(&mut self, max: Duration) {
        if self.take_changed() {
            return;
        }
        let max = self.next_due().await.map_or(max, |due| due.min(max));
        if max.is_zero() {
            return;
        }
        if self.receivers.is_empty() {
            tokio::time::sleep(max).await;
            return;
        }
        let changes = self.receivers.iter_mut().map(|rx| Box::pin(rx.changed()));
        let _ = tokio::time::timeout(max, futures::future::select_all(changes)).await;
        self.take_changed();
    }
}
