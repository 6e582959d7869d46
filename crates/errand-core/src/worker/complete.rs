//! The complete loop: finished attempts written to the store in batches, through outages, and
//! for one more lease at most once the worker stops.

use super::attempt::Done;
use super::shared::{Outage, Shared};
use crate::store::{CompleteResult, Completion};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

pub(crate) async fn complete_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Done>,
    stop: CancellationToken,
) {
    // Pauses stay well under a lease, so results are written soon after the store is back.
    let mut outage = Outage::new("complete", shared.config.lease / 3);
    let mut batch: Vec<Done> = Vec::with_capacity(256);
    let mut give_up: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, 256) => if n == 0 { return },
            _ = stop.cancelled(), if give_up.is_none() => {
                // Shutting down: every attempt has ended, so what is queued is all there is.
                give_up = Some(shutdown_deadline(&shared));
                while let Ok(d) = rx.try_recv() {
                    batch.push(d);
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        let (completions, permits): (Vec<Completion>, Vec<OwnedSemaphorePermit>) =
            batch.drain(..).map(|d| (d.completion, d.permit)).unzip();
        write_completions(&shared, &completions, &stop, &mut give_up, &mut outage).await;
        // Written (or given up on): the leases and slots are free.
        shared.forget(completions.iter().map(|c| c.lease));
        drop(permits);
        if give_up.is_some() && rx.is_empty() {
            return;
        }
    }
}

/// How long a stopping worker keeps trying to write results: one lease, after which the leases
/// lapse anyway.
pub(crate) fn shutdown_deadline(shared: &Shared) -> tokio::time::Instant {
    tokio::time::Instant::now() + shared.config.lease
}

/// Writes finished attempts. While the worker runs, a store that cannot be reached is retried
/// until it answers (if a lease lapses meanwhile, the store rejects that completion as stale and
/// the newer attempt wins); once it stops, for one more lease at most. A completion the store
/// refuses for good (not an outage) is written alone, so it cannot hold up the others, and
/// given up on: its lease lapses and the task runs again.
pub(crate) async fn write_completions(
    shared: &Shared,
    completions: &[Completion],
    stop: &CancellationToken,
    give_up: &mut Option<tokio::time::Instant>,
    outage: &mut Outage,
) {
    loop {
        let error = match shared.store.complete(completions.to_vec()).await {
            Ok(results) => {
                outage.ok();
                for (c, r) in completions.iter().zip(results) {
                    if let Some(written) = &shared.written {
                        written(c.lease, r);
                    }
                    if r == CompleteResult::Stale {
                        warn!(task_id = %c.lease.id, "completion rejected: the lease was lost to a newer attempt");
                    }
                }
                return;
            }
            Err(e) => e,
        };
        if !error.is_unavailable() {
            for c in completions {
                if let Err(e) = shared.store.complete(vec![c.clone()]).await {
                    error!(
                        task_id = %c.lease.id,
                        error = %e,
                        "the store refused this attempt's result; its lease will lapse and the task run again"
                    );
                }
            }
            return;
        }
        if stop.is_cancelled() && give_up.is_none() {
            *give_up = Some(shutdown_deadline(shared));
        }
        if give_up.is_some_and(|at| tokio::time::Instant::now() >= at) {
            error!(
                error = %error,
                tasks = completions.len(),
                "stopping without writing these results; their leases will lapse and the tasks run again"
            );
            return;
        }
        // A shutdown cuts the running pause short once; after that, pauses run to the end.
        let cut = if give_up.is_none() {
            stop.clone()
        } else {
            CancellationToken::new()
        };
        outage.failed(&error, &cut).await;
    }
}
