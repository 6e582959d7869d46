//! Per-minute, per-queue outcome counts and run-time and queue-wait histograms: what the
//! workers' attempts did in the last hour, pre-aggregated for charts.

use super::{merge_meta, read_meta};
use crate::observer::AttemptOutcome;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// The meta record holding the deployment's [`Minutes`].
pub const MINUTES_META: &str = "activity.minutes";

/// How many minutes are kept.
pub const KEPT_MINUTES: i64 = 60;

/// Upper bounds of the histogram buckets, in milliseconds (the last bucket is unbounded).
pub const BOUNDS_MS: [u64; 16] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000,
];

/// Durations counted into fixed buckets ([`BOUNDS_MS`], plus one for longer), so that two
/// histograms merge by adding their counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Histogram {
    /// Counts per bucket: `counts[i]` durations of at most `BOUNDS_MS[i]` ms (and above the
    /// previous bound); the last entry counts the longer ones. Trailing zeros are left out.
    pub counts: Vec<u64>,
}

impl Histogram {
    /// Counts one duration.
    pub fn observe(&mut self, took: Duration) {
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let i = BOUNDS_MS.partition_point(|&b| b < ms);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// How many durations it counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0–1) in milliseconds, as the upper bound of the bucket it falls in
    /// (the last bound for the unbounded bucket); `None` when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(BOUNDS_MS[i.min(BOUNDS_MS.len() - 1)]);
            }
        }
        BOUNDS_MS.last().copied()
    }
}

/// One queue's attempts in one minute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueMinute {
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts that failed for good.
    pub failed: u64,
    /// Attempts that failed and will be attempted again.
    pub retried: u64,
    /// Attempts stopped by a cancellation.
    pub cancelled: u64,
    /// Run time of the attempts that ended (succeeded, failed, retried or cancelled).
    pub run_ms: Histogram,
    /// Time from due to started, of the attempts that started.
    pub wait_ms: Histogram,
}

impl QueueMinute {
    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &QueueMinute) {
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.retried += other.retried;
        self.cancelled += other.cancelled;
        self.run_ms.merge(&other.run_ms);
        self.wait_ms.merge(&other.wait_ms);
    }

    /// Attempts that ended with a result (succeeded, failed, retried or cancelled).
    pub fn ended(&self) -> u64 {
        self.succeeded + self.failed + self.retried + self.cancelled
    }
}

/// One minute, per queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MinuteBucket {
    /// Per queue.
    pub queues: BTreeMap<String, QueueMinute>,
}

/// The deployment's last hour, one bucket per minute (keyed by minutes since the Unix epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Minutes {
    /// Buckets by minute since the Unix epoch.
    pub minutes: BTreeMap<i64, MinuteBucket>,
}

impl Minutes {
    /// Adds `delta`'s counts, then drops minutes older than [`KEPT_MINUTES`] before `now`.
    pub fn merge(&mut self, delta: &Minutes, now: DateTime<Utc>) {
        for (minute, bucket) in &delta.minutes {
            let mine = self.minutes.entry(*minute).or_default();
            for (queue, q) in &bucket.queues {
                mine.queues.entry(queue.clone()).or_default().merge(q);
            }
        }
        let oldest = minute_of(now) - KEPT_MINUTES;
        self.minutes.retain(|m, _| *m > oldest);
    }

    /// Whether it counts nothing.
    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }
}

/// Minutes since the Unix epoch.
pub fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

/// The deployment's last hour, as the workers last published it.
pub async fn minutes(store: &dyn Store) -> Result<Minutes, StoreError> {
    read_meta(store, MINUTES_META).await
}

/// Counts one worker's attempts until they are published. Cheap: one uncontended lock per
/// attempt start and end.
#[derive(Debug, Default)]
pub struct Recorder {
    pending: Mutex<Minutes>,
}

impl Recorder {
    fn with<R>(&self, queue: &str, f: impl FnOnce(&mut QueueMinute) -> R) -> R {
        let minute = minute_of(Utc::now());
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = pending.minutes.entry(minute).or_default();
        match bucket.queues.get_mut(queue) {
            Some(q) => f(q),
            None => f(bucket.queues.entry(queue.to_string()).or_default()),
        }
    }

    /// An attempt on `queue` started, `queue_wait` after it became due (when known).
    pub fn started(&self, queue: &str, queue_wait: Option<Duration>) {
        if let Some(wait) = queue_wait {
            self.with(queue, |q| q.wait_ms.observe(wait));
        }
    }

    /// An attempt on `queue` ended as `outcome` after `took`. Hand-backs and lost leases are
    /// not results and are not counted.
    pub fn ended(&self, queue: &str, outcome: AttemptOutcome, took: Duration) {
        self.with(queue, |q| {
            match outcome {
                AttemptOutcome::Success => q.succeeded += 1,
                AttemptOutcome::Failed => q.failed += 1,
                AttemptOutcome::Retrying => q.retried += 1,
                AttemptOutcome::Cancelled => q.cancelled += 1,
                AttemptOutcome::Released | AttemptOutcome::Lost => return,
            }
            q.run_ms.observe(took);
        });
    }

    /// Takes what was counted since the last take.
    fn take(&self) -> Minutes {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts back counts that could not be published.
    fn restore(&self, delta: Minutes) {
        let now = Utc::now();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .merge(&delta, now);
    }

    /// Adds what was counted to the store's record. Counts that could not be written are kept
    /// for the next call.
    pub(crate) async fn publish(&self, store: &dyn Store) -> Result<(), StoreError> {
        let delta = self.take();
        if delta.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        match merge_meta(store, MINUTES_META, |m: &mut Minutes| m.merge(&delta, now)).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.restore(delta);
                Ok(())
            }
            Err(e) => {
                self.restore(delta);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_merge_and_quantiles() {
        let mut h = Histogram::default();
        for ms in [0, 1, 3, 3, 40, 40, 40, 900, 400_000] {
            h.observe(Duration::from_millis(ms));
        }
        assert_eq!(h.total(), 9);
        assert_eq!(h.quantile_ms(0.5), Some(50));
        assert_eq!(h.quantile_ms(0.95), Some(300_000));
        let mut other = Histogram::default();
        other.observe(Duration::from_millis(1));
        h.merge(&other);
        assert_eq!(h.counts[0], 3);
        assert_eq!(Histogram::default().quantile_ms(0.5), None);
    }

    #[test]
    fn merging_adds_and_drops_minutes_older_than_an_hour() {
        let now = Utc::now();
        let m = minute_of(now);
        let mut delta = Minutes::default();
        for minute in [m - 90, m - 1, m] {
            let q = delta
                .minutes
                .entry(minute)
                .or_default()
                .queues
                .entry("default".into())
                .or_default();
            q.succeeded = 2;
        }
        let mut total = Minutes::default();
        total.merge(&delta, now);
        total.merge(&delta, now);
        assert_eq!(total.minutes.len(), 2);
        assert_eq!(total.minutes[&m].queues["default"].succeeded, 4);
    }

    #[test]
    fn hand_backs_are_not_results() {
        let r = Recorder::default();
        r.ended("q", AttemptOutcome::Released, Duration::from_millis(3));
        r.ended("q", AttemptOutcome::Failed, Duration::from_millis(3));
        let taken = r.take();
        let q = &taken.minutes.values().next().map(|b| b.queues["q"].clone());
        assert_eq!(
            q.as_ref().map(|q| (q.failed, q.run_ms.total())),
            Some((1, 1))
        );
    }
}
