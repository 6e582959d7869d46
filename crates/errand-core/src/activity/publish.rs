//! The loop that publishes a worker's presence and its counted minutes.

use super::minutes::Recorder;
use super::presence::{self, WorkerPresence};
use crate::store::Store;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Whose presence a worker publishes.
pub(crate) enum Publisher {
    /// Its own: a worker claiming on its own behalf.
    Local(WorkerPresence),
    /// The remote worker instances it runs attempts for.
    Remote(Arc<Instances>),
}

/// The remote worker instances a process has heard from, by instance id.
#[derive(Debug, Default)]
pub(crate) struct Instances {
    seen: Mutex<HashMap<String, WorkerPresence>>,
}

impl Instances {
    /// Records that `entry.id` was heard from now; `running` replaces the earlier count when
    /// given.
    pub(crate) fn heard(&self, mut entry: WorkerPresence, running: Option<u32>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = seen.get(&entry.id) {
            entry.started_at = old.started_at;
            if entry.queues.is_empty() {
                entry.queues = old.queues.clone();
            }
            if running.is_none() {
                entry.running = old.running;
            }
        }
        if let Some(n) = running {
            entry.running = n;
        }
        seen.insert(entry.id.clone(), entry);
    }

    /// The instances heard from within [`presence::FORGET_AFTER`]; older ones are forgotten.
    fn current(&self, now: DateTime<Utc>) -> Vec<WorkerPresence> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, e| e.seen_within(presence::FORGET_AFTER, now));
        seen.values().cloned().collect()
    }
}

impl Publisher {
    fn entries(&self, running: usize, now: DateTime<Utc>) -> Vec<WorkerPresence> {
        match self {
            Publisher::Local(me) => vec![WorkerPresence {
                running: u32::try_from(running).unwrap_or(u32::MAX),
                last_seen: now,
                ..me.clone()
            }],
            Publisher::Remote(instances) => instances.current(now),
        }
    }
}

/// Publishes every `every` until `stop`, then once more without this worker's own entry.
/// `running` reads how many attempts the worker runs now.
pub(crate) async fn publish_loop(
    store: Arc<dyn Store>,
    publisher: Publisher,
    recorder: Arc<Recorder>,
    running: impl Fn() -> usize + Send,
    every: Duration,
    stop: CancellationToken,
) {
    let every = every.max(Duration::from_millis(10));
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = stop.cancelled() => true,
        };
        if let Err(e) = recorder.publish(&*store).await {
            debug!(error = %e, "publishing attempt counts failed; the next round carries them");
        }
        let now = Utc::now();
        let (entries, gone) = match (&publisher, stopping) {
            (Publisher::Local(me), true) => (Vec::new(), vec![me.id.clone()]),
            _ => (publisher.entries(running(), now), Vec::new()),
        };
        if !(entries.is_empty() && gone.is_empty())
            && let Err(e) = presence::publish(&*store, &entries, &gone).await
        {
            debug!(error = %e, "publishing worker presence failed");
        }
        if stopping {
            return;
        }
    }
}
