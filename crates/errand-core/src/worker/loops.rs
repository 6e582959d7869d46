//! The side loops that keep a worker's attempts: lease renewal (one call for every held lease),
//! coalesced status reports, cancellation requests, and maintenance (reaping lapsed leases,
//! purging expired records).

use super::shared::{Outage, Running, Shared, StopReason};
use crate::lease::{Lease, LeaseState};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub(crate) async fn heartbeat_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let every = (shared.config.lease / 3).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        let running: Vec<Arc<Running>> = shared.lock_running().values().cloned().collect();
        if running.is_empty() {
            continue;
        }
        let leases: Vec<Lease> = running.iter().map(|r| r.lease).collect();
        match shared.store.heartbeat(&leases, shared.config.lease).await {
            Ok(states) => apply_lease_states(&running, &states),
            Err(e) => warn!(error = %e, tasks = leases.len(), "lease renewal failed"),
        }
    }
}

pub(crate) fn apply_lease_states(running: &[Arc<Running>], states: &[LeaseState]) {
    for (r, state) in running.iter().zip(states) {
        match state {
            LeaseState::Held => {}
            LeaseState::CancelRequested => r.stop(StopReason::CancelRequested),
            LeaseState::Lost => r.stop(StopReason::LeaseLost),
        }
    }
}

pub(crate) async fn report_loop(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = shared.report_wake.notified() => {}
            _ = stop.cancelled() => return,
        }
        let running: Vec<Arc<Running>> = shared.lock_running().values().cloned().collect();
        let (who, updates): (Vec<_>, Vec<_>) = running
            .iter()
            .filter_map(|r| r.reporter.take_dirty().map(|u| (r.clone(), (r.lease, u))))
            .unzip();
        if !updates.is_empty() {
            match shared.store.report(updates.clone()).await {
                Ok(states) => apply_lease_states(&who, &states),
                Err(e) => {
                    debug!(error = %e, "status report failed; the next one carries it");
                    for (r, (_, update)) in who.iter().zip(&updates) {
                        r.reporter.redirty(update);
                    }
                    shared.report_wake.notify_one();
                }
            }
        }
        // Coalesce: whatever is reported during this pause goes out in one write.
        tokio::select! {
            _ = tokio::time::sleep(shared.config.report_interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

pub(crate) async fn cancel_loop(
    shared: Arc<Shared>,
    stop: CancellationToken,
    listening: tokio::sync::watch::Sender<bool>,
) {
    let mut outage = Outage::new("cancellations", Duration::from_secs(5));
    // Claims start after the first try, whether it subscribed or not (heartbeats are the
    // backstop while the store cannot be reached).
    loop {
        let subscribed = shared.store.cancellations().await;
        listening.send_replace(true);
        let mut stream = match subscribed {
            Ok(s) => {
                outage.ok();
                s
            }
            Err(e) => {
                outage.failed(&e, &stop).await;
                if stop.is_cancelled() {
                    return;
                }
                continue;
            }
        };
        loop {
            let id = tokio::select! {
                id = stream.next() => id,
                _ = stop.cancelled() => return,
            };
            let Some(id) = id else { break };
            let target = shared.lock_running().get(&id).cloned();
            if let Some(r) = target {
                r.stop(StopReason::CancelRequested);
            }
        }
        // The stream ended (connection lost): subscribe again after a pause.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

pub(crate) async fn maintenance_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let cfg = &shared.config;
    let mut last_purge = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(cfg.reap_interval.max(Duration::from_millis(10))) => {}
            _ = stop.cancelled() => return,
        }
        match shared.store.reap().await {
            Ok(r) if r.requeued + r.failed + r.cancelled > 0 => info!(
                requeued = r.requeued,
                failed = r.failed,
                cancelled = r.cancelled,
                "reclaimed tasks whose lease lapsed"
            ),
            Ok(_) => {}
            Err(e) => debug!(error = %e, "reaper pass failed"),
        }
        if last_purge.elapsed() >= cfg.purge_interval {
            last_purge = Instant::now();
            match shared.store.purge_expired().await {
                Ok(0) => {}
                Ok(n) => debug!(purged = n, "purged expired task records"),
                Err(e) => debug!(error = %e, "purge failed"),
            }
        }
    }
}
