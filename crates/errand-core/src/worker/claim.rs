//! The claim loop of a [`Worker`](super::Worker): as many tasks as it has free slots, one batch
//! per round trip, sleeping on the store's work signal when the queues are empty.

use super::WorkerConfig;
use super::attempt::run_task;
use super::shared::{Counters, Outage, Shared};
use crate::store::{ClaimRequest, Claimed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub(crate) async fn claim_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let mut ready = shared.cancels_ready.clone();
    tokio::select! {
        _ = ready.wait_for(|r| *r) => {}
        _ = stop.cancelled() => return,
    }
    let cfg = &shared.config;
    let mut outage = Outage::new("claim", Duration::from_secs(5));
    let mut signal = None;
    loop {
        // Wait for a free slot, then take every free slot up to a batch.
        let first = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            p = shared.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let mut permits = vec![first];
        while permits.len() < cfg.claim_batch.max(1) {
            match shared.slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        if signal.is_none() {
            match shared.store.work_signal(&cfg.queues).await {
                Ok(s) => signal = Some(s),
                Err(e) => {
                    outage.failed(&e, &stop).await;
                    continue;
                }
            }
        }
        // Slots freed by a shutdown's hand-backs are not for claiming.
        if stop.is_cancelled() {
            return;
        }
        let wanted = permits.len();
        let claimed = match shared.store.claim(&claim_request(cfg, wanted)).await {
            Ok(c) => {
                outage.ok();
                c
            }
            Err(e) => {
                drop(permits);
                outage.failed(&e, &stop).await;
                continue;
            }
        };
        let got = claimed.len();
        start_claimed(&shared, claimed, permits).await;
        if got < wanted
            && let Some(signal) = signal.as_mut()
        {
            tokio::select! {
                _ = signal.wait(cfg.poll_interval) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// A claim of up to `limit` tasks for the worker configured by `cfg`.
pub(crate) fn claim_request(cfg: &WorkerConfig, limit: usize) -> ClaimRequest {
    ClaimRequest {
        queues: cfg.queues.clone(),
        limit,
        lease: cfg.lease,
        worker_id: cfg.id.clone(),
    }
}

/// Runs claimed tasks, one slot of `permits` each; slots left over are freed, and tasks beyond
/// the slots (a store that handed out more than asked) are handed back untouched.
pub(crate) async fn start_claimed(
    shared: &Arc<Shared>,
    claimed: Vec<Claimed>,
    mut permits: Vec<OwnedSemaphorePermit>,
) {
    let mut extra = Vec::new();
    for task in claimed {
        let Some(permit) = permits.pop() else {
            extra.push(task.lease);
            continue;
        };
        Counters::bump(&shared.stats.claimed);
        let s = shared.clone();
        let registry = shared.registry.clone();
        let prepare = Box::new(move |t: &Claimed| registry.prepare(&t.name, &t.args));
        shared.tasks.spawn(run_task(s, task, prepare, permit));
    }
    drop(permits);
    if !extra.is_empty() {
        warn!(
            extra = extra.len(),
            "the store returned more tasks than claimed; handing them back"
        );
        shared.hand_back(extra, "extra").await;
    }
}
